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
instead (a tick holding more is a window of its own): the same bound on memory, ``C`` columns' activations, in
fewer windows, and each window's backward writes every neuron's weight gradient once (on the bench's
10,000-neuron network that write, not the products, is most of a window's time).
"""

from __future__ import annotations

import torch

from narla.engine import Engine
from narla.learning.clip import clip_per_neuron
from narla.learning.returns import discounted_returns, normalize_per_neuron
from narla.rollout import Rollout


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
        holds at once (:mod:`narla.memory` sizes its activations): a window of ``chunk_columns`` (or one tick of every
        copy, where that holds more), of ``chunk_ticks`` ticks (the tick carried before them is context, not
        re-evaluated), or the whole batch."""
        if self.chunk_columns is not None:
            return min(max(self.chunk_columns, copies), copies * ticks)
        if self.chunk_ticks is not None:
            return min(self.chunk_ticks, ticks) * copies
        return copies * ticks

    def advantages(self, rollout: Rollout) -> torch.Tensor:
        """Each neuron's (normalized) discounted return ``[T, B, N]``; zero on invalid ticks."""
        returns = discounted_returns(rollout.rewards, rollout.done, self.gamma)  # the one new [T, B, N]
        if self.normalize_returns:
            return normalize_per_neuron(returns, rollout.valid, out=returns)
        return returns.mul_(rollout.valid.unsqueeze(-1))

    def loss(self, rollout: Rollout) -> torch.Tensor:
        adv = self.advantages(rollout)
        logp, entropy, _ = self.engine.evaluate(rollout.obs, rollout.actions, rollout.first, valid=rollout.valid,
                                                hidden=rollout.hidden)
        mask = rollout.valid.float().unsqueeze(-1)
        b = rollout.num_episodes
        return -(logp * adv).sum() / b - self.entropy_coef * (entropy * mask).sum() / b

    def windows(self, rollout: Rollout) -> list[tuple[int, int]]:
        """The tick windows ``[start, end)`` an update re-evaluates one after another: ``chunk_ticks`` ticks each, or
        as many ticks as hold at most ``chunk_columns`` valid columns (one host copy of ``[T]`` counts); one window
        of all ticks without either."""
        t = rollout.obs.shape[0]
        if self.chunk_columns is None:
            k = self.chunk_ticks or max(t, 1)
            return [(start, min(start + k, t)) for start in range(0, t, k)]
        windows, start, held = [], 0, 0
        for tick, count in enumerate(rollout.valid.sum(1).tolist()):
            if held and held + count > self.chunk_columns:
                windows.append((start, tick))
                start, held = tick, 0
            held += count
        return windows + [(start, t)] if start < t else windows

    def chunk_losses(self, rollout: Rollout, windows: list[tuple[int, int]] | None = None):
        """The loss of ``rollout`` as the losses of its tick windows (:meth:`windows`; their sum is :meth:`loss`).

        Each window carries the tick before it, masked out, so that its first tick sees the previous activity.
        """
        adv = self.advantages(rollout)
        b = rollout.num_episodes
        for start, end in self.windows(rollout) if windows is None else windows:
            lo, hi = max(start - 1, 0), end
            valid = rollout.valid[lo:hi].clone()
            valid[: start - lo] = False  # the carried tick is context only
            logp, entropy, _ = self.engine.evaluate(rollout.obs[lo:hi], rollout.actions[lo:hi], rollout.first[lo:hi],
                                                    valid=valid)
            mask = valid.float().unsqueeze(-1)
            yield -(logp * adv[lo:hi] * mask).sum() / b - self.entropy_coef * (entropy * mask).sum() / b

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """One gradient step; returns detached statistics (no host sync but ``chunk_columns``' one copy of counts)."""
        self.optimizer.zero_grad(set_to_none=True)
        windows = self.windows(rollout) if self.chunk_ticks is not None or self.chunk_columns is not None else []
        if len(windows) > 1:
            loss = torch.zeros((), device=rollout.obs.device)
            for part in self.chunk_losses(rollout, windows):
                part.backward()  # this chunk's activations are freed before the next is computed
                loss = loss + part.detach()
        else:
            loss = self.loss(rollout)
            loss.backward()
        if self.max_grad_norm is not None:
            clip_per_neuron(self.params, self.max_grad_norm)
        self.optimizer.step()
        return {"loss": loss.detach()}
