"""What a reward function sees: the network's activity at one tick of the batched rollout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from narla.wiring import Wiring


@dataclass
class NetworkState:
    """One tick of ``B`` networks of ``N`` neurons: what a reward function ``fn(state) -> Tensor[B, N]`` sees.

    ``spikes`` of motor neurons are their binary output (fired = 1); for a categorical motor neuron
    it is 1 when it chose a non-zero action. For rate neurons (whole-network populations) ``spikes`` holds
    their values (a sensory neuron's key RMS, a latent/head/motor neuron's output) and ``memory`` the sensory
    neurons' recurrent state.

    The task side (``obs``, ``task_action``, ``next_obs``, ``terminated``, ``truncated``) and the activity vector
    (``activity``) are filled by every rollout and PettingZoo view; they are ``None`` only in states built by hand.
    ``inputs`` (each neuron's feedforward input) is computed from ``activity`` when a reward first reads it.
    """

    spikes: torch.Tensor  # [B, N] float in {0, 1}, this tick
    prev_spikes: torch.Tensor  # [B, N] float, previous tick (zeros on an episode's first tick)
    trace: torch.Tensor  # [B, N] float in [0, 1]: exponential trace of firing, this tick included
    task_reward: torch.Tensor  # [B] float, the environment's reward for this tick's action
    done: torch.Tensor  # [B] bool, the episode ended with this tick
    first: torch.Tensor  # [B] bool, this tick is the first of its episode
    wiring: Wiring
    episode: int  # episodes finished before this batch started (phases); 0 in narla.runs, which uses terms_mask
    memory: torch.Tensor | None = None  # [2, B, S, H] sensory neurons' (h, c) after this tick, or None
    obs: torch.Tensor | None = None  # [B, obs_dim] float, the task observation this tick acted on
    task_action: torch.Tensor | None = None  # [B] long (discrete) or [B, A] float: what the motor neurons sent
    next_obs: torch.Tensor | None = None  # [B, obs_dim] observation after the step (a new episode's after done)
    terminated: torch.Tensor | None = None  # [B] bool, the task ended the episode (e.g. the pole fell)
    truncated: torch.Tensor | None = None  # [B] bool, the episode hit its step limit
    activity: torch.Tensor | None = None  # [S + N, B] this tick's sensor values, then every neuron's activity
    terms_mask: torch.Tensor | None = None  # [K, B] bool: term k applies in copy b (runs at different episodes)
    ticks: int = 1  # the rows are this many consecutive ticks of the same copies, tick-major (a rollout scored at once)

    @property
    def inputs(self) -> torch.Tensor:
        """``[B, N, F]``: the feedforward input each neuron read this tick (sensor values or presynaptic
        activity, in the order of ``wiring.ff_idx``; padding slots, ``wiring.ff_mask == 0``, hold 0)."""
        if self.activity is None:
            raise AttributeError("NetworkState.inputs needs 'activity', which this hand-built state lacks")
        w = self.wiring
        gathered = self.activity[w.ff_idx.reshape(-1)].reshape(*w.ff_idx.shape, -1)  # [N, F, B]
        return (gathered * w.ff_mask.unsqueeze(-1)).permute(2, 0, 1)
