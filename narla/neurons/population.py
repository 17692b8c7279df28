"""All neurons' parameters as stacked tensors: one disjoint slice per neuron, never shared.

A stacked MLP keeps layer ``l``'s weights input-major, ``W[N, in, out]``, and biases ``b[N, 1, out]``: neuron i's
slice ``W[i]`` is the transpose of an ``nn.Linear(in, out).weight`` (:meth:`StackedMLP.neuron_linear` returns it in
that layout). A forward pass over neurons ``start:end`` is one batched matrix product over their gathered inputs.
Because slices are disjoint, the gradient of a summed loss with respect to ``W[i]`` is neuron i's own gradient,
and an elementwise optimizer (Adam) over the stack is the same as one optimizer per neuron.

Layout: activity is *neuron-major*, ``[neurons, features, columns]`` where the columns are the
flattened batch (``B`` copies, or ``T * B`` ticks when a rollout is re-evaluated).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from narla.context import positional_encoding
from narla.cooperation import DEFAULT_SCALES, get_amtf, soft_bound
from narla.wiring import Wiring

# Hidden-layer activations, applied in place to a layer's fresh output: none of them needs its input for the
# backward pass (each reads its result), and skipping the new [n, cols, H] buffer makes them about 2.5x faster.
# The in-place functions themselves, not F.leaky_relu(inplace=True), whose Python checks cost about 2 µs a call.
ACTIVATIONS = {
    "leaky_relu": functools.partial(F.leaky_relu_, negative_slope=0.01),
    "leaky_relu_0.3": functools.partial(F.leaky_relu_, negative_slope=0.3),  # the NaRLA paper's neurons
    "relu": torch.relu_,
    "tanh": torch.tanh_,
}

# Each activation's backward as autograd computes it for the in-place form above, from the gradient and the result,
# written over the gradient handed in: :class:`_ReplayedLayer` runs these to give the same gradients, bit for bit,
# without the layer's forward pass (in place: 0.72 against 1.22 ms into a new buffer for 15 neurons x 1,400 columns x
# 128 units, measured here).
_aten = torch.ops.aten
ACTIVATION_GRADS = {
    "leaky_relu": lambda grad, out: _aten.leaky_relu_backward.grad_input(grad, out, 0.01, True, grad_input=grad),
    "leaky_relu_0.3": lambda grad, out: _aten.leaky_relu_backward.grad_input(grad, out, 0.3, True, grad_input=grad),
    "relu": lambda grad, out: _aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad),
    "tanh": lambda grad, out: _aten.tanh_backward.grad_input(grad, out, grad_input=grad),
}


def _member_correction(base: torch.Tensor, h: torch.Tensor, dw: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """``base[n, cols, out] + h_p @ dW[:, p] + db[:, p]`` per column group ``p``: ``h[n, cols, in]``,
    ``dw[n, P, in, out]``, ``db[n, P, 1, out]`` (columns are ``P`` groups of ``k``)."""
    n, cols, out = base.shape
    members = dw.shape[1]
    k = cols // members
    nm = n * members
    acc = base.reshape(nm, k, out) + db.reshape(nm, 1, out)
    return torch.baddbmm(acc, h.reshape(nm, k, h.shape[2]), dw.reshape(nm, dw.shape[2], out)).view(n, cols, out)


COLUMN_FORM_COLS = 16  # columns from which a narrow layer is computed as W^T @ x (see _column_form)
COLUMN_FORM_OUT = 8  # the widest output computed that way


def _column_form(cols: int, out: int) -> bool:
    """Whether a layer of ``out`` units over ``cols`` columns runs faster as ``W^T[out, in] @ x[in, cols]`` than as
    ``h[cols, in] @ W[in, out]``. A narrow output (a neuron's one or two logits) leaves the row form's matrix
    product two units wide, which CPU kernels handle poorly: measured on this project's machine, the column form
    of a 128 -> 2 layer is 3x faster at 64 and 256 columns and 1.8x at 1,280, and slower only at one column.
    """
    return cols >= COLUMN_FORM_COLS and out <= COLUMN_FORM_OUT


class _ColumnLinear(torch.autograd.Function):
    """The column form ``W^T @ h^T + b`` -> ``[n, out, cols]`` of ``h[n, cols, in]``, ``W[n, in, out]``,
    ``b[n, 1, out]``, with a backward that hands ``h`` its gradient in ``h``'s own row layout ``[n, cols, in]``.

    Autograd's backward of the plain product would give ``h`` a transposed (column-major) gradient, and the hidden
    activation's backward that reads it next runs about 10x slower on strided memory than on contiguous memory
    (measured on this project's machine: 9.2 ms against 0.93 ms for 12 neurons x 1,406 columns x 128 units), about
    30 % of a training update's time. The weight gradient is ``grad @ h`` (a row of ``out`` against ``h``'s own
    rows), not ``h^T @ grad``, whose transposed operand made it 16x slower (5.8 ms against 0.37 ms for 15 neurons x
    1,379 columns x 128 units, one output), and a one-output layer hands ``h`` the outer product as a broadcast
    multiply (7x faster than a one-term matrix product). Same sums as autograd's: the gradients equal up to float
    rounding.
    """

    generate_vmap_rule = True  # ES's fallback evaluates members under torch.func.vmap

    @staticmethod
    def forward(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(b.transpose(1, 2), w.transpose(1, 2), h.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        h, w, _ = inputs
        ctx.save_for_backward(h, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, w = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            rows = grad.transpose(1, 2)  # [n, cols, out]
            if w.shape[2] == 1:  # an outer product: a broadcast multiply, not a one-term matrix product
                grad_h = rows * w.transpose(1, 2)
            else:
                grad_h = torch.bmm(rows.contiguous(), w.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad, h).transpose(1, 2)  # [n, out, in] -> [n, in, out]
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(2).unsqueeze(1)
        return grad_h, grad_w, grad_b


def _column_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[n, out, cols]`` = ``W^T @ h^T + b`` (see :class:`_ColumnLinear`; the plain product when no gradient is
    being recorded, which skips the Function's overhead on the acting path)."""
    if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or b.requires_grad):
        return _ColumnLinear.apply(h, w, b)
    return torch.baddbmm(b.transpose(1, 2), w.transpose(1, 2), h.transpose(1, 2))


def _hidden_backward(
    grad: torch.Tensor, h: torch.Tensor, w: torch.Tensor, w_t: torch.Tensor, out: torch.Tensor, activation: str,
    needs: tuple[bool, ...],
) -> tuple[torch.Tensor | None, ...]:
    """The gradients of a hidden layer ``out = act(h @ W + b)`` (``h[n, cols, in]``, ``W[n, in, out]``, ``w_t`` its
    ``W^T``) as autograd computes them for ``baddbmm`` and the in-place activation, the activation's backward written
    over ``grad``: ``g = act'(grad, out)``, ``dh = g @ W^T``, ``dW = h^T @ g``, ``db = Σ_cols g``; ``needs`` says
    which of ``(dh, dW, db)`` to compute. ``grad`` must be the layer's own: made by the next layer's backward for
    this call alone (StackedMLP.forward feeds a hidden output to the next layer and nothing else)."""
    g = ACTIVATION_GRADS[activation](grad if grad.is_contiguous() else grad.contiguous(), out)
    # dW and db first, while the g just written is still in cache; dh, which writes a new [n, cols, in], last (a
    # B = 64 update about 2 % faster than dh first, paired, here).
    grad_w = h.transpose(1, 2).bmm(g) if needs[1] else None
    grad_b = g.sum(1, keepdim=True) if needs[2] else None
    grad_h = g.bmm(w_t) if needs[0] else None
    return grad_h, grad_w, grad_b


class _ReplayedLayer(torch.autograd.Function):
    """A hidden layer ``out = act(h @ W + b)`` whose output an earlier pass already computed (acting,
    :mod:`narla.hidden`).

    Forward hands back ``out`` without computing anything; backward is :func:`_hidden_backward`. Given the output a
    forward pass would compute, the gradients are the ones it would give, bit for bit (tested).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
                activation: str) -> torch.Tensor:
        ctx.activation = activation
        ctx.out = out  # a plain reference: the recorded output has no autograd history
        ctx.save_for_backward(h, w)
        return out.detach()  # an alias, so that the record itself is never tied to this graph

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, w = ctx.saved_tensors
        # W^T copied to rows first: for this 128 x 128 layer the product read it about 10 % faster than a transposed
        # view on the machine where this was measured, and as fast on another; the same bits (tested). Not so for
        # every shape (a narrow W, one column): _HiddenLayer keeps autograd's view.
        w_t = w.transpose(1, 2).contiguous()
        return *_hidden_backward(grad, h, w, w_t, ctx.out, ctx.activation, ctx.needs_input_grad[:3]), None, None


IN_PLACE_BACKWARD_ELEMENTS = 1 << 20  # output elements from which a hidden layer takes _HiddenLayer (see there)


class _HiddenLayer(torch.autograd.Function):
    """A hidden layer ``out = act(h @ W + b)`` computed while gradients are recorded, whose backward
    (:func:`_hidden_backward`) applies the activation's backward in place. Autograd's backward of the in-place
    activation writes a new ``[n, cols, H]`` buffer instead; out of place, that took about 9 of a B = 64 update's
    125 ms here (profiled). The Function's own calls cost about 0.1 ms, more than they save on small layers (a
    forward and backward of 15 neurons x 64 columns x 128 units: 0.74 against 0.62 ms; of 15 x 1,250 x 128: 10.2
    against 19.1 ms, measured here), so StackedMLP takes it from :data:`IN_PLACE_BACKWARD_ELEMENTS` output elements.
    The same gradients as autograd's, bit for bit (tested)."""

    generate_vmap_rule = True  # as _ColumnLinear: usable under torch.func.vmap

    @staticmethod
    def forward(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, activation: str) -> torch.Tensor:
        return ACTIVATIONS[activation](torch.baddbmm(b, h, w))

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        h, w, _, ctx.activation = inputs
        ctx.save_for_backward(h, w, output)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, w, out = ctx.saved_tensors
        return *_hidden_backward(grad, h, w, w.transpose(1, 2), out, ctx.activation, ctx.needs_input_grad[:3]), None


class StackedMLP(nn.Module):
    """``N`` independent MLPs ``in_dim -> hidden... -> out_dim``, one per neuron."""

    def __init__(
        self, num: int, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str, fan_in: torch.Tensor
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        self.activation_name = activation
        self.activation = ACTIVATIONS[activation]
        sizes = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            # nn.Linear's default init, per neuron; the first layer's bound uses the neuron's real fan-in.
            true_in = fan_in.clamp(min=1).float() if layer == 0 else torch.full((num,), float(a))
            bound = (1.0 / true_in.sqrt()).view(num, 1, 1)
            # Stored input-major, W[N, in, out] and b[N, 1, out]: a batch of row vectors times W is the fast
            # kernel at small B (about 4x faster than W @ x at B = 1 on CPU); values are drawn as [N, out, in].
            self.weights.append(nn.Parameter(((torch.rand(num, b, a) * 2 - 1) * bound).transpose(1, 2).contiguous()))
            self.biases.append(nn.Parameter(((torch.rand(num, b, 1) * 2 - 1) * bound).transpose(1, 2).contiguous()))
        self._split: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] | None = None
        self._acting_cache: dict[tuple[int, int, int], tuple] = {}  # (start, end, fan) -> act's rows
        self._acting_ptrs: tuple[int, ...] = ()

    @contextlib.contextmanager
    def split_rows(self, groups: Sequence[tuple[int, int]]) -> Iterator[None]:
        """While open, a forward pass over one of ``groups`` (neuron slices, in order) reads its parameter rows from
        one ``torch.split`` of each parameter rather than a slice of it. Same values; but a backward pass then
        assembles each parameter's gradient once, where slices have autograd write a zero-padded full-size gradient
        per group and add them up (about 3 ms of a 5-layer update at B = 64 here). For an update's groups."""
        cuts = sorted({0, self.weights[0].shape[0], *(bound for group in groups for bound in group)})
        pieces = list(zip(cuts[:-1], cuts[1:], strict=True))
        sizes = [hi - lo for lo, hi in pieces]
        split = [(w.split(sizes), b.split(sizes)) for w, b in self.layers()]
        self._split = {piece: [(w[i], b[i]) for w, b in split] for i, piece in enumerate(pieces)}
        try:
            yield
        finally:
            self._split = None

    def forward(
        self,
        x: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        rows: torch.Tensor | None = None,
        deltas: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        keep: list[torch.Tensor] | None = None,
        replay: torch.Tensor | None = None,
        acting: bool = False,
    ) -> torch.Tensor:
        """``x[n, in, cols]`` for neurons ``start:end`` -> ``[n, out, cols]``.

        ``rows[n]`` (optional) picks each neuron's parameter row when parameters are tied; without it
        neuron ``i`` uses row ``i``.

        ``deltas`` (optional, one ``(dW[N, P, in, out], db[N, P, 1, out])`` per layer, *per neuron*: neuron
        first, already expanded through ``rows``, then member) evaluates ``P`` perturbed members at once: the
        columns are ``P`` groups of ``k = cols / P`` and neuron i's group ``p`` uses ``W + dW[i, p]``,
        ``b + db[i, p]``. Computed as the shared product ``h @ W`` plus one batched per-(neuron, member)
        correction ``h_p @ dW[i, p]``.

        ``keep`` (optional list): the last hidden layer's output ``[n, cols, H]`` is appended to it, as acting keeps it
        for the update (:mod:`narla.hidden`). ``replay`` (optional ``[n, cols, H]``): that output, from an earlier
        pass over the same inputs and parameters; the layer is not computed, and the backward pass reads it
        (:class:`_ReplayedLayer`). ``acting``: an acting tick without gradient; untied, it is :meth:`act`.
        """
        if acting and rows is None and deltas is None and replay is None:
            self.check_acting_rows()
            return self.act(x, start, end, keep)
        last = len(self.weights) - 1
        h = x.transpose(1, 2)  # [n, cols, in]
        cut = self._split.get((start, end)) if self._split is not None and rows is None else None  # rows already cut
        for layer, (w, b) in enumerate(self.layers() if cut is None else cut):
            if cut is None:
                w, b = (w[start:end], b[start:end]) if rows is None else (w[rows], b[rows])
            if layer == 0 and h.shape[-1] < w.shape[1]:
                w = w[:, : h.shape[-1]]  # inputs gathered without the padding (Engine.trim_padding)
            if layer == last and deltas is None and _column_form(h.shape[1], w.shape[2]):
                return _column_linear(h, w, b)  # [n, out, cols]
            if replay is not None and layer == last - 1:
                h = _ReplayedLayer.apply(h, w, b, replay, self.activation_name)
                continue
            if (layer < last and deltas is None and keep is None and torch.is_grad_enabled()
                    and (w.requires_grad or h.requires_grad)
                    and h.shape[0] * h.shape[1] * w.shape[2] >= IN_PLACE_BACKWARD_ELEMENTS):
                h = _HiddenLayer.apply(h, w, b, self.activation_name)  # act(h @ W + b), its backward in place
                continue
            h_in = h
            h = torch.baddbmm(b, h, w)  # [n, cols, out] = h @ W + b, per neuron
            if deltas is not None:
                dw, db = deltas[layer]
                h = _member_correction(h, h_in, dw[start:end], db[start:end])
            if layer < last:
                h = self.activation(h)
                if keep is not None and layer == last - 1:
                    keep.append(h)
        return h.transpose(1, 2)

    def act(self, x: torch.Tensor, start: int, end: int, keep: list[torch.Tensor] | None = None) -> torch.Tensor:
        """:meth:`forward` of an acting tick (no gradient, each neuron its own rows), in as few calls as the layers
        need: the same products. Reads the stage's rows from a cache that :meth:`check_acting_rows` must have
        checked since the parameters last changed storage (the engine checks once per tick; ``forward(...,
        acting=True)`` on every call). A stage's Python work, slowed between its large products, was about a third
        of a tick of a few copies here."""
        h = x.transpose(1, 2)  # [n, cols, in]
        hidden, (w, b), (w_t, b_t) = (self._acting_cache.get((start, end, h.shape[2]))
                                      or self._acting_rows(start, end, h.shape[2]))
        for w_l, b_l in hidden:
            h = self.activation(torch.baddbmm(b_l, h, w_l))
        if keep is not None and hidden:
            keep.append(h)
        if _column_form(h.shape[1], w.shape[2]):
            return torch.baddbmm(b_t, w_t, h.transpose(1, 2))  # [n, out, cols]
        return torch.baddbmm(b, h, w).transpose(1, 2)

    def check_acting_rows(self) -> None:
        """Empty :meth:`act`'s cache of parameter rows if any parameter has new storage since it was filled (a
        batch of runs restacks its parameters, ``.to()`` moves them); updates in place keep it valid."""
        ptrs = tuple(w.data_ptr() for pair in self.layers() for w in pair)
        if ptrs != self._acting_ptrs:
            self._acting_cache.clear()
            self._acting_ptrs = ptrs

    def _acting_rows(self, start: int, end: int, fan: int) -> tuple:
        """:meth:`act`'s views of rows ``start:end``, cut once per stage and cached (cutting them took 12 of the 78 µs
        of a one-column stage of 2×128 policies here): the hidden layers' ``(W, b)`` (the first layer's first ``fan``
        inputs: gathered inputs may leave out the padding, Engine.trim_padding), the output layer's ``(W, b)`` and
        its transposes ``(W^T, b^T)``. Cut in inference mode, they must not enter autograd."""
        cut = [(w[start:end], b[start:end]) for w, b in self.layers()]
        cut[0] = (cut[0][0][:, :fan], cut[0][1])
        *hidden, (w, b) = cut
        rows = self._acting_cache[(start, end, fan)] = (hidden, (w, b), (w.transpose(1, 2), b.transpose(1, 2)))
        return rows

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(W[N, in, out], b[N, 1, out]), ...]``, read straight from the two lists' parameter tables: iterating
        an ``nn.ParameterList`` goes through ``Module.__getattr__`` per item, a quarter of a small network's forward
        pass. The tables are what ``named_parameters`` reports, so a functional swap of them is seen here too."""
        return list(zip(self.weights._parameters.values(), self.biases._parameters.values(), strict=True))

    def neuron_linear(
        self, layer: int, row: int, grad: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Row ``row`` of layer ``layer`` in ``nn.Linear`` layout: ``(weight[out, in], bias[out])`` (or their grads)."""
        w, b = self.weights[layer], self.biases[layer]
        if grad:
            w, b = w.grad, b.grad
        return (None if w is None else w[row].T), (None if b is None else b[row, 0])


class Population(nn.Module):
    """Every neuron's policy (and, for actor-critic, its own critic) as stacked parameters.

    Each neuron is a two-point neuron: its MLP integrates the feedforward inputs into ``R[n, D, cols]``,
    a linear map of its context inputs gives ``C[n, 1, cols]``, and its output is ``amtf(R, C)``
    (R and C soft-bounded first, ``s·tanh(·/s)``, see :mod:`narla.cooperation`).
    ``D`` is 1 (a Bernoulli firing logit) unless a categorical motor neuron needs one logit per action.

    Context inputs ``c_in[n, Fc + P + A, cols]``: the ``Fc`` graph context sources (previous tick), then
    ``P = position_dim`` columns of the neuron's fixed positional encoding, then ``A = action_dim``
    columns of the previous task action (universal context, :mod:`narla.context`).

    ``slots[N]`` (long, optional): neuron ``i`` uses parameter row ``slots[i]`` (tied neurons share a row; the
    gradient of the row is the sum of its neurons' own gradients). Default: one row per neuron.
    """

    def __init__(
        self,
        wiring: Wiring,
        out_dim: int = 1,
        hidden: Sequence[int] = (128, 128),
        activation: str = "leaky_relu",
        amtf: str = "feedforward",
        critic: bool = False,
        amtf_scale: float | None | str = "default",
        position_dim: int = 0,
        action_dim: int = 0,
        slots: torch.Tensor | None = None,
        rate: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        n, fan = wiring.ff_idx.shape
        fan_in = wiring.ff_mask.sum(1).cpu()
        rows = n
        if slots is not None:
            slots = slots.long().cpu()
            rows = int(slots.max()) + 1 if n else 0
            first = torch.full((rows,), -1, dtype=torch.long)
            first[slots.flip(0)] = torch.arange(n - 1, -1, -1)
            fan_in = fan_in[first]
        self.register_buffer("slots", slots)
        # Rate neurons (rate[i] True): a continuous output tanh(z), Gaussian with the learned log_std[i] under
        # policy gradients. Spiking neurons (the default) ignore log_std.
        self.register_buffer("rate", None if rate is None else rate.bool().to(wiring.ff_idx.device))
        self.log_std = nn.Parameter(torch.full((n, 1), -0.5)) if rate is not None and bool(rate.any()) else None
        self.out_dim = out_dim
        self.amtf_name = amtf
        self.amtf = get_amtf(amtf)
        self.amtf_scale = DEFAULT_SCALES[amtf] if amtf_scale == "default" else amtf_scale
        self.position_dim = position_dim
        self.action_dim = action_dim
        self.register_buffer("position", positional_encoding(n, position_dim).unsqueeze(-1))  # [N, P, 1]
        self.policy = StackedMLP(rows, fan, hidden, out_dim, activation, fan_in)
        self.critic = StackedMLP(rows, fan, hidden, 1, activation, fan_in) if critic else None
        ctx = wiring.ctx_idx.shape[1] + position_dim + action_dim
        self.context_weight = nn.Parameter(torch.randn(rows, 1, ctx) / math.sqrt(max(ctx, 1)))
        self.context_bias = nn.Parameter(torch.zeros(rows, 1, 1))

    def _rows(self, start: int, end: int | None) -> torch.Tensor | None:
        return None if self.slots is None else self.slots[start:end]

    def _param(self, p: torch.Tensor, start: int, end: int | None) -> torch.Tensor:
        """Rows of a stacked parameter for neurons ``start:end`` (following ``slots`` when tied)."""
        return p[start:end] if self.slots is None else p[self.slots[start:end]]

    def feedforward_inputs(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Gathered feedforward inputs ``x[n, F, cols]`` as the neurons' MLPs read them."""
        return x

    def context_inputs(
        self, c_in: torch.Tensor, start: int = 0, end: int | None = None, prev_action: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Graph context ``c_in[n, Fc, cols]`` -> all context inputs ``[n, Fc + P + A, cols]``.

        ``prev_action[cols, A]`` is the previous task action (zeros when None).
        """
        n, _, cols = c_in.shape
        parts = [c_in]
        if self.position_dim:
            parts.append(self.position[start:end].expand(n, self.position_dim, cols))
        if self.action_dim:
            if prev_action is None:
                prev_action = c_in.new_zeros(cols, self.action_dim)
            parts.append(prev_action.T.unsqueeze(0).expand(n, self.action_dim, cols))
        return torch.cat(parts, 1) if len(parts) > 1 else c_in

    def context(self, c_in: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """All context inputs ``c_in[n, Fc + P + A, cols]`` -> ``C[n, 1, cols] = w_c · c_in + b_c``."""
        w = self._param(self.context_weight, start, end)
        b = self._param(self.context_bias, start, end)
        return torch.baddbmm(b, w, c_in)

    def forward(
        self,
        x: torch.Tensor,
        c_in: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        prev_action: torch.Tensor | None = None,
        deltas: dict[str, torch.Tensor] | None = None,
        replay: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Output pre-activations ``amtf(s·tanh(R/s), s·tanh(C/s))``: ``[n, D, cols]`` for neurons ``start:end``.

        ``deltas`` (optional): perturbed members evaluated as one batched pass, see :meth:`forward_members`.
        ``replay`` (optional): the policy's last hidden output, as acting computed it (:meth:`StackedMLP.forward`).
        """
        if deltas is not None:
            return self.forward_members(x, c_in, deltas, start, end, prev_action)
        r = self.policy(self.feedforward_inputs(x, start, end), start, end, self._rows(start, end), replay=replay)
        if self.amtf_name == "feedforward":  # context is ignored: skip computing it
            return soft_bound(r, self.amtf_scale)
        c = self.context(self.context_inputs(c_in, start, end, prev_action), start, end)
        return self.amtf(soft_bound(r, self.amtf_scale), soft_bound(c, self.amtf_scale))

    def value(
        self, x: torch.Tensor, start: int = 0, end: int | None = None, deltas: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Each neuron's critic of its own return, ``[n, cols]``, from its feedforward inputs.

        ``deltas`` (optional): per-member perturbations as in :meth:`forward_members`.
        """
        if self.critic is None:
            raise RuntimeError("this population was built without critics (critic=False)")
        layer_deltas = None if deltas is None else self._layer_deltas("critic", self.critic, deltas)
        ff = self.feedforward_inputs(x, start, end)
        return self.critic(ff, start, end, self._rows(start, end), layer_deltas)[:, 0]

    # -- perturbed members (per-neuron ES) -------------------------------------------------------
    @staticmethod
    def _layer_deltas(
        prefix: str, mlp: StackedMLP, deltas: dict[str, torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        layers = range(len(mlp.weights))
        return [(deltas[f"{prefix}.weights.{layer}"], deltas[f"{prefix}.biases.{layer}"]) for layer in layers]

    @staticmethod
    def _member_delta(name: str, start: int, end: int | None, deltas: dict[str, torch.Tensor]) -> torch.Tensor:
        """Delta ``[n, P, ...]`` of parameter ``name`` for neurons ``start:end`` (a view)."""
        return deltas[name][start:end]

    def member_deltas(self, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Member-major deltas ``name -> [P, R, ...]`` (R parameter rows) -> the per-neuron layout ``[N, P, ...]``
        that :meth:`forward_members` takes (expanded through ``slots``; zeros for parameters without a delta).

        Build it once per set of deltas: every forward then slices it without copying.
        """
        members = next(iter(deltas.values())).shape[0]
        out = {}
        for name, param in self.named_parameters():
            d = deltas.get(name)
            d = param.new_zeros(members, *param.shape) if d is None else d.detach()
            d = d.transpose(0, 1)
            out[name] = (d if self.slots is None else d[self.slots]).contiguous()
        return out

    def forward_members(
        self,
        x: torch.Tensor,
        c_in: torch.Tensor,
        deltas: dict[str, torch.Tensor],
        start: int = 0,
        end: int | None = None,
        prev_action: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`forward` of ``P`` perturbed members at once: ``[n, D, cols]``.

        ``deltas[name]`` is *per neuron*, ``[N, P, *param.shape[1:]]`` for every named parameter, as built by
        :meth:`member_deltas`. The ``cols`` columns are ``P`` consecutive groups of ``k = cols / P``; neuron i's
        group ``p`` is computed with its parameters plus ``deltas[name][i, p]``. ``prev_action`` is ``[cols, A]``.
        """
        rows = self._rows(start, end)
        layer_deltas = self._layer_deltas("policy", self.policy, deltas)
        r = self.policy(self.feedforward_inputs(x, start, end), start, end, rows, layer_deltas)
        if self.amtf_name == "feedforward":
            return soft_bound(r, self.amtf_scale)
        c = self.member_context(self.context_inputs(c_in, start, end, prev_action), deltas, start, end)
        return self.amtf(soft_bound(r, self.amtf_scale), soft_bound(c, self.amtf_scale))

    def member_context(
        self, c_in: torch.Tensor, deltas: dict[str, torch.Tensor], start: int = 0, end: int | None = None
    ) -> torch.Tensor:
        """:meth:`context` ``[n, 1, cols]``, column group ``p`` under ``w_c + dw_c[:, p]`` and ``b_c + db_c[:, p]``."""
        n, ctx, cols = c_in.shape
        dw = self._member_delta("context_weight", start, end, deltas)  # [n, P, 1, ctx]
        db = self._member_delta("context_bias", start, end, deltas)  # [n, P, 1, 1]
        members = dw.shape[1]
        k = cols // members
        grouped = c_in.reshape(n, ctx, members, k).transpose(1, 2).reshape(n * members, ctx, k)
        corr = torch.baddbmm(db.reshape(n * members, 1, 1), dw.reshape(n * members, 1, ctx), grouped)
        return self.context(c_in, start, end) + corr.view(n, 1, cols)
