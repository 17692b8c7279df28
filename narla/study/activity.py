"""Activity of a population over recorded episodes: firing rates and pairwise spike correlations.

Inputs are the arrays of :func:`narla.record.record` as tensors: ``spikes[E, T, N]`` (padded episodes) and
``valid[E, T]`` (1 on the ticks that belong to an episode).
"""

from __future__ import annotations

import torch


def firing_rates(spikes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[N]``: each neuron's mean activity over every valid tick of every episode."""
    w = valid.to(spikes.dtype).unsqueeze(-1)
    return (spikes * w).sum((0, 1)) / w.sum().clamp(min=1)


def layer_rates(rates: torch.Tensor, layer: torch.Tensor) -> dict[int, float]:
    """``{layer: mean rate}`` of the neurons of each (1-based) layer."""
    layer = layer.to(rates.device)
    count = torch.bincount(layer).clamp(min=1).to(rates.dtype)
    sums = torch.zeros(len(count), dtype=rates.dtype, device=rates.device).index_add_(0, layer, rates)
    means = (sums / count).tolist()
    return {int(k): means[int(k)] for k in torch.unique(layer).tolist()}


def spike_correlation(spikes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` Pearson correlation of the neurons' activity across valid ticks (one matrix product).

    A neuron that never changes (always silent or always firing) has no defined correlation; its row and column are
    0 (and its diagonal entry too).
    """
    x = spikes[valid.bool()].to(torch.float64)  # [S, N]
    x = x - x.mean(0)
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    std = cov.diagonal().clamp(min=0).sqrt()
    live = std > 1e-12
    scale = torch.where(live, std, torch.ones_like(std))
    corr = cov / scale.unsqueeze(0) / scale.unsqueeze(1)
    corr = corr * (live.unsqueeze(0) & live.unsqueeze(1))
    return corr.to(spikes.dtype)
