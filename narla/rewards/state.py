"""What a reward function sees: the network's activity at one tick of the batched rollout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from narla.wiring import Wiring


@dataclass
class NetworkState:
    """One tick of ``B`` networks of ``N`` neurons.

    ``spikes`` of motor neurons are their binary output (fired = 1); for a categorical motor neuron
    it is 1 when it chose a non-zero action. For rate neurons (whole-network populations) ``spikes`` holds
    their values (a sensory neuron's key RMS, a latent/head/motor neuron's output) and ``memory`` the sensory
    neurons' recurrent state.
    """

    spikes: torch.Tensor  # [B, N] float in {0, 1}, this tick
    prev_spikes: torch.Tensor  # [B, N] float, previous tick (zeros on an episode's first tick)
    trace: torch.Tensor  # [B, N] float in [0, 1]: exponential trace of firing, this tick included
    task_reward: torch.Tensor  # [B] float, the environment's reward for this tick's action
    done: torch.Tensor  # [B] bool, the episode ended with this tick
    first: torch.Tensor  # [B] bool, this tick is the first of its episode
    wiring: Wiring
    episode: int  # episodes finished before this batch started (for phased schemes)
    memory: torch.Tensor | None = None  # [2, B, S, H] sensory neurons' (h, c) after this tick, or None
