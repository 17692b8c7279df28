"""A custom reward: hidden neurons are paid for agreeing with the motor neuron."""

import torch

from narla.rewards import NetworkState


def agree_with_motor(state: NetworkState, scale: float = 0.1) -> torch.Tensor:
    """``r_i = +scale`` if neuron i fired exactly when the first motor neuron did, else ``-scale``; ``[B, N]``."""
    motor = state.spikes[:, state.wiring.motor_idx[:1]]  # [B, 1]
    return scale * (2.0 * (state.spikes == motor).float() - 1.0)
