"""Gradient clipping that keeps neurons independent: each neuron's slice is clipped by its own norm."""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def clip_per_neuron(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale each neuron's gradient (dim 0 of every stacked parameter) to norm ≤ ``max_norm``.

    A global clip would let one neuron's large gradient shrink every other neuron's step; this one
    does not. Returns the per-neuron norms before clipping, ``[N]``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    sq = sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads)
    norms = sq.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms
