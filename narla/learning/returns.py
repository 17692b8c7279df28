"""Discounted returns, advantages and per-neuron normalization on ``[T, B, N]`` tensors."""

from __future__ import annotations

import math

import torch

# Elements (16 MiB of float64) per temporary of reverse_discounted_sum and normalize_per_neuron on the CPU, which take
# a wide population a slice of neurons at a time. Measured here on [500, 64, 4000] returns: 1.24-1.26 s a call
# against 3.6-3.9 s with 2^23 (64 MiB), whose temporaries each went through memory several times.
COLUMN_BUDGET = 1 << 21
# The same on a GPU, where each slice costs a few dozen kernel launches: the value its returns ran with until
# 2026-12-04 (not measured against others; no GPU was lent when the CPU's was lowered).
DEVICE_COLUMN_BUDGET = 1 << 23
MIN_SLICE = 16  # neurons a slice takes at least (a run of 16 float32 is one 64-byte cache line), however long T x B


def slice_width(x: torch.Tensor) -> int:
    """Neurons per slice of ``x[T, B, N]`` so that a temporary holds about the device's budget of elements."""
    budget = COLUMN_BUDGET if x.device.type == "cpu" else DEVICE_COLUMN_BUDGET
    return max(MIN_SLICE, budget // max(1, x.shape[0] * x.shape[1]))


def reverse_discounted_sum(
    x: torch.Tensor, done: torch.Tensor, factor: float, out: torch.Tensor | None = None,
    after: torch.Tensor | None = None,
) -> torch.Tensor:
    """``y_t = x_t + factor (1 − done_t) y_{t+1}`` (``y_T = 0``, or ``after[B, N]``: the ``y`` of the tick after
    the last, for ticks scanned window by window from the end) for ``x[T, B, N]`` and ``done[T, B]``, as tensor ops.

    Closed form: ``y_t = factor^(−t) Σ_{k = t}^{e(t)} factor^k x_k``, where ``e(t)`` is the first tick at or after
    ``t`` with ``done`` (the end of t's episode). With ``C`` the cumulative sum of ``factor^k x_k``, the inner sum
    is ``C_{e(t)} − C_{t−1}``: one cumulative sum over T, a reverse cumulative minimum over ``done[T, B]`` for
    ``e`` and one row gather, in float64, with no loop over ticks. Ticks are taken in blocks over which
    ``factor^k`` falls no lower than 1e-6 (about 1,400 ticks at 0.99), which bounds the cancellation in
    ``C_{e(t)} − C_{t−1}``; each block's first ``y`` carries into the block before it. The sums are associated
    differently from the tick-by-tick recurrence, so results equal it to float rounding, not bit for bit.

    Memory: the result (``out``, or a new tensor like ``x``; ``out`` may be ``x`` itself, overwritten block by block
    after each block is read) plus temporaries of about :data:`COLUMN_BUDGET` elements (or :data:`MIN_SLICE`
    neurons' worth, if more): a wide ``x`` is taken a slice of neurons at a time, each written straight into its
    columns of the result. Every column is scanned on its own, so slicing changes no bit.
    """
    out = torch.empty_like(x) if out is None else out
    steps = x.shape[0]
    if steps == 0 or factor == 0.0:
        return out.copy_(x)
    width = slice_width(x)  # float64 temporaries stay near COLUMN_BUDGET
    for i in range(0, x.shape[2], width):
        _reverse_discounted_slice(x[..., i : i + width], done, factor, out[..., i : i + width],
                                  None if after is None else after[..., i : i + width])
    return out


def _reverse_discounted_slice(
    x: torch.Tensor, done: torch.Tensor, factor: float, out: torch.Tensor, after: torch.Tensor | None
) -> None:
    """:func:`reverse_discounted_sum` of one slice of neurons ``x[T, B, n]``, written into ``out[T, B, n]``."""
    steps = x.shape[0]
    block = steps if factor >= 1.0 else max(1, min(steps, int(math.log(1e-6) / math.log(factor)) + 1))
    base = torch.tensor(factor, dtype=torch.float64, device=x.device)
    columns = torch.arange(x.shape[1], device=x.device)
    # y at the first tick of the next block (of the tick after the last, for the last block)
    carry = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device) if after is None else after.double()
    for end in range(steps, 0, -block):
        start = max(0, end - block)
        length = end - start
        ticks = torch.arange(length, device=x.device)
        scale = torch.pow(base, ticks.double()).view(-1, 1, 1)  # factor^k, [L, 1, 1]
        z = x[start:end].double() * scale
        prefix = z.cumsum(0)  # C_t
        done_at = torch.where(done[start:end], ticks.view(-1, 1), length)  # [L, B]
        first_done = done_at.flip(0).cummin(0).values.flip(0)  # e(t), or L when no done in [t, L − 1]
        y = (prefix[first_done.clamp(max=length - 1), columns] - prefix + z) / scale
        reach = torch.pow(base, (length - ticks).double()).view(-1, 1)  # factor^(L − t)
        y = y + (reach * (first_done == length)).unsqueeze(-1) * carry
        out[start:end] = y
        carry = y[0]


def discounted_returns(
    rewards: torch.Tensor, done: torch.Tensor, gamma: float, out: torch.Tensor | None = None,
    after: torch.Tensor | None = None,
) -> torch.Tensor:
    """``G_t = r_t + γ G_{t+1} (1 - done_t)`` for ``rewards[T, B, N]`` and ``done[T, B]`` (``out`` and ``after`` as
    :func:`reverse_discounted_sum`)."""
    return reverse_discounted_sum(rewards, done, gamma, out, after)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, done: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and value targets, all ``[T, B, N]``.

    ``δ_t = r_t + γ V_{t+1} (1 - done_t) − V_t`` and ``A_t = δ_t + γλ (1 − done_t) A_{t+1}``; the value
    after an episode's last tick (and after the last tick of the batch) is 0 (truncation is treated as
    termination).
    """
    keep = (~done).to(rewards.dtype).unsqueeze(-1)
    next_value = torch.cat([values[1:], torch.zeros_like(values[:1])])
    delta = rewards + gamma * next_value * keep - values
    adv = reverse_discounted_sum(delta, done, gamma * lam, out=delta)  # written over delta: one [T, B, N] fewer
    return adv, adv + values


def normalize_per_neuron(
    x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-8, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Standardize ``x[T, B, N]`` per neuron over its valid ticks (``valid[T, B]``); invalid ticks -> 0.

    Into ``out`` (a new tensor like ``x`` if None; ``out`` may be ``x``, standardized in place). Neurons are taken a
    slice at a time (as :func:`reverse_discounted_sum`), so the temporaries stay bounded whatever ``N``: an update
    of a wide population holds its ``[T, B, N]`` result and not several more. A population within one slice gets
    the bits of one pass over all its neurons; a wider one gets its means and variances to float rounding (a
    reduction's order follows the layout it reads).
    """
    out = torch.empty_like(x) if out is None else out
    m = valid.float().unsqueeze(-1)
    count = m.sum((0, 1)).clamp(min=1.0)
    width = slice_width(x)
    for i in range(0, x.shape[2], width):
        part = x[..., i : i + width]
        mean = (part * m).sum((0, 1)) / count
        var = (((part - mean) * m) ** 2).sum((0, 1)) / count
        torch.sub(part, mean, out=out[..., i : i + width]).div_(var.sqrt() + eps).mul_(m)
    return out


class EpisodeTally:
    """Undiscounted returns of ``B`` running copies, and the sum and count of those whose episode ended since the
    last :meth:`take`; tensors throughout, so adding a tick costs no host sync."""

    def __init__(self, copies: int) -> None:
        self.running = torch.zeros(copies, dtype=torch.float64)
        self.ended_sum = torch.zeros((), dtype=torch.float64)
        self.ended = torch.zeros((), dtype=torch.float64)

    def add(self, reward: torch.Tensor, done: torch.Tensor) -> None:
        """One tick: ``reward[B]``, ``done[B]`` (the copies whose episode ended with it; they restart at 0)."""
        self.running += reward.double()
        self.ended_sum += (self.running * done).sum()
        self.ended += done.sum()
        self.running *= ~done

    def take(self) -> tuple[int, float | None]:
        """``(episodes, mean return)`` of the episodes ended since the last call (None without any); starts anew."""
        episodes = int(self.ended)
        mean = float(self.ended_sum) / episodes if episodes else None
        self.ended_sum.zero_()
        self.ended.zero_()
        return episodes, mean

