"""Acting's last hidden layer, kept so that a learning update need not compute it again.

A REINFORCE update re-evaluates every recorded tick: a forward pass over the batch's ``V`` valid columns (its
``T·B`` ticks less the padding), then the backward pass. In a policy ``in -> H_1 -> H_2 -> out`` most of that
forward pass is the ``H_1 × H_2`` product, which acting already computed tick by tick. When
:func:`narla.rollout.collect` keeps each tick's last hidden output (``keep_hidden=True``), the update recomputes only
the narrow layers around it and back-propagates through the kept output
(:class:`narla.neurons.population._ReplayedLayer`), with the same gradients bit for bit (``tests/test_hidden.py``).

Bit for bit, because a batched matrix product gives each column the same result whatever the number of columns,
except below a few columns, where CPU kernels take another path (below 4 columns on the AVX2 machine where this was
first measured, 12 for a product over one neuron; 4 for both on an AVX-512 one).
:func:`column_floor` measures that number once per layer shape on the machine at hand, and while it records, acting
computes a tick of fewer columns padded with zero columns up to it. Off the CPU, or where no such number is found,
nothing is kept and the update re-evaluates.

When it pays: keeping writes ``H · 4`` bytes per neuron for each column the engine computes to memory that is not
in cache, which slows collection; the update saves its widest product. Per batch of the NaRLA 5-layer network
(2×128 policies, all five rewards, this project's 2-core machine, interleaved batches, ``python
examples/keep_hidden.py``, 2026-12-04): 2 % faster at B = 32, 7 % at B = 64 and 128 and 13 % at B = 256, but
7 % slower at B = 16 and 30 % at B = 1, where the update is small. With narrower policies the update saves little and
collection still pays (``python examples/keep_hidden.py --hidden 32``). So only batches of at least
:data:`MIN_COPIES` copies keep it, and only a last hidden layer of at least :data:`MIN_INPUTS` inputs; a record that
would pass :data:`RECORD_BYTES` within 16 full ticks is not started; one that passes it later, or passes the update's
window of ``learning.chunk_columns`` columns (``collect(..., hidden_columns=)``), is dropped, and the update
re-evaluates. Each stage's outputs are copied tick by tick into buffers of :data:`SLAB_TICKS` full ticks (no more
than that window); a stage alone in its evaluation group whose batch fits one buffer is handed to the update as a
view of it, without a copy.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

SLAB_TICKS = 64  # full ticks of one stage's kept outputs per buffer; a batch within one is handed over uncopied
MIN_COPIES = 32  # narrower batches re-evaluate (see the module's docstring)
MIN_INPUTS = 128  # a last hidden layer of fewer inputs is recomputed: its product is too small to pay
RECORD_BYTES = 1 << 30  # a record past this is dropped (the update then re-evaluates)
MOST_COLUMNS = 64  # column_floor checks every column count up to this one against WIDE_COLUMNS
WIDE_COLUMNS = 1024


@functools.cache
def column_floor(inputs: int, outputs: int, transposed: bool, single: bool, threads: int) -> int | None:
    """The fewest columns ``c`` from which ``baddbmm`` over ``c`` columns gives every column the bits it gets among
    :data:`WIDE_COLUMNS` columns of a product over several neurons (CPU, fp32, ``inputs -> outputs``).

    ``transposed``: the inputs are a transposed ``[n, in, cols]`` tensor, as a first layer reads its gathered inputs.
    ``single``: the product is over one neuron, which CPU kernels may compute on another path (its floor was 12
    columns against 4 on the AVX2 machine where this was first measured). Every count up to :data:`MOST_COLUMNS` is
    checked; None if even that many differ. ``threads`` is part of the cache key: a kernel may choose by it.
    """
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, inputs, outputs, generator=g)
    b = torch.randn(2, 1, outputs, generator=g)
    if transposed:
        src = torch.randn(2, inputs, WIDE_COLUMNS, generator=g)
    else:
        src = torch.randn(2, WIDE_COLUMNS, inputs, generator=g)
    batch = 1 if single else 2

    def product(cols: int, neurons: int) -> torch.Tensor:
        h = src[:neurons, :, :cols].contiguous().transpose(1, 2) if transposed else src[:neurons, :cols]
        return torch.baddbmm(b[:neurons], h, w[:neurons])

    wide = product(WIDE_COLUMNS, 2)[:batch]
    floor = None
    for cols in [WIDE_COLUMNS, *range(MOST_COLUMNS, 0, -1)]:
        if not torch.equal(product(cols, batch), wide[:, :cols]):
            break
        floor = cols
    return None if floor == WIDE_COLUMNS else floor


class HiddenRecord:
    """Every stage's last hidden output, tick by tick, for the columns the engine computed; then an update's valid
    columns of it, one evaluation group at a time (:meth:`take`).

    Collection starts it (:meth:`start`), the engine adds each stage's output (:meth:`add`, through
    ``Engine.hidden_record``), collection closes each tick (:meth:`end_tick`) and the batch (:meth:`finish`).
    """

    def __init__(self, engine, floors: dict[int, int], batch: int, most_columns: int | None = None) -> None:
        self.engine = engine
        self.batch = batch
        self.most_columns = most_columns  # past this many computed columns the record is dropped (None: no limit)
        self.computed = 0  # columns computed so far
        self.policy = engine.population.policy
        self.floors = floors  # per stage (its first neuron): while recording, fewer columns are padded up to this
        self.pieces: dict[int, list[torch.Tensor]] = {start: [] for start, _ in engine.stages}  # per tick, a view
        # Each stage's ticks are copied one after another into buffers ("slabs") of ``slab`` columns: a batch that
        # fits in one needs no concatenation when an update takes it. Slabs of 16 full ticks where 64 would pass
        # the budget (start() checked that 16 fit), and of no more than ``most_columns``, past which it is dropped.
        width = self.policy.weights[-1].shape[1]
        ticks = SLAB_TICKS if SLAB_TICKS * batch * engine.num_neurons * width * 4 <= RECORD_BYTES else 16
        self.slab = ticks * batch if most_columns is None else max(1, min(ticks * batch, most_columns))
        self.slabs: dict[int, list[list]] = {start: [] for start, _ in engine.stages}  # [[buffer, columns used]]
        self.active: list[torch.Tensor | None] = []  # per tick: the copies computed (None: all)
        self.select: list[torch.Tensor | None] = []  # per tick, after finish: the valid ones among them (None: all)
        self.columns = 0  # valid columns, after finish
        self.bytes = 0
        self.dropped = False
        self.versions = self._versions()

    @classmethod
    def start(cls, engine, batch: int, most_columns: int | None = None) -> HiddenRecord | None:
        """A record for the engine's next collection of ``batch`` copies, or None where none is kept: outside the
        feedforward Bernoulli path (``Engine.bernoulli_feedforward``), off the CPU, when the last hidden layer has
        fewer than :data:`MIN_INPUTS` inputs (or there is none), below :data:`MIN_COPIES`, past :data:`RECORD_BYTES`
        within 16 full ticks, where ``most_columns`` is below ``batch``, or where no column floor exists.
        ``most_columns``: the record is dropped before more columns than this would be kept (an update
        re-evaluating in windows of that many valid columns, ``learning.chunk_columns``, could not use it)."""
        if not engine.bernoulli_feedforward or engine.device.type != "cpu" or batch < MIN_COPIES:
            return None
        if most_columns is not None and most_columns < batch:  # the first tick alone would pass it
            return None
        weights = list(engine.population.policy.weights)
        if len(weights) < 2 or weights[-2].shape[1] < MIN_INPUTS:  # no hidden layer, or one too narrow to pay
            return None
        if 16 * batch * engine.num_neurons * weights[-1].shape[1] * 4 > RECORD_BYTES:
            return None
        threads = torch.get_num_threads()
        floors = {}
        for start, end in engine.stages:
            shapes = [(engine.stage_fan(start, end), weights[0].shape[2], True)]
            shapes += [(w.shape[1], w.shape[2], False) for w in weights[1:-1]]
            stage = [column_floor(i, o, t, end - start == 1, threads) for i, o, t in shapes]
            if any(f is None for f in stage):
                return None
            floors[start] = max(stage)
        return cls(engine, floors, batch, most_columns)

    def _versions(self) -> list[int]:
        return [p._version for p in self.policy.parameters()]

    def pad(self, start: int, x: torch.Tensor) -> torch.Tensor:
        """The inputs ``x[n, F, cols]`` of the stage starting at neuron ``start``, padded with zero columns up to its
        column floor."""
        floor = self.floors[start]
        return F.pad(x, (0, floor - x.shape[2])) if x.shape[2] < floor else x

    def add(self, start: int, hidden: torch.Tensor) -> None:
        """The last hidden output ``[n, cols, H]`` of the stage starting at neuron ``start``, this tick (copied)."""
        if self.dropped:
            return
        n, cols, width = hidden.shape
        if self.most_columns is not None and self.computed + cols > self.most_columns:
            self._drop()  # before a buffer is made for columns past the window
            return
        slabs = self.slabs[start]
        if not slabs or slabs[-1][1] + cols > slabs[-1][0].shape[1]:
            size = max(self.slab, cols)
            self.bytes += n * size * width * hidden.element_size()
            if self.bytes > RECORD_BYTES:
                self._drop()
                return
            with torch.inference_mode(False):  # an ordinary tensor, which the update's autograd may save
                slabs.append([hidden.new_empty(n, size, width), 0])
        slab = slabs[-1]
        piece = slab[0][:, slab[1] : slab[1] + cols]
        piece.copy_(hidden)
        slab[1] += cols
        self.pieces[start].append(piece)

    def end_tick(self, active: torch.Tensor | None) -> None:
        """The tick just computed ran the copies ``active`` (None: all of them)."""
        self.active.append(active)
        self.computed += self.batch if active is None else active.numel()

    def _drop(self) -> None:
        """Give the record up (its buffers freed): the update will re-evaluate."""
        self.dropped = True
        self.pieces, self.slabs = {}, {}

    def finish(self, valid: torch.Tensor) -> None:
        """Note which computed columns are valid, ``valid[T, B]`` (one host copy of ``[computed columns]`` bools).
        Ticks past those computed are padding that collection skipped (all invalid)."""
        if self.dropped:
            return
        computed = valid[: len(self.active)]
        per_tick = [v if a is None else v.index_select(0, a) for v, a in zip(computed, self.active, strict=True)]
        flags = torch.cat(per_tick).tolist()
        at = 0
        for sel in per_tick:
            mine = flags[at : at + sel.numel()]
            at += sel.numel()
            self.select.append(None if all(mine) else sel.nonzero().squeeze(1))
            self.columns += sum(mine)

    def take(self, start: int, end: int, cols: int) -> torch.Tensor | None:
        """The last hidden output ``[end - start, cols, H]`` of neurons ``start:end`` at the batch's valid ticks, in a
        re-evaluation's column order (tick-major); None when the record cannot give it (dropped, already taken,
        other columns, or the parameters changed since). The pieces taken are freed."""
        stages = [(a, b) for a, b in self.engine.stages if start <= a and b <= end]
        if (self.dropped or cols != self.columns or sum(b - a for a, b in stages) != end - start
                or any(not self.pieces.get(a) for a, _ in stages) or self._versions() != self.versions
                or self.engine.population.policy is not self.policy):
            return None
        if len(stages) == 1 and len(self.slabs[start]) == 1 and all(sel is None for sel in self.select):
            self.pieces.pop(start)  # one stage, every computed column valid, all in one slab: no copy
            buffer, used = self.slabs.pop(start)[0]
            return buffer[:, :used]
        first = self.pieces[stages[0][0]][0]
        out = first.new_empty(end - start, cols, first.shape[2])
        for a, b in stages:
            ticks = self.pieces.pop(a)
            parts = [h if sel is None else h.index_select(1, sel) for h, sel in zip(ticks, self.select, strict=True)]
            torch.cat(parts, 1, out=out[a - start : b - start])
            del self.slabs[a]
        return out
