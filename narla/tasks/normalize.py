"""Running observation normalization with statistics that can be saved alongside a model."""

from __future__ import annotations

import torch
from torch import nn


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
