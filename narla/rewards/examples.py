"""Example custom rewards, used by the README: name them in a scenario by dotted path.

    rewards:
      terms:
        - task
        - {name: narla.rewards.examples:curiosity, params: {scale: 0.1}}
"""

from __future__ import annotations

import torch

from narla.rewards.state import NetworkState


def curiosity(state: NetworkState, scale: float = 0.1) -> torch.Tensor:
    """Reward a neuron for changing its output: ``r_i = scale * |s_i - s_i(prev)|``; [B, N] -> [B, N]."""
    return scale * (state.spikes - state.prev_spikes).abs()
