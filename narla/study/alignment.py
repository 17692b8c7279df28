"""Incentive alignment: does a neuron's own return move with the task return, and what is its return made of?

Inputs are per-episode sums: ``neuron_returns[E, N]`` (each neuron's total reward over an episode),
``task_returns[E]`` and ``components[label][E, N]`` (each reward term's part of ``neuron_returns``).
"""

from __future__ import annotations

import torch


def alignment(neuron_returns: torch.Tensor, task_returns: torch.Tensor) -> torch.Tensor:
    """``[N]``: Pearson correlation across episodes between each neuron's return and the task return (0 where either
    does not vary)."""
    x = neuron_returns.to(torch.float64)
    y = task_returns.to(torch.float64).unsqueeze(1)
    x, y = x - x.mean(0), y - y.mean(0)
    denom = (x.square().sum(0) * y.square().sum(0)).sqrt()
    corr = (x * y).sum(0) / torch.where(denom > 1e-12, denom, torch.ones_like(denom))
    return torch.where(denom > 1e-12, corr, torch.zeros_like(corr)).to(neuron_returns.dtype)


def component_shares(components: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{label: [N]}``: each term's share of a neuron's return, by mean absolute size per episode (sums to 1 for a
    neuron with any reward, 0 everywhere for a neuron without)."""
    size = {k: v.abs().mean(0).to(torch.float64) for k, v in components.items()}
    total = sum(size.values())
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return {k: (v / safe).float() for k, v in size.items()}


def free_riders(mean_return: torch.Tensor, lesion_ci_high: torch.Tensor, names: list[str]) -> list[str]:
    """Neurons that collect reward (mean return > 0) although silencing them does not hurt the task (the upper end
    of their lesion effect's 95 % interval is >= 0)."""
    mask = (mean_return > 0) & (lesion_ci_high >= 0)
    return [names[i] for i in torch.nonzero(mask).flatten().tolist()]
