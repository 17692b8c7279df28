"""Mutual information between neurons' activity and observation features or the task action, in bits.

Estimator: every variable is binned (binary activity keeps its two values; anything else gets ``bins`` equal-count
bins from its own quantiles), the joint and marginal histograms of all pairs come from one matrix product of
one-hot codes, and ``I(X; Y) = H(X) + H(Y) − H(X, Y)`` uses plug-in entropies with the Miller–Madow correction
``(m − 1) / 2S`` (``m`` non-empty bins, ``S`` samples).

Limits: binning discards structure within a bin, so the estimate is a lower bound of the information in the
continuous variable at finer resolution; quantile bins adapt to each variable's distribution, so values are
comparable across variables but depend on ``bins``. The plug-in estimator is biased upward with few samples per
joint bin (the correction removes the first-order term only): keep ``S`` well above ``bins²``. Ticks of one
episode are not independent samples, which the estimator ignores. Small negative estimates are clipped to 0.
"""

from __future__ import annotations

import math

import torch


def discretize(x: torch.Tensor, bins: int = 8) -> tuple[torch.Tensor, int]:
    """Codes ``[S, K]`` (long) of the columns of ``x[S, K]`` and the number of codes used: binary columns keep
    0/1, other columns fall in ``bins`` equal-count bins of their own quantiles."""
    x = x.to(torch.float64)
    binary = ((x == 0) | (x == 1)).all(0)
    if bool(binary.all()):
        return x.long(), 2
    q = torch.linspace(0, 1, bins + 1, dtype=x.dtype, device=x.device)[1:-1]
    edges = torch.quantile(x, q, dim=0)  # [bins - 1, K]
    codes = (x.unsqueeze(-1) > edges.T.unsqueeze(0)).sum(-1)  # [S, K]
    codes = torch.where(binary.unsqueeze(0), x.long(), codes)
    return codes, bins


def _entropy(counts: torch.Tensor, samples: int) -> torch.Tensor:
    """Miller–Madow entropy (nats) of histograms ``counts[..., bins]``."""
    p = counts / samples
    plug_in = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(-1)
    occupied = (counts > 0).sum(-1).to(counts.dtype)
    return plug_in + (occupied - 1) / (2 * samples)


def mutual_information(x: torch.Tensor, y: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """``[N, F]``: I(x_i; y_k) in bits for every column ``x_i`` of ``x[S, N]`` and ``y_k`` of ``y[S, F]``."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same samples, got {x.shape[0]} and {y.shape[0]}")
    s = x.shape[0]
    cx, kx = discretize(x, bins)
    cy, ky = discretize(y, bins)
    ox = torch.nn.functional.one_hot(cx, kx).to(torch.float64)  # [S, N, kx]
    oy = torch.nn.functional.one_hot(cy, ky).to(torch.float64)  # [S, F, ky]
    n, f = x.shape[1], y.shape[1]
    joint = (ox.reshape(s, n * kx).T @ oy.reshape(s, f * ky)).reshape(n, kx, f, ky).permute(0, 2, 1, 3)
    hx = _entropy(ox.sum(0), s)  # [N]
    hy = _entropy(oy.sum(0), s)  # [F]
    hxy = _entropy(joint.reshape(n, f, kx * ky), s)  # [N, F]
    mi = (hx.unsqueeze(1) + hy.unsqueeze(0) - hxy) / math.log(2)
    return mi.clamp(min=0).float()


def binned_entropy(x: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """``[K]``: the Miller–Madow entropy in bits of each column of ``x[S, K]`` as :func:`mutual_information` bins it."""
    codes, k = discretize(x, bins)
    return (_entropy(torch.nn.functional.one_hot(codes, k).to(torch.float64).sum(0), x.shape[0]) / math.log(2)).float()
