"""The attention baseline: the same neurons, with context integrated by softmax attention across neurons.

:class:`AttentionPopulation` is a :class:`~narla.neurons.Population` whose contextual field C is not the
linear map ``w_c · c_in + b_c`` but attention over the neuron's graph context sources (the tokens), in the
AttentionNeuron style: a query built from the universal context, keys and values from each source's
previous-tick activity ``x_j``, and the AMTF is the additive one (a Transformer's residual, ``R + C``).

For neuron n with ``d = attn_dim`` (all parameters are the neuron's own, shapes per neuron)::

    q      = q0 + W_q u                       q0[d], W_q[d, U], u[U] = universal inputs (position, action)
    k_j    = a x_j                            a[d]    (a constant key offset would cancel in the softmax)
    s_j    = q·k_j / √d                       or, "expressive", (q·k_j)² / √d
    w      = softmax_j(s_j)                   over the real (unpadded) sources only
    C      = α Σ_j w_j x_j + γ·u + b          α[1], γ[U], b[1]

Parameter count per neuron: ``d (U + 2) + U + 2`` against the cooperator's ``Fc + U + 1``; ``d`` is chosen
by :func:`matching_dim` so that the two agree as closely as possible (the feedforward MLPs are identical), and
a test asserts the whole networks' counts are within 2 %.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from narla.neurons.population import Population
from narla.wiring import Wiring

ATTENTIONS = ("softmax", "expressive")


def matching_dim(ctx_dim: int, universal_dim: int) -> int:
    """The ``d >= 1`` whose attention parameters ``d (U + 2) + U + 2`` best match the linear ``Fc + U + 1``."""
    return max(1, round((ctx_dim - 1) / (universal_dim + 2)))


class AttentionPopulation(Population):
    """A population whose context C is attention over its context sources (see the module doc)."""

    def __init__(
        self, wiring: Wiring, *args, attention: str = "softmax", attn_dim: int | None = None, **kwargs
    ) -> None:
        if attention not in ATTENTIONS:
            raise ValueError(f"attention: unknown kind {attention!r}; allowed: {', '.join(ATTENTIONS)}")
        kwargs.setdefault("amtf", "additive")
        super().__init__(wiring, *args, **kwargs)
        rows = self.context_weight.shape[0]
        self.graph_ctx_dim = wiring.ctx_idx.shape[1]
        universal = self.position_dim + self.action_dim
        d = attn_dim if attn_dim is not None else matching_dim(self.graph_ctx_dim, universal)
        self.attention = attention
        self.attn_dim = d
        del self.context_weight
        self.query_bias = nn.Parameter(torch.randn(rows, d, 1) / math.sqrt(d))
        self.query_weight = nn.Parameter(torch.randn(rows, d, universal) / math.sqrt(max(universal, 1)))
        self.key_weight = nn.Parameter(torch.randn(rows, d, 1))
        self.value_weight = nn.Parameter(torch.randn(rows, 1, 1))
        self.universal_weight = nn.Parameter(torch.randn(rows, 1, universal) / math.sqrt(max(universal, 1)))
        mask = wiring.ctx_mask.cpu().unsqueeze(-1)
        if self.ctx_pool is not None:
            mask = torch.bmm(self.ctx_pool.cpu(), mask)
        self.register_buffer("token_mask", (mask > 0).to(wiring.ctx_mask.device))  # [N, Fc, 1]

    def context(self, c_in: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """All context inputs ``c_in[n, Fc + U, cols]`` -> ``C[n, 1, cols]`` by attention over the ``Fc`` tokens."""
        x, u = c_in[:, : self.graph_ctx_dim], c_in[:, self.graph_ctx_dim :]
        q = torch.baddbmm(self._param(self.query_bias, start, end), self._param(self.query_weight, start, end), u)
        qa = (q * self._param(self.key_weight, start, end)).sum(1, keepdim=True) / math.sqrt(self.attn_dim)
        attended = self._attend(qa, x, start, end)  # [n, 1, cols]
        linear_u = torch.bmm(self._param(self.universal_weight, start, end), u)
        return (
            self._param(self.value_weight, start, end) * attended
            + linear_u
            + self._param(self.context_bias, start, end)
        )

    def _attend(self, qa: torch.Tensor, x: torch.Tensor, start: int, end: int | None) -> torch.Tensor:
        """``Σ_j softmax_j(s_j) x_j`` ``[n, 1, cols]`` over the real tokens, from ``qa = q·a / √d`` and ``x``."""
        score = qa * x  # [n, Fc, cols]
        if self.attention == "expressive":
            score = score * score
        mask = self.token_mask[start:end]
        weights = torch.softmax(score.masked_fill(~mask, -1e9), 1) * mask
        return (weights * x).sum(1, keepdim=True)  # [n, 1, cols]

    def member_context(
        self, c_in: torch.Tensor, deltas: dict[str, torch.Tensor], start: int = 0, end: int | None = None
    ) -> torch.Tensor:
        """:meth:`context` with column group ``p`` under parameters ``θ + deltas[:, p]`` (per-neuron deltas)."""
        n, _, cols = c_in.shape
        members = deltas["context_bias"].shape[1]
        k = cols // members

        def param(name: str) -> torch.Tensor:  # [n, P, ...]: each neuron's parameter under each member
            own = self._param(getattr(self, name), start, end).unsqueeze(1)
            return own + self._member_delta(name, start, end, deltas)

        x, u = c_in[:, : self.graph_ctx_dim], c_in[:, self.graph_ctx_dim :]
        um = u.reshape(n, u.shape[1], members, k).transpose(1, 2)  # [n, P, U, k]
        q = param("query_bias") + param("query_weight") @ um  # [n, P, d, k]
        qa = (q * param("key_weight")).sum(2, keepdim=True) / math.sqrt(self.attn_dim)  # [n, P, 1, k]
        attended = self._attend(qa.reshape(n, 1, cols), x, start, end).view(n, members, 1, k)
        linear_u = param("universal_weight") @ um  # [n, P, 1, k]
        c = param("value_weight") * attended + linear_u + param("context_bias")
        return c.reshape(n, 1, cols)
