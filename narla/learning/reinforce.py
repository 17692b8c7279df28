"""Per-neuron REINFORCE (NaRLA's rule): each neuron ascends the policy gradient of its own return.

For neuron i with log-probabilities ``log π_i(a_t | o_t)`` and its own rewards ``r_t^i``:

    G_t^i = Σ_k γ^k r_{t+k}^i                    (within the episode)
    Ĝ_t^i = (G_t^i − mean_i) / std_i             (per neuron, over the batch's valid ticks)
    L     = − Σ_i Σ_t Σ_b log π_i(a_t^b | o_t^b) Ĝ_t^{i,b} / B

The sum over neurons couples nothing: neuron i's parameters only appear in its own term.

When collection kept the policies' last hidden output (:attr:`Reinforce.keeps_hidden`, :mod:`narla.hidden`), the
update does not compute that layer again: the same gradients, bit for bit, in about a quarter less time at B = 256
(460 against 620 ms an update on the 5-layer network, one thread, ``docs/results/bench/keep_hidden.txt``).

Memory: the returns are standardized in place, so the update holds one ``[T, B, N]`` float32 tensor of advantages
beside the rollout (:func:`narla.learning.returns.normalize_per_neuron`, whose temporaries stay bounded whatever ``N``).
Re-evaluating a batch keeps every layer's activations of all ``T·B`` ticks for the backward pass, about
``T·B·(H_1 + H_2 + ...)·4`` bytes per neuron times two or three (the policy's hidden widths ``H``), plus its gathered
inputs ``T·B·F·4`` bytes (``F`` the fan-in). With ``chunk_ticks = K`` (``learning.chunk_ticks``) the ticks are
re-evaluated and back-propagated ``K`` at a time (each chunk with the tick before it, for context and delayed
inputs), so those terms scale with ``K·B`` instead of ``T·B``; the gradient is the same sum, equal up to float
rounding (tested). Only valid columns are re-evaluated, and most of a batch's late ticks hold few of them, so
``chunk_columns = C`` (``learning.chunk_columns``) cuts the ticks into windows of at most ``C`` valid columns
instead, and a tick holding more into windows of its copies: the same bound on memory, ``C`` columns' activations,
at any batch size, in fewer windows, and each window's backward writes every neuron's weight gradient once (on the
bench's 10,000-neuron network that write, not the products, is most of a window's time).
"""

from __future__ import annotations

import bisect

import torch

from narla.engine import Engine
from narla.learning.clip import clip_per_neuron
from narla.learning.returns import discounted_returns, normalize_per_neuron, slice_width
from narla.rewards.scheme import RewardScheme
from narla.rollout import Rollout

Window = tuple[int, int, slice]  # ticks [start, end) of the copies a slice picks (Reinforce.windows)


class Reinforce:
    """REINFORCE over a batch of complete episodes, one Adam over the stacked per-neuron parameters."""

    def __init__(
        self,
        engine: Engine,
        lr: float = 1e-3,
        gamma: float = 0.99,
        normalize_returns: bool = True,
        entropy_coef: float = 0.0,
        max_grad_norm: float | None = None,
        chunk_ticks: int | None = None,
        chunk_columns: int | None = None,
    ) -> None:
        if chunk_ticks is not None and chunk_columns is not None:
            raise ValueError("learning: set chunk_ticks or chunk_columns, not both")
        self.engine = engine
        self.chunk_ticks = chunk_ticks
        self.chunk_columns = chunk_columns
        self.gamma = gamma
        self.normalize_returns = normalize_returns
        self.entropy_coef = entropy_coef
        self.max_grad_norm = max_grad_norm
        self.params = [p for p in engine.population.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    @property
    def keeps_hidden(self) -> bool:
        """Whether collection should keep the policies' last hidden output for :meth:`update` (:mod:`narla.hidden`):
        unless the update re-evaluates in chunks of ticks. With ``chunk_columns`` a batch whose valid columns fit one
        window uses it; a larger one is re-evaluated window by window, and collection, given ``hidden_columns`` =
        ``chunk_columns``, drops its record once the batch passes one window."""
        return self.chunk_ticks is None

    def max_columns(self, copies: int, ticks: int) -> int:
        """The most columns (ticks × copies) one re-evaluation of a batch of ``copies`` copies over ``ticks`` ticks
        holds at once (:mod:`narla.memory` sizes its activations): a window of ``chunk_columns``, of ``chunk_ticks``
        ticks (the tick carried before them is context, not re-evaluated), or the whole batch."""
        if self.chunk_columns is not None:
            return min(self.chunk_columns, copies * ticks)
        if self.chunk_ticks is not None:
            return min(self.chunk_ticks, ticks) * copies
        return copies * ticks

    def records_rewards(self, scheme: RewardScheme, neurons: int, copies: int, ticks: int) -> bool:
        """Whether collection should record each tick's rewards for this learner (``collect(..., record_rewards=)``):
        yes, unless every reward term is tick-local and a batch's ``[T, B, N]`` float32 rewards over ``ticks`` ticks
        could pass :data:`LEAN_REWARD_BYTES`. Then the update scores them again window by window
        (:class:`WindowAdvantages`) and a batch holds about 1.5 bytes per neuron and copy-tick (the action, and a trace
        and a return carry per group of 16 ticks) instead of nine (with the record's reward and the advantages), plus
        one group's rewards at a time. Below that size the record is faster: it is scored once."""
        return not (scheme.tick_local and 4 * neurons * copies * ticks > LEAN_REWARD_BYTES)

    def advantages(self, rollout: Rollout) -> torch.Tensor:
        """Each neuron's (normalized) discounted return ``[T, B, N]``; zero on invalid ticks. From a rollout without
        recorded rewards they are scored again, into the tensor the returns are then written over."""
        if rollout.rewards is None:
            rewards = rollout.all_rewards()
            returns = discounted_returns(rewards, rollout.done, self.gamma, out=rewards)
        else:
            returns = discounted_returns(rollout.rewards, rollout.done, self.gamma)  # the one new [T, B, N]
        if self.normalize_returns:
            return normalize_per_neuron(returns, rollout.valid, out=returns)
        return returns.mul_(rollout.valid.unsqueeze(-1))

    def loss(self, rollout: Rollout) -> torch.Tensor:
        """The batch's loss, re-evaluated as one window of every tick (:meth:`chunk_losses`)."""
        (loss,) = self.chunk_losses(rollout, [(0, rollout.obs.shape[0], slice(None))])
        return loss

    def windows(self, rollout: Rollout) -> list[Window]:
        """The windows ``(start, end, copies)`` an update re-evaluates one after another, ticks ``[start, end)`` of the
        copies ``copies`` (a slice): ``chunk_ticks`` ticks each, or as many ticks as hold at most ``chunk_columns``
        valid columns, a tick holding more cut into runs of copies that do (one host copy of ``[T]`` counts, and one of
        ``[T, B]`` flags where a tick is cut); one window of all ticks without either."""
        t = rollout.obs.shape[0]
        every = slice(None)
        if self.chunk_columns is None:
            k = self.chunk_ticks or max(t, 1)
            return [(start, min(start + k, t), every) for start in range(0, t, k)]
        counts = rollout.valid.sum(1).tolist()
        flags = rollout.valid.tolist() if counts and max(counts) > self.chunk_columns else None  # ticks to cut
        windows, start, held = [], 0, 0
        for tick, count in enumerate(counts):
            if held and held + count > self.chunk_columns:
                windows.append((start, tick, every))
                start, held = tick, 0
            if count > self.chunk_columns:
                if start < tick:  # ticks without valid columns before it
                    windows.append((start, tick, every))
                windows += [(tick, tick + 1, copies) for copies in _copy_runs(flags[tick], self.chunk_columns)]
                start = tick + 1
                continue
            held += count
        return windows + [(start, t, every)] if start < t else windows

    def chunk_losses(self, rollout: Rollout, windows: list[Window] | None = None):
        """The loss of ``rollout`` as the losses of its tick windows (:meth:`windows`; their sum is :meth:`loss`).

        Each window evaluates its valid columns alone (:meth:`~narla.engine.Engine.evaluate_columns`), their previous
        tick read from the tick before the window; the advantages are read at those columns, from the scoring windows
        they fall in where the rollout recorded no rewards (:class:`WindowAdvantages`). A window of the whole batch
        replays the hidden layer collection kept (:mod:`narla.hidden`). One host sync per window (which columns are
        valid), and one more there (where each scoring window's columns begin)."""
        lean = _rescored_in_windows(rollout)
        adv = WindowAdvantages(self, rollout) if lean else self.advantages(rollout)
        (t, copies_in_all), whole = rollout.valid.shape, slice(None)
        b = rollout.num_episodes
        for start, end, copies in self.windows(rollout) if windows is None else windows:
            lo, hi = max(start - 1, 0), end
            valid = rollout.valid[lo:hi, copies].clone()
            valid[: start - lo] = False  # the carried tick is context only
            hidden = rollout.hidden if (start, end, copies) == (0, t, whole) else None
            keep, logp, entropy, _ = self.engine.evaluate_columns(
                rollout.obs[lo:hi, copies], rollout.actions[lo:hi, copies], rollout.first[lo:hi, copies], valid=valid,
                hidden=hidden)
            # the valid columns' ticks and copies in the whole batch; their advantages [N, C]
            first_copy = copies.indices(copies_in_all)[0]
            ticks, at = lo + keep // valid.shape[1], first_copy + keep % valid.shape[1]
            rows = (adv.columns(ticks, at) if lean else adv[ticks, at]).T
            yield -(logp * rows).sum() / b - self.entropy_coef * entropy.sum() / b

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """One gradient step; returns detached statistics (host syncs: which columns are valid, per window, and
        ``chunk_columns``' copies of counts).
        A rollout without recorded rewards, scored in several windows, is re-evaluated window by window: those of
        ``chunk_ticks`` or ``chunk_columns`` where set, else its scoring windows."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.chunk_ticks is not None or self.chunk_columns is not None:
            windows = self.windows(rollout)
        elif _rescored_in_windows(rollout):
            windows = [(lo, hi, slice(None)) for lo, hi in rollout.reward_windows()]
        else:
            windows = [(0, rollout.obs.shape[0], slice(None))]
        loss = torch.zeros((), device=rollout.obs.device)
        for part in self.chunk_losses(rollout, windows):
            part.backward()  # this window's activations are freed before the next is computed
            loss = loss + part.detach()
        if self.max_grad_norm is not None:
            clip_per_neuron(self.params, self.max_grad_norm)
        self.optimizer.step()
        return {"loss": loss.detach()}


def _copy_runs(valid: list[bool], most: int) -> list[slice]:
    """Consecutive runs of copies that hold at most ``most`` of a tick's ``valid`` columns (one flag per copy) each,
    covering every copy."""
    runs, first, held = [], 0, 0
    for copy, flag in enumerate(valid):
        if flag and held == most:
            runs.append(slice(first, copy))
            first, held = copy, 0
        held += flag
    return runs + [slice(first, len(valid))]


LEAN_REWARD_BYTES = 1 << 30  # a batch's [T, B, N] float32 rewards past this are scored again in the update instead


def _rescored_in_windows(rollout: Rollout) -> bool:
    """Whether ``rollout`` recorded no rewards and was scored in more than one window."""
    return rollout.rewards is None and len(rollout.reward_windows()) > 1


class WindowAdvantages:
    """The advantages of a rollout without recorded rewards (:class:`narla.rollout.Rescoring`), one scoring window at
    a time: never a ``[T, B, N]`` tensor.

    A first pass scores the windows again from the last to the first, their returns each carrying the next window's
    first return (:func:`~narla.learning.returns.discounted_returns`, ``after``), and keeps those carries and each
    neuron's count, mean and squared deviations over the valid ticks (combined window by window in float64, Chan et
    al.'s pairwise update). :meth:`columns` then scores a window once more (the last one made is kept: an update
    asks for its columns in tick order) and standardizes its returns with the whole batch's mean and deviation. The
    same quantities as :meth:`Reinforce.advantages`, summed in another order: equal to float rounding (tested). Its
    windows are the rollout's rescoring groups (:meth:`Rollout.reward_windows`); it keeps one ``[B, N]`` carry per
    group and one group's advantages at a time."""

    def __init__(self, learner: Reinforce, rollout: Rollout) -> None:
        self.rollout, self.gamma, self.normalize = rollout, learner.gamma, learner.normalize_returns
        self.windows = rollout.reward_windows()
        self.after: list[torch.Tensor | None] = [None] * len(self.windows)
        self.cached: tuple[int, torch.Tensor] | None = None
        n = rollout.actions.shape[2]
        count = torch.zeros((), dtype=torch.float64, device=rollout.valid.device)
        mean = torch.zeros(n, dtype=torch.float64, device=rollout.valid.device)
        squares = torch.zeros(n, dtype=torch.float64, device=rollout.valid.device)
        after = None
        for k in reversed(range(len(self.windows))):
            self.after[k] = after
            g = None  # the last window's returns freed before the next is made
            g = self._returns(k)
            after = g[0].clone()
            if not self.normalize:
                continue
            lo, hi = self.windows[k]
            m = rollout.valid[lo:hi].unsqueeze(-1).float()
            here = m.sum(dtype=torch.float64)
            total = count + here
            width = slice_width(g)  # a slice of neurons at a time: temporaries of a few MiB, not of the window
            for i in range(0, n, width):
                part, at = g[..., i : i + width], slice(i, i + width)
                here_mean = (part * m).sum((0, 1), dtype=torch.float64) / here.clamp(min=1.0)
                here_squares = (((part - here_mean.float()) * m) ** 2).sum((0, 1), dtype=torch.float64)
                delta = here_mean - mean[at]
                squares[at] += here_squares + delta**2 * count * here / total.clamp(min=1.0)
                mean[at] += delta * here / total.clamp(min=1.0)
            count = total
        count = count.clamp(min=1.0)
        self.mean, self.std = mean.float(), (squares / count).float().sqrt()
        self.bounds = [hi for _, hi in self.windows]

    def _returns(self, k: int) -> torch.Tensor:
        """Window ``k``'s discounted returns ``[hi - lo, B, N]`` (its rewards scored again, then overwritten)."""
        lo, hi = self.windows[k]
        rewards = self.rollout.window_rewards(k)
        return discounted_returns(rewards, self.rollout.done[lo:hi], self.gamma, out=rewards, after=self.after[k])

    def window(self, k: int) -> torch.Tensor:
        """Window ``k``'s advantages ``[hi - lo, B, N]``, zero on invalid ticks."""
        lo, hi = self.windows[k]
        returns = self._returns(k)
        m = self.rollout.valid[lo:hi].unsqueeze(-1)
        if not self.normalize:
            return returns.mul_(m)
        return returns.sub_(self.mean).div_(self.std + 1e-8).mul_(m)

    def columns(self, ticks: torch.Tensor, copies: torch.Tensor) -> torch.Tensor:
        """The advantages ``[C, N]`` of the columns ``(ticks[i], copies[i])``, ``ticks`` ascending, from the windows
        they fall in (one host copy of where each window's columns begin)."""
        parts = []
        cuts = [0, *torch.searchsorted(ticks, torch.tensor(self.bounds, device=ticks.device)).tolist()]
        for k in range(bisect.bisect_right(cuts, 0) - 1, len(self.windows)):  # from the first window holding any
            (lo, _), i, j = self.windows[k], cuts[k], cuts[k + 1]
            if i == len(ticks):
                break
            if i == j:
                continue
            if self.cached is None or self.cached[0] != k:
                self.cached = None  # freed before the next window is made
                self.cached = (k, self.window(k))
            parts.append(self.cached[1][ticks[i:j] - lo, copies[i:j]])
        if not parts:  # a window without valid columns
            return torch.zeros(0, self.rollout.actions.shape[2], device=ticks.device)
        return parts[0] if len(parts) == 1 else torch.cat(parts)
