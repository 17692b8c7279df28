"""Discounted returns, advantages and per-neuron normalization on ``[T, B, N]`` tensors."""

from __future__ import annotations

import torch


def discounted_returns(rewards: torch.Tensor, done: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = r_t + γ G_{t+1} (1 - done_t)`` for ``rewards[T, B, N]`` and ``done[T, B]``."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    keep = (~done).float().unsqueeze(-1)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running * keep[t]
        returns[t] = running
    return returns


def gae(
    rewards: torch.Tensor, values: torch.Tensor, done: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and value targets, all ``[T, B, N]``.

    ``δ_t = r_t + γ V_{t+1} (1 - done_t) − V_t`` and ``A_t = δ_t + γλ (1 − done_t) A_{t+1}``; the value
    after an episode's last tick is 0 (truncation is treated as termination).
    """
    keep = (~done).float().unsqueeze(-1)
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    next_value = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * next_value * keep[t] - values[t]
        running = delta + gamma * lam * keep[t] * running
        adv[t] = running
        next_value = values[t]
    return adv, adv + values


def normalize_per_neuron(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Standardize ``x[T, B, N]`` per neuron over its valid ticks (``valid[T, B]``); invalid ticks -> 0."""
    m = valid.float().unsqueeze(-1)
    count = m.sum((0, 1)).clamp(min=1.0)
    mean = (x * m).sum((0, 1)) / count
    var = (((x - mean) * m) ** 2).sum((0, 1)) / count
    return (x - mean) / (var.sqrt() + eps) * m
