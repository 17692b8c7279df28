"""AttentionNeuron's robustness tests as a task wrapper: shuffled observations and extra noise features.

:class:`ShuffledTask` wraps any :class:`~narla.tasks.base.Task`. Each copy's observation ``[S]`` gets ``K`` extra
features of standard normal noise (fresh every step) and the ``S + K`` features are then permuted by an order
drawn anew for the copy at each episode's start. A permutation-invariant network acts the same whatever the
order; a network that reads feature i at a fixed place does not.
"""

from __future__ import annotations

import torch

from narla.tasks.base import Task


class ShuffledTask(Task):
    """``task`` with ``noise_features`` extra noise inputs and, when ``shuffle``, a new feature order per episode."""

    def __init__(self, task: Task, shuffle: bool = True, noise_features: int = 0, seed: int = 0) -> None:
        if noise_features < 0:
            raise ValueError(f"--noise-features: must be >= 0, got {noise_features}")
        self.inner = task
        self.shuffle = shuffle
        self.noise_features = noise_features
        self.num_envs, self.action_space = task.num_envs, task.action_space
        self.device, self.max_episode_steps, self.solve = task.device, task.max_episode_steps, task.solve
        self.obs_dim = task.obs_dim + noise_features
        self.generator = torch.Generator(device=task.device)
        self.generator.manual_seed(seed)
        self.order = self._draw(torch.ones(self.num_envs, dtype=torch.bool, device=self.device), None)

    def _draw(self, new: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        """Feature orders ``[B, S + K]``: fresh for copies where ``new[B]``, kept elsewhere."""
        b, s = self.num_envs, self.obs_dim
        if self.shuffle:
            fresh = torch.rand(b, s, generator=self.generator, device=self.device).argsort(1)
        else:
            fresh = torch.arange(s, device=self.device).expand(b, s)
        return fresh if order is None else torch.where(new.unsqueeze(1), fresh, order)

    def _transform(self, obs: torch.Tensor) -> torch.Tensor:
        if self.noise_features:
            noise = torch.randn(self.num_envs, self.noise_features, generator=self.generator, device=self.device)
            obs = torch.cat([obs, noise], 1)
        return obs.gather(1, self.order)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        obs = self.inner.reset(seed)
        self.order = self._draw(torch.ones(self.num_envs, dtype=torch.bool, device=self.device), None)
        return self._transform(obs)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        obs, reward, terminated, truncated = self.inner.step(action)
        self.order = self._draw(terminated | truncated, self.order)  # a restarted copy gets a new order
        return self._transform(obs), reward, terminated, truncated

    def close(self) -> None:
        self.inner.close()
