"""What the torch-native cart-pole tasks share: a float64 physical state, seeding and same-step auto-reset."""

from __future__ import annotations

from abc import abstractmethod

import gymnasium as gym
import numpy as np
import torch

from narla.tasks.base import SolveCriterion, Task


class PhysicsTask(Task):
    """``B`` copies of a simulated system whose state ``[B, state_dim]`` is kept in float64 on ``device``.

    A subclass draws start states (``_sample_start``), turns the state into observations (``_observe``) and,
    in ``step``, integrates the physics and hands the next state to :meth:`_advance`.
    """

    state_dim = 4

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device,
        max_episode_steps: int,
        obs_dim: int,
        action_space: gym.Space,
        solve: SolveCriterion | None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.num_envs = num_envs
        self.obs_dim = obs_dim
        self.action_space = action_space
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        self.solve = solve
        self.generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, self.state_dim, dtype=torch.float64, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    @abstractmethod
    def _sample_start(self) -> torch.Tensor:
        """Fresh start states ``[B, state_dim]`` (float64) drawn from ``self.generator``."""

    def sample_starts(self, k: int) -> torch.Tensor:
        """``[k, B, state_dim]``: the next ``k`` draws of :meth:`_sample_start`, in order (a task may draw them at
        once when that consumes its generator exactly as ``k`` calls would)."""
        return torch.stack([self._sample_start() for _ in range(k)])

    def skip_steps(self, steps: int) -> bool:
        """A step draws one :meth:`_sample_start` (its finished copies' restarts), whatever the copies do; so
        :meth:`sample_starts` of ``steps`` draws is what those steps would take from the generator. On the CPU only,
        where ``torch.rand`` is one contiguous stream (a task's one-call :meth:`sample_starts` relies on it)."""
        if self.device.type != "cpu":
            return False
        if steps > 0:
            self.sample_starts(steps)
        return True

    @abstractmethod
    def _observe(self) -> torch.Tensor:
        """Observation ``[B, obs_dim]`` float32 of the current state."""

    def observe(self) -> torch.Tensor:
        """Observation ``[B, obs_dim]`` of the current state (after :meth:`set_state`, say)."""
        return self._observe()

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start every copy anew. Returns obs ``[B, obs_dim]`` float32.

        ``seed`` reseeds the task's generator; without one the generator's stream goes on (as in gymnasium),
        so a run seeded once stays reproducible.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = self._sample_start()
        self.elapsed.zero_()
        self._reached = None
        return self._observe()

    def set_state(self, state: torch.Tensor) -> None:
        """Overwrite the physical state ``[B, state_dim]``; step counters are left as they are."""
        if state.shape != (self.num_envs, self.state_dim):
            raise ValueError(f"state must have shape [{self.num_envs}, {self.state_dim}], got {list(state.shape)}")
        self.state = state.to(device=self.device, dtype=torch.float64).clone()

    def final_observation(self) -> torch.Tensor | None:
        """Observations ``[B, S]`` of the states the last step reached, before the finished copies restarted."""
        reached = getattr(self, "_reached", None)
        if reached is None:
            return None
        current, self.state = self.state, reached
        try:
            return self._observe()
        finally:
            self.state = current

    def _advance_numpy(self, state: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """:meth:`_advance` on NumPy arrays, for a CPU step computed on them: the same operations on the same numbers,
        with the restarts still drawn by :meth:`_sample_start` (the method itself, which a batch of runs replaces,
        :mod:`narla.runs`). Each torch call on a ``[B]`` vector costs a few microseconds, most of a step's time at
        the copies of a training batch. Returns ``truncated``; the new state is ``self.state``."""
        elapsed = self.elapsed.numpy()  # shares the counter's memory: updated in place
        elapsed += 1
        truncated = elapsed >= self.max_episode_steps
        done = terminated | truncated
        starts = self._sample_start().numpy()
        self._reached = torch.from_numpy(state)  # the terminal states of the copies that end now
        self.state = torch.from_numpy(np.where(done[:, None], starts, state))
        elapsed[done] = 0
        return truncated

    def _advance(self, state: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        """Count the step, keep ``state`` and restart finished copies from a fresh draw; returns ``truncated``."""
        self.elapsed += 1
        self._reached = state  # kept by reference (no copy): the terminal states of the copies that end now
        truncated = self.elapsed >= self.max_episode_steps
        done = terminated | truncated
        self.state = torch.where(done.unsqueeze(1), self._sample_start(), state)
        self.elapsed.masked_fill_(done, 0)
        return truncated


def torch_cos(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """torch's cosine of a tensor or of a float64 NumPy array (torch's bits, not NumPy's): the NumPy steps of the
    cart-pole tasks keep the torch steps' numbers."""
    return torch.cos(x) if isinstance(x, torch.Tensor) else torch.cos(torch.from_numpy(x)).numpy()


def torch_sin(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """torch's sine of a tensor or of a float64 NumPy array (see :func:`torch_cos`)."""
    return torch.sin(x) if isinstance(x, torch.Tensor) else torch.sin(torch.from_numpy(x)).numpy()
