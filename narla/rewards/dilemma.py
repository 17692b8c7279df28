"""The iterated prisoner's dilemma between neurons: a neuron's spike is its move (fire = cooperate).

Neurons are paired by engine index, two by two (0 with 1, 2 with 3, ...); a neuron left without a partner (an
odd last one) is paid nothing. Each tick, each player is paid from the scenario's payoff matrix for its move
against its partner's: ``reward`` (both cooperate), ``sucker`` (it cooperates, the partner defects),
``temptation`` (it defects, the partner cooperates), ``punishment`` (both defect). A dilemma needs
``temptation > reward > punishment > sucker``; that is checked when the scheme is built.

Whether a neuron sees its partner's last move is the network's business: with context edges between partners
(``context: {proximal: true}`` pairs every neuron with its layer, partner included, through the previous tick's
activity) it can answer it; without them it plays blind.
"""

from __future__ import annotations

import torch

from narla.rewards.registry import register_reward, tick_local
from narla.rewards.state import NetworkState


@register_reward("dilemma")
@tick_local
class Dilemma:
    """``r_i = payoff(s_i, s_partner(i))`` for paired neurons; [B, N]."""

    def __init__(self, reward: float = 3.0, sucker: float = 0.0, temptation: float = 5.0,
                 punishment: float = 1.0) -> None:
        if not temptation > reward > punishment > sucker:
            raise ValueError(f"a prisoner's dilemma needs temptation > reward > punishment > sucker, got "
                             f"{temptation}, {reward}, {punishment}, {sucker}")
        self.payoff = (reward, sucker, temptation, punishment)

    def __call__(self, state: NetworkState) -> torch.Tensor:
        s = state.spikes
        n = s.shape[1]
        paired = n - n % 2
        partner = torch.zeros_like(s)
        partner[:, 0:paired:2], partner[:, 1:paired:2] = s[:, 1:paired:2], s[:, 0:paired:2]
        r, sucker, t, p = self.payoff
        pay = s * partner * r + s * (1 - partner) * sucker + (1 - s) * partner * t + (1 - s) * (1 - partner) * p
        if paired < n:
            pay[:, paired:] = 0.0
        return pay
