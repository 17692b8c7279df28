"""Running observation normalization with statistics that can be saved alongside a model."""

from __future__ import annotations

import torch
from torch import nn

from narla.tasks.base import Task


class RunningNormalizer(nn.Module):
    """Tracks the running mean and variance of ``[B, S]`` batches and normalizes with them.

    Statistics are merged batch by batch with the parallel form of Welford's algorithm (Chan et al.), so
    after any sequence of updates ``mean`` and ``var`` equal the mean and population variance of every row
    seen so far. ``normalize(x) = clip((x - mean) / sqrt(var + eps), -clip, clip)``. The statistics are
    registered buffers: ``state_dict()`` / ``load_state_dict()`` save and restore them, and they move with
    ``.to(device)``. They are kept in float64 by default so long runs do not lose precision.
    """

    def __init__(
        self,
        size: int,
        clip: float = 10.0,
        eps: float = 1e-8,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(size, dtype=dtype, device=device))
        self.register_buffer("var", torch.ones(size, dtype=dtype, device=device))
        self.register_buffer("count", torch.zeros((), dtype=dtype, device=device))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the rows of ``x`` ``[B, S]`` into the running statistics."""
        x = x.reshape(-1, self.mean.shape[0]).to(self.mean.dtype)
        batch_count = x.shape[0]
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        # The old var is ignored while count is 0, so the first batch sets the statistics exactly.
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized, clipped copy of ``x`` ``[..., S]`` in ``x``'s dtype."""
        scaled = (x.to(self.mean.dtype) - self.mean) / torch.sqrt(self.var + self.eps)
        return scaled.clamp(-self.clip, self.clip).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Update the statistics with ``x`` when ``self.training``, then return ``normalize(x)``."""
        if self.training:
            self.update(x)
        return self.normalize(x)


class NormalizedTask(Task):
    """``task`` whose observations pass through a :class:`RunningNormalizer` (``self.normalizer``).

    The statistics are updated on every observation while ``training`` is True (the default) and frozen when it
    is False (replay). The trainer saves them beside the model and in checkpoints, as it does Ant's.
    """

    def __init__(self, task: Task) -> None:
        self.inner = task
        self.num_envs, self.obs_dim, self.action_space = task.num_envs, task.obs_dim, task.action_space
        self.device, self.max_episode_steps, self.solve = task.device, task.max_episode_steps, task.solve
        self.normalizer = RunningNormalizer(task.obs_dim, device=task.device)
        self.training = True

    def _normalize(self, obs: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.normalizer.update(obs)
        return self.normalizer.normalize(obs)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        return self._normalize(self.inner.reset(seed))

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        obs, reward, terminated, truncated = self.inner.step(action)
        return self._normalize(obs), reward, terminated, truncated

    def final_observation(self) -> torch.Tensor | None:
        final = self.inner.final_observation()
        return None if final is None else self.normalizer.normalize(final)

    def close(self) -> None:
        self.inner.close()
