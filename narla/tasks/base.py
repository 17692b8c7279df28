"""The batched task interface every environment adapter implements.

A task holds ``B`` copies of an environment and steps them together. Copies reset themselves when
their episode ends (same-step auto-reset: the observation returned for a finished copy is the first
observation of its next episode), so a caller never needs to reset single copies by hand.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch


@dataclass(frozen=True)
class SolveCriterion:
    """A task counts as solved when the mean return of the last ``window`` episodes reaches ``threshold``."""

    window: int
    threshold: float


class Task(ABC):
    """``B`` environment copies stepped as one batch of tensors.

    Attributes declared by every implementation:
        num_envs: B, the number of copies.
        obs_dim: S, the length of one observation vector.
        action_space: the gymnasium space of ONE copy's action (Discrete or Box).
        device: where observations, rewards and flags live.
        max_episode_steps: the truncation limit of one episode.
        solve: the default solve criterion of this task (None where the task has none).
    """

    num_envs: int
    obs_dim: int
    action_space: gym.Space
    device: torch.device
    max_episode_steps: int
    solve: SolveCriterion | None = None
    render_fps: float | None = None  # frames per second of real time, where the task can render (render())

    @abstractmethod
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start a new episode in every copy; returns observations ``[B, S]`` (float32)."""

    @abstractmethod
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every copy one step.

        Args:
            action: ``[B]`` (int64, Discrete) or ``[B, A]`` (float32, Box) on ``device``.

        Returns:
            ``(obs [B, S], reward [B], terminated [B] bool, truncated [B] bool)``. Copies whose episode
            ended (terminated or truncated) are reset in the same call: ``obs`` holds their new start.
        """

    def skip_steps(self, steps: int) -> bool:
        """Leave the task's random stream where ``steps`` more steps would leave it, without stepping (the copies'
        state is then undefined until :meth:`reset`); False, with nothing done, where the task cannot."""
        return False

    def final_observation(self) -> torch.Tensor | None:
        """Observations ``[B, S]`` of the states the last :meth:`step` reached, before the copies that ended were
        reset (so a finished copy's terminal observation); None where the task cannot tell."""
        return None

    def render(self) -> np.ndarray:
        """An RGB frame ``[H, W, 3]`` uint8 of copy 0. Only tasks with ``render_fps`` set draw frames (CartPole,
        swing-up, gymnasium tasks made with ``render_mode="rgb_array"``); any other refuses with this message."""
        raise ValueError(f"{type(self).__name__} draws no frames; tasks that render: cartpole, swingup, ant, gym:ID")

    def close(self) -> None:  # noqa: B027 (optional hook: a no-op unless the task holds workers)
        """Release worker processes or simulators; a no-op for torch-native tasks."""
