"""Seeds as a batch dimension: ``R`` independent runs of one scenario trained in lockstep as one computation.

Each run is built exactly as a lone run (:func:`narla.training.build` with its seed: same initial parameters, same
environment and spike generators). The runs' parameters are then stacked with a leading run axis (row ``r·N + i``
of every stacked parameter is neuron ``i`` of run ``r``), and one :class:`RunEngine` ticks all of them: the
columns of a tick are ``[R, B]`` (run-major: each run's ``B`` environment copies), and every stage's forward pass
is one batched matrix product over ``R·n`` (run, neuron) slices. Nothing is shared between runs:

- parameters: disjoint rows, and Adam is elementwise, so each run's update is its own;
- randomness: run ``r``'s spikes come from its own generator and its environment copies reset from their own
  generator, in the order a lone run draws them (also on the padding ticks a lone run plays before it notices its
  episode ended: collection checks every 16 ticks, :func:`narla.rollout.collect`);
- returns are normalized per run and neuron; the loss of run ``r`` is divided by its own ``B``;
- each run has its own episode counter, stop rule and results directory (same files as ``narla run``).

A run that stops (solved, out of episodes, or a non-finite loss) is dropped from the batch: its parameter rows, its
optimizer state, its environment copies and its generators are sliced away, so it costs nothing afterwards.
On CPU a run trained this way equals the same seed trained alone, bit for bit (``tests/test_runs.py``). Random
numbers are drawn a block of ticks at a time, one call per run (CPU ``torch.rand`` is one contiguous stream, so the
block holds the numbers the lone run draws tick by tick); on CUDA, whose generator is not one stream, a run in a batch
draws different (equally random) numbers than alone.

A batch can be paused and resumed (``checkpoint=PATH``): every ``checkpoint_every_s`` seconds, and when the time cap
``max_wall_s`` is reached, the batch's state (stacked parameters, Adam state, every run's generators, the history)
is written to ``PATH`` between episodes. A time cap then pauses the runs still going (``summary.json`` status
``paused``) instead of ending them, and the next trainer given the same seeds and ``PATH`` continues them exactly
where they were: a paused and resumed batch equals the uninterrupted one, bit for bit on CPU.

Supported: ``learning.rule: reinforce``, spiking neurons of the stage-wise population without universal context,
torch-native tasks (``cartpole``, ``swingup``). :func:`batchable` says why a scenario is not; ``narla sweep`` then
runs its seeds one by one.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from narla.checkpoint import truncate_csv
from narla.engine import Engine
from narla.imports import recorded
from narla.learning import Reinforce
from narla.learning.returns import discounted_returns, normalize_per_neuron
from narla.neurons import Population
from narla.results import atomic_write, write_index
from narla.rollout import Rollout, collect
from narla.scenario import Scenario, ScenarioError, dump, from_dict
from narla.tasks.physics import PhysicsTask
from narla.training import Run, _best_window_mean, build, episode_rows, host_rows, solve_check

SYNC_EVERY = 16  # ticks between collection's checks (narla.rollout.collect's default), the draws' block size


def batchable(scenario: Scenario) -> str | None:
    """``None`` if the scenario's seeds can train as one batch, else the reason they cannot."""
    if scenario.learning.rule != "reinforce":
        return f"learning.rule is {scenario.learning.rule!r} (batched runs support 'reinforce')"
    ctx = scenario.context
    if ctx.universal_position or ctx.universal_action:
        return "universal context is set (batched runs support graph context only)"
    if scenario.neuron.output != "spike":
        return "neuron.output is not 'spike' (batched runs support spiking neurons)"
    if scenario.network.get("builder") in ("attention_neuron", "cooperator"):
        return "network.builder is a whole-network population (batched runs support stage-wise populations)"
    if scenario.task.id not in ("cartpole", "swingup"):
        return f"task.id {scenario.task.id!r} is not a torch-native task (cartpole, swingup)"
    if "tensorboard" in scenario.training.log:
        return "training.log includes tensorboard (batched runs write CSV only)"
    if scenario.learning.chunk_ticks is not None:
        return "learning.chunk_ticks is set (batched runs re-evaluate each run's ticks at once)"
    if scenario.training.analyze_every is not None:
        return "training.analyze_every is set (batched runs log per layer only)"
    if scenario.training.log_neurons:
        return "training.log_neurons is set (batched runs log per layer only)"
    if scenario.training.max_env_steps is not None:
        return "training.max_env_steps is set (batched runs stop by episodes, solve rule or wall time)"
    if scenario.training.checkpoint_every is not None:
        return ("training.checkpoint_every is set (batched runs checkpoint the whole batch by wall time instead, "
                "narla.runs.RunsTrainer(checkpoint=...))")
    return None


class RunEngine(Engine):
    """The engine over ``R`` stacked runs: columns ``[outer, R, B]`` (a tick: ``outer = 1``; a rollout: ``T``).

    ``population`` is a stacked :class:`Population` whose ``slots`` map the *virtual* neuron order (stage by
    stage, run by run) to the rows ``r·N + i``; ``generators[r]`` draws run ``r``'s spikes.
    """

    def __init__(self, runs: list[Run], envs_per_run: int, max_ticks: int) -> None:
        first = runs[0]
        self.lone_population = first.engine.population
        population = stack_populations([r.engine.population for r in runs])
        super().__init__(first.wiring, population, first.engine.readout, first.engine.propagation, None)
        self.envs_per_run = envs_per_run
        self.generators = [r.generator for r in runs]
        self.drawing = [True] * len(runs)
        self.ticks = [0] * len(runs)  # ticks drawn by each run in the current episode (a lone run's T)
        self._view = len(runs)  # how many runs the columns of the next forward pass hold
        self._tick_population = copy.deepcopy(population)  # parameters laid out in virtual order, for ticks
        self._tick_runs: list[int] | None = None  # the runs whose copies the ticks compute (None: all)
        self._compacted_from: torch.Tensor | None = None  # the active columns _tick_runs was read from
        self._ticking = False
        self._evaluating_run = False  # evaluate_run: the lone population holds one run's parameter views
        self.max_ticks = max_ticks  # an episode's tick limit (collection stops there, mid-block)
        self._tick = 0  # ticks played in the current episode
        self._row = 0  # first neuron row of the next stage's draw within the tick
        self._block: torch.Tensor | None = None  # [k, R, N, B] this block's uniforms (see _draw_block)
        self._set_slots()

    @property
    def compactable(self) -> bool:
        """Yes, by whole runs (:meth:`live_columns`): a run whose copies have all ended leaves the ticks."""
        return self.clamp is None and not self.common_noise

    def live_columns(self, alive: torch.Tensor) -> torch.Tensor:
        """Every column of each run that still has a running copy (a tick computes whole runs)."""
        b = self.envs_per_run
        return alive.view(-1, b).any(1).repeat_interleave(b).nonzero().squeeze(1)

    def _tick_view(self, runs: list[int] | None) -> None:
        """Lay the tick parameters out for ``runs`` only (all runs when None): the columns of the next ticks hold
        just their copies. The layout is kept until the runs change (:meth:`start_episode` restores all)."""
        if runs == self._tick_runs:
            return
        rows = self._rows(list(range(self.num_runs)) if runs is None else runs)
        with torch.no_grad():
            live = dict(self.population.named_parameters())
            for name, p in self._tick_population.named_parameters():
                p.data = live[name].detach().index_select(0, rows)
        self._tick_runs = runs

    @property
    def num_runs(self) -> int:
        return len(self.generators)

    def _set_slots(self) -> None:
        """Lay every run out in virtual order (:meth:`_rows`) for a forward pass over all runs' columns."""
        self.population.slots = self._rows(list(range(self.num_runs)))
        self._view = self.num_runs

    def _rows(self, runs: list[int]) -> torch.Tensor:
        """Parameter rows in virtual order for ``runs``: virtual neuron ``R·a + k·(b − a) + j`` of stage ``[a, b)``
        is row ``runs[k]·N + a + j``."""
        n = self.num_neurons
        rows = [run * n + a + j for a, b in self.stages for run in runs for j in range(b - a)]
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def run_parameters_views(self) -> list[dict[str, torch.Tensor]]:
        """Each run's parameters, ``{name: [N, ...]}``, as views of the stacked ones made by one ``unbind`` per
        parameter. A run re-evaluated on them reads its rows the way a lone run reads its own parameters (slices
        of an ``[N, ...]`` tensor), and the backward pass writes each run's gradient once; gathering the run's rows
        from the stack instead writes a gradient the size of the whole stack for every use (every stage and layer of
        every run)."""
        r = self.num_runs
        views: list[dict[str, torch.Tensor]] = [{} for _ in range(r)]
        for name, p in self.population.named_parameters():
            for k, v in enumerate(p.view(r, p.shape[0] // r, *p.shape[1:]).unbind(0)):
                views[k][name] = v
        return views

    def evaluate_run(
        self, params: dict[str, torch.Tensor], obs: torch.Tensor, actions: torch.Tensor, first: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`Engine.evaluate` of one run alone, on its entry ``params`` of :meth:`run_parameters_views` and its
        columns only (``obs[T, B, S]``, ``valid[T, B]``): exactly the lone run's computation (same parameter layout
        and column count, so the same matrix kernels), with gradient to the stacked parameters.
        Returns ``log_prob, entropy`` ``[T, B, N]``."""
        self._evaluating_run = True
        try:
            with parameters_replaced(self.lone_population, params):
                logp, entropy, _ = self.evaluate(obs, actions, first, valid=valid)
        finally:
            self._evaluating_run = False
        return logp, entropy

    def evaluation_stages(self, cols: int) -> list[tuple[int, int]]:
        """The lone run's groups for one run's re-evaluation (:meth:`evaluate_run`, the lone run's computation); the
        stages over all runs' columns, whose stacked parameters are laid out stage by stage (:meth:`_rows`)."""
        return super().evaluation_stages(cols) if self._evaluating_run else self.stages

    def start_episode(self) -> None:
        """Every run draws random numbers again (called before each :func:`narla.rollout.collect`).

        Also lays the parameters out in virtual order once for the episode's ticks (they do not change during
        an episode): a stage's rows are then a slice, not a gather on every tick. Same values, same results.
        """
        self.drawing = [True] * self.num_runs
        self.ticks = [0] * self.num_runs
        self._tick = 0
        self._tick_population.slots = None
        self._tick_runs = []  # no layout yet: the next line lays out every run
        self._compacted_from = None
        self._tick_view(None)

    def sync(self, alive: torch.Tensor) -> None:
        """``alive[R·B]`` at a collection check: a run whose copies have all ended stops drawing (a lone run stops)."""
        still = alive.view(self.num_runs, self.envs_per_run).any(1).tolist()
        self.drawing = [d and s for d, s in zip(self.drawing, still, strict=True)]

    def _to_runs(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, F, outer·R·B]`` -> ``[R·n, F, outer·B]`` (run-major rows, each run's columns in lone order)."""
        n, f, cols = x.shape
        r, b = self._view, self.envs_per_run
        if r == 1:  # one run: its columns as they are (also the valid-filtered columns of evaluate_run)
            return x
        outer = cols // (r * b)
        return x.view(n, f, outer, r, b).permute(3, 0, 1, 2, 4).reshape(r * n, f, outer * b)

    def _from_runs(self, y: torch.Tensor) -> torch.Tensor:
        rn, d, cols = y.shape
        r, b = self._view, self.envs_per_run
        if r == 1:
            return y
        n, outer = rn // r, cols // b
        return y.view(r, n, d, outer, b).permute(1, 2, 3, 0, 4).reshape(n, d, outer * r * b)

    def _policy(
        self, x: torch.Tensor, c: torch.Tensor, start: int, end: int, prev_action: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self._evaluating_run:  # one run's re-evaluation on its own parameter views (evaluate_run)
            return self.lone_population(x, c, start, end)
        x = self._to_runs(x)
        c = self._to_runs(c) if self._uses_context else x.new_zeros(x.shape[0], 0, x.shape[2])
        r = self._view
        population = self._tick_population if self._ticking else self.population
        return self._from_runs(population(x, c, r * start, r * end))

    def _draw_block(self) -> None:
        """The uniforms of the next ``k`` ticks (up to the next collection check, at most 16), one call per run.

        A lone run draws ``rand(n, B)`` per stage per tick from its generator, and CPU ``torch.rand`` is one
        contiguous stream (``rand(a)`` then ``rand(b)`` equals ``rand(a + b)`` split), so run ``r``'s block
        ``rand(k·N·B)`` holds exactly the numbers it would draw over those ticks, stage by stage. Runs that stopped
        drawing get zeros, as lone runs that stopped would draw nothing.
        """
        k = min(SYNC_EVERY - self._tick % SYNC_EVERY, self.max_ticks - self._tick)
        n, b = self.num_neurons, self.envs_per_run
        size = k * n * b
        parts = [
            torch.rand(size, generator=g, device=self.device) if draw else torch.zeros(size, device=self.device)
            for g, draw in zip(self.generators, self.drawing, strict=True)
        ]
        self._block = torch.stack(parts).view(len(parts), k, n, b).transpose(0, 1)  # [k, R, N, B]

    def _sample(self, logits: torch.Tensor, motor: torch.Tensor) -> torch.Tensor:
        """Bernoulli spikes ``[n, R·B]``; run ``r``'s uniforms from its own generator (zeros once it stops drawing)."""
        n, d, _ = logits.shape
        if d != 1:
            raise ValueError("batched runs support binary neurons only (a 'choice' readout of a 2-action task)")
        u = self._block[self._tick % SYNC_EVERY, :, self._row : self._row + n]  # [R, n, B]
        if self._tick_runs is not None:
            u = u[self._tick_runs]  # the runs this tick computes
        self._row += n
        return (u.permute(1, 0, 2).reshape(n, -1) < torch.sigmoid(logits[:, 0])).long()

    def tick(self, obs: torch.Tensor, prev: torch.Tensor, prev_action: torch.Tensor | None = None):
        self.ticks = [t + d for t, d in zip(self.ticks, self.drawing, strict=True)]
        if self._tick % SYNC_EVERY == 0:
            self._draw_block()
        self._row = 0
        self._ticking = True
        if self.columns is not None:  # a compacted tick: whole runs (live_columns)
            active = self.columns[1]
            if active is not self._compacted_from:  # a new compaction: one host read, then none per tick
                self._compacted_from = active
                self._tick_view(active[:: self.envs_per_run].div(self.envs_per_run).tolist())
            self._view = len(self._tick_runs)
        try:
            return super().tick(obs, prev, prev_action)
        finally:
            self._ticking = False
            self._tick += 1
            self._view = self.num_runs

    def run_parameters(self, run: int) -> dict[str, torch.Tensor]:
        """Run ``run``'s (active index) parameters in a lone population's shapes."""
        n = self.num_neurons
        return {name: p.detach()[run * n : (run + 1) * n].clone() for name, p in self.population.named_parameters()}

    def state(self) -> dict:
        """The stacked parameters and every run's sampling generator (for a batch checkpoint)."""
        return {"population": {k: v.detach().clone() for k, v in self.population.state_dict().items()},
                "generators": [g.get_state() for g in self.generators]}

    def load_state(self, state: dict) -> None:
        """Inverse of :meth:`state` (the batch must already hold the same runs)."""
        with torch.no_grad():
            for name, p in self.population.named_parameters():
                saved = state["population"][name]
                if saved.shape != p.shape:
                    raise ValueError(f"checkpoint parameter {name!r} has shape {list(saved.shape)}, "
                                     f"the batch {list(p.shape)}")
                p.copy_(saved)
        for g, s in zip(self.generators, state["generators"], strict=True):
            g.set_state(s)

    def keep_runs(self, keep: list[int], optimizer: torch.optim.Optimizer) -> None:
        """Drop every run not in ``keep`` (active indices): parameter rows, optimizer state and generators."""
        n = self.num_neurons
        index = torch.tensor([r * n + i for r in keep for i in range(n)], dtype=torch.long, device=self.device)
        with torch.no_grad():
            for p in self.population.parameters():
                state = optimizer.state.get(p)
                p.data = p.data.index_select(0, index)
                if state:
                    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                        if key in state:
                            state[key] = state[key].index_select(0, index)
        self.generators = [self.generators[r] for r in keep]
        self.drawing = [self.drawing[r] for r in keep]
        self.ticks = [self.ticks[r] for r in keep]
        self._set_slots()


@contextmanager
def parameters_replaced(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """Within the block, ``module``'s parameters named in ``tensors`` (``named_parameters`` names) are those tensors
    (views with their own autograd history), as ``torch.func.functional_call`` would make them for one call, but
    once for a whole re-evaluation: a run's update then pays one swap, not one per stage and layer."""
    saved = []
    try:
        for name, tensor in tensors.items():
            owner, _, leaf = name.rpartition(".")
            holder = module.get_submodule(owner)
            saved.append((holder, leaf, holder._parameters[leaf]))
            holder._parameters[leaf] = tensor
        yield
    finally:
        for holder, leaf, parameter in reversed(saved):
            holder._parameters[leaf] = parameter


def stack_populations(populations: list[Population]) -> Population:
    """One population whose every parameter is the runs' parameters concatenated along dim 0 (``[R·N, ...]``)."""
    first = populations[0]
    if first.slots is not None or first.rate is not None:
        raise ValueError("batched runs do not support tied neurons or rate neurons")
    stacked = copy.deepcopy(first)
    params = [dict(p.named_parameters()) for p in populations]
    with torch.no_grad():
        for name, p in stacked.named_parameters():
            p.data = torch.cat([ps[name].detach() for ps in params])
    return stacked


class RunTask:
    """The runs' environment copies as one task of ``R·B`` copies; run ``r``'s resets draw from its own generator."""

    def __init__(self, tasks: list[PhysicsTask]) -> None:
        for t in tasks:
            if not isinstance(t, PhysicsTask):
                raise ValueError(f"batched runs need torch-native tasks, got {type(t).__name__}")
        self.tasks = tasks
        self.drawing = [True] * len(tasks)
        self._draws = 0  # start-state draws in this episode: the reset's, then one per step
        self._block: torch.Tensor | None = None
        self.inner = copy.copy(tasks[0])
        self.inner._sample_start = self._sample_start  # the physics stays the task's own; only the draws change
        self._resize()

    def _resize(self) -> None:
        inner, b = self.inner, self.tasks[0].num_envs
        inner.num_envs = b * len(self.tasks)
        inner.state = torch.zeros(inner.num_envs, inner.state_dim, dtype=torch.float64, device=inner.device)
        inner.elapsed = torch.zeros(inner.num_envs, dtype=torch.int64, device=inner.device)

    def start_episode(self) -> None:
        """A new episode: its reset draws next (called before each :func:`narla.rollout.collect`)."""
        self.drawing = [True] * len(self.tasks)
        self._draws = 0

    def _sample_start(self) -> torch.Tensor:
        """``[R·B, state_dim]``: the reset's draw, then the per-step draws of the auto-reset, drawn a block of up to
        ``SYNC_EVERY`` steps at a time (:meth:`PhysicsTask.sample_starts`: the same numbers as step by step)."""
        first = self.tasks[0]
        step = self._draws - 1  # -1: the reset
        self._draws += 1
        if step < 0 or step % SYNC_EVERY == 0:
            k = 1 if step < 0 else min(SYNC_EVERY, first.max_episode_steps - step)
            parts = [t.sample_starts(k) if draw else
                     torch.zeros(k, t.num_envs, t.state_dim, dtype=torch.float64, device=t.device)
                     for t, draw in zip(self.tasks, self.drawing, strict=True)]
            self._block = torch.cat(parts, 1)  # [k, R·B, state_dim]
        return self._block[0 if step < 0 else step % SYNC_EVERY]

    def generator_states(self) -> list[torch.Tensor]:
        return [t.generator.get_state() for t in self.tasks]

    def load_generator_states(self, states: list[torch.Tensor]) -> None:
        for t, s in zip(self.tasks, states, strict=True):
            t.generator.set_state(s)

    def keep_runs(self, keep: list[int]) -> None:
        self.tasks = [self.tasks[r] for r in keep]
        self.drawing = [self.drawing[r] for r in keep]
        self._resize()


class RunReinforce(Reinforce):
    """:class:`Reinforce` over stacked runs: returns normalized per run and neuron, each run's loss divided by its B.

    ``exact`` (default): each run's rollout is re-evaluated on its own ticks only, as a lone run does (the matrix
    kernels then see the same shapes, so the update is bit for bit the lone run's); otherwise all runs are
    re-evaluated in one pass over the padded ticks (faster updates, equal up to float rounding).
    """

    def __init__(self, engine: RunEngine, cfg, exact: bool = True) -> None:
        super().__init__(engine, cfg.lr, cfg.gamma, cfg.normalize_returns, cfg.entropy_coef, cfg.max_grad_norm)
        self.exact = exact
        self.run_losses = torch.zeros(0)

    def _columns(self, run: int) -> slice:
        b = self.engine.envs_per_run
        return slice(run * b, (run + 1) * b)

    def advantages(self, rollout: Rollout) -> torch.Tensor:
        """``[T, R·B, N]``; run ``r`` normalized over its own ticks (the ``T_r`` ticks a lone run would have played)."""
        engine: RunEngine = self.engine
        returns = discounted_returns(rollout.rewards, rollout.done, self.gamma)
        if not self.normalize_returns:
            return returns * rollout.valid.float().unsqueeze(-1)
        adv = torch.zeros_like(returns)
        for r, t in enumerate(engine.ticks):
            cols = self._columns(r)
            adv[:t, cols] = normalize_per_neuron(returns[:t, cols].contiguous(), rollout.valid[:t, cols].contiguous())
        return adv

    def loss(self, rollout: Rollout) -> torch.Tensor:
        engine: RunEngine = self.engine
        adv = self.advantages(rollout)
        b = engine.envs_per_run
        coef = self.entropy_coef
        if not self.exact:
            logp, entropy, _ = engine.evaluate(rollout.obs, rollout.actions, rollout.first)
            mask = rollout.valid.float().unsqueeze(-1)
            per_column = -(logp * adv).detach().sum((0, 2)) - coef * (entropy * mask).detach().sum((0, 2))
            self.run_losses = per_column.view(engine.num_runs, b).sum(1) / b
            return -(logp * adv).sum() / b - coef * (entropy * mask).sum() / b
        total, losses = None, []
        views = engine.run_parameters_views()
        for r, t in enumerate(engine.ticks):
            cols = self._columns(r)
            valid = rollout.valid[:t, cols]
            logp, entropy = engine.evaluate_run(
                views[r], rollout.obs[:t, cols], rollout.actions[:t, cols], rollout.first[:t, cols], valid
            )
            mask = valid.float().unsqueeze(-1)
            loss = -(logp * adv[:t, cols]).sum() / b - coef * (entropy * mask).sum() / b
            losses.append(loss.detach())
            total = loss if total is None else total + loss
        self.run_losses = torch.stack(losses)
        return total


class RunsTrainer:
    """Trains the scenarios ``scenarios[r]`` (equal but for ``seed``) as one batch; one results directory each.

    ``max_wall_s``: stop every run still going after this many seconds of this call (status ``time_cap``), or,
    with a ``checkpoint`` path, pause them there (status ``paused``) so that a later trainer resumes them.
    ``checkpoint``: the batch's checkpoint file, written every ``checkpoint_every_s`` seconds and at the cap; if it
    exists and holds these seeds, :meth:`train` continues from it.
    """

    def __init__(
        self, scenarios: list[Scenario], out_dirs: list[str | Path | None] | None = None,
        max_wall_s: float | None = None, progress: bool = False,
        checkpoint: str | Path | None = None, checkpoint_every_s: float = 120.0,
    ) -> None:
        if not scenarios:
            raise ScenarioError("batched runs: no scenario given")
        base = scenarios[0]
        for s in scenarios:
            if replace(s, seed=base.seed) != base:
                raise ScenarioError("batched runs: the scenarios must be equal except for their seed")
        reason = batchable(base)
        if reason:
            raise ScenarioError(f"batched runs: {reason}")
        self.lone = [build(s) for s in scenarios]  # each run built exactly as alone: init, generators, task seed
        self.scenarios = [recorded(s) for s in scenarios]
        self.out_dirs = [Path(d) if d is not None else None for d in (out_dirs or [None] * len(scenarios))]
        self.max_wall_s = max_wall_s if max_wall_s is not None else base.training.max_wall_s
        self.progress = progress
        self.engine = RunEngine(self.lone, base.task.num_envs, self.lone[0].task.max_episode_steps)
        self.task = RunTask([r.task for r in self.lone])
        self.scheme = self.lone[0].scheme
        self.learner = RunReinforce(self.engine, base.learning)
        solve = self.task.inner.solve
        cfg = base.training
        self.solve_window = cfg.solve_window or (solve.window if solve else 100)
        self.solve_threshold = cfg.solve_threshold if cfg.solve_threshold is not None else (
            solve.threshold if solve else None)
        self.returns: list[list[float]] = [[] for _ in scenarios]
        self.solved_at: list[int | None] = [None] * len(scenarios)
        self.summaries: list[dict | None] = [None] * len(scenarios)
        self.final_parameters: list[dict[str, torch.Tensor] | None] = [None] * len(scenarios)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every_s = checkpoint_every_s
        self.active = list(range(len(scenarios)))  # original run indices, in batch order
        self.neuron_steps = [0] * len(scenarios)
        self.episode = 0  # batches played so far, times B (the reward schedule's episode counter)
        self.phase: tuple | None = None
        self.wall_offset = 0.0  # wall time of earlier calls (a resumed batch)
        self.resumed_from: list[int] | None = None

    def train(self) -> list[dict]:
        """Train until every run has stopped or paused; returns each run's summary (also in its ``summary.json``)."""
        base = self.scenarios[0]
        cfg = base.training
        b = base.task.num_envs
        writers: dict[int, tuple] = {}
        if self.checkpoint is not None and self.checkpoint.is_file():
            self._load_checkpoint()
        for r, d in enumerate(self.out_dirs):
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)
                atomic_write(d / "scenario.yaml", dump(self.scenarios[r]))
                write_index(d, self.scenarios[r].name)
                if self.resumed_from is not None:
                    truncate_csv(d / "episodes.csv", len(self.returns[r]))
        windows = [deque(ret[-self.solve_window :], maxlen=self.solve_window) for ret in self.returns]
        start = time.perf_counter()
        saved = start
        try:
            while self.active:
                active = self.active
                terms = self.scheme.active_terms(self.episode)
                if self.phase is not None and terms != self.phase:
                    self.learner.optimizer.state.clear()  # as narla.training.Trainer: a new phase, a fresh Adam
                self.phase = terms
                self.engine.start_episode()
                self.task.start_episode()
                rollout = collect(self.engine, self.task.inner, self.scheme, self.episode, sync_every=SYNC_EVERY,
                                  on_sync=self._sync)
                self.learner.update(rollout)
                stats = episode_rows(rollout, self.engine.wiring)
                stats["run_loss"] = self.learner.run_losses.repeat_interleave(b)  # one host transfer for both
                rows, _ = host_rows(stats, [])
                losses = rows.pop("run_loss")[::b]
                now = time.perf_counter()
                elapsed = self.wall_offset + now - start
                capped = self.max_wall_s is not None and now - start >= self.max_wall_s
                stopped: dict[int, str] = {}
                for pos, r in enumerate(active):
                    loss = losses[pos]
                    if not math.isfinite(loss):
                        stopped[pos] = f"failed: TrainingError: the loss became {loss} at episode {self.episode}"
                        continue
                    self._record(r, pos, b, rows, loss, elapsed, windows[r], writers)
                    if self.solved_at[r] is not None and cfg.stop_when_solved:
                        stopped[pos] = "solved"
                    elif len(self.returns[r]) >= cfg.max_episodes:
                        stopped[pos] = "max_episodes"
                    elif capped and self.checkpoint is None:
                        stopped[pos] = "time_cap"
                self.episode += b
                if self.progress and self.episode % 100 < b:
                    means = [sum(windows[r]) / max(len(windows[r]), 1) for r in active]
                    print(f"episode {self.episode}: {len(active)} runs, window means "
                          + " ".join(f"{m:.0f}" for m in means), flush=True)
                if stopped:
                    for pos, status in stopped.items():
                        self._finish(active[pos], pos, status, elapsed, writers)
                    keep = [pos for pos in range(len(active)) if pos not in stopped]
                    self.active = [active[pos] for pos in keep]
                    if self.active:
                        self.engine.keep_runs(keep, self.learner.optimizer)
                        self.task.keep_runs(keep)
                if self.checkpoint is not None and self.active and (capped or now - saved >= self.checkpoint_every_s):
                    for f, _ in writers.values():
                        f.flush()
                    self._save_checkpoint(elapsed)
                    saved = now
                    if capped:
                        for pos, r in enumerate(self.active):
                            self._finish(r, pos, "paused", elapsed, writers)
                        break
            else:
                if self.checkpoint is not None:
                    self.checkpoint.unlink(missing_ok=True)
        except BaseException as err:
            for pos, r in enumerate(self.active):
                self._finish(r, pos, f"failed: {type(err).__name__}: {err}",
                             self.wall_offset + time.perf_counter() - start, writers)
            raise
        finally:
            for f, _ in writers.values():
                f.close()
        return list(self.summaries)

    def _record(self, r: int, pos: int, b: int, rows: dict, loss: float, elapsed: float, window: deque,
                writers: dict) -> None:
        """Append run ``r``'s episodes of this batch (columns ``pos·B …``) to its history, CSV and stop rule."""
        cfg = self.scenarios[r].training
        for k in range(pos * b, (pos + 1) * b):
            if len(self.returns[r]) >= cfg.max_episodes:
                break
            ret = rows["return"][k]
            self.returns[r].append(ret)
            window.append(ret)
            self.neuron_steps[r] += int(rows["length"][k]) * self.engine.num_neurons
            row = {"episode": len(self.returns[r]), "wall_clock": round(elapsed, 3), "loss": loss}
            row.update({key: rows[key][k] for key in rows})
            self._write_row(r, row, writers)
            if self.solved_at[r] is None and solve_check(
                cfg, self.solve_threshold, window, self.solve_window, len(self.returns[r])
            ):
                self.solved_at[r] = len(self.returns[r])

    def _key(self) -> dict:
        """What a checkpoint must match: the scenario but for its seed and time cap."""
        base = self.scenarios[0]
        return replace(base, seed=0, training=replace(base.training, max_wall_s=None)).to_dict()

    def checkpoint_seeds(self) -> list[int] | None:
        """The seeds held by ``self.checkpoint`` (the runs it pauses), or None without a checkpoint."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return None
        return list(torch.load(self.checkpoint, map_location="cpu", weights_only=False)["seeds"])

    def _save_checkpoint(self, elapsed: float) -> None:
        """Write the batch's state to ``self.checkpoint`` (write-then-rename: never half-written)."""
        active = self.active
        state = {
            "format": 1,
            "seeds": [self.scenarios[r].seed for r in active],
            "scenario": self._key(),
            "episode": self.episode,
            "phase": self.phase,
            "wall_time_s": elapsed,
            "returns": [self.returns[r] for r in active],
            "solved_at": [self.solved_at[r] for r in active],
            "neuron_steps": [self.neuron_steps[r] for r in active],
            "engine": self.engine.state(),
            "task_generators": self.task.generator_states(),
            "optimizer": self.learner.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)

    def _load_checkpoint(self) -> None:
        """Continue from ``self.checkpoint``, which must hold exactly this trainer's seeds (the runs it paused)."""
        state = torch.load(self.checkpoint, map_location=self.engine.device, weights_only=False)
        seeds = [s.seed for s in self.scenarios]
        try:  # the saved scenario as this version reads it: fields added since then take their defaults
            saved = from_dict(state.get("scenario")).to_dict()
        except ScenarioError:
            saved = None
        if state.get("seeds") != seeds or saved != self._key():
            raise ScenarioError(
                f"batch checkpoint {str(self.checkpoint)!r} pauses seeds {state.get('seeds')} of "
                f"{'this' if saved == self._key() else 'another'} scenario, not seeds {seeds} of "
                "this one; delete it to start these runs over"
            )
        self.engine.load_state(state["engine"])
        self.task.load_generator_states(state["task_generators"])
        self.learner.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.episode = state["episode"]
        self.phase = state["phase"]
        self.wall_offset = float(state["wall_time_s"])
        self.returns = [list(r) for r in state["returns"]]
        self.solved_at = list(state["solved_at"])
        self.neuron_steps = list(state["neuron_steps"])
        self.resumed_from = [len(r) for r in self.returns]

    def _sync(self, alive: torch.Tensor) -> None:
        self.engine.sync(alive)
        self.task.drawing = list(self.engine.drawing)

    def _write_row(self, r: int, row: dict, writers: dict) -> None:
        d = self.out_dirs[r]
        if d is None:
            return
        if r not in writers:
            path = d / "episodes.csv"
            append = self.resumed_from is not None and self.resumed_from[r] > 0 and path.is_file()
            f = open(path, "a" if append else "w", newline="")
            w = csv.DictWriter(f, fieldnames=list(row))
            if not append:
                w.writeheader()
            writers[r] = (f, w)
        writers[r][1].writerow(row)

    def _finish(self, r: int, pos: int, status: str, wall: float, writers: dict) -> None:
        """Write run ``r``'s summary and parameters (``pos``: its index in the current batch); ``wall``: the
        batch's wall time so far, over all calls."""
        neuron_steps = self.neuron_steps[r]
        self.final_parameters[r] = self.engine.run_parameters(pos)
        returns = self.returns[r]
        last = returns[-self.solve_window :]
        scenario = self.scenarios[r]
        summary = {
            "name": scenario.name,
            "seed": scenario.seed,
            "status": status,
            "episodes": len(returns),
            "solved_at": self.solved_at[r],
            "solve_window": self.solve_window,
            "solve_threshold": self.solve_threshold,
            "final_mean_return": sum(last) / len(last) if last else None,
            "best_mean_return": _best_window_mean(returns, self.solve_window),
            "wall_time_s": round(wall, 3),  # the batch's, over all calls (a paused batch resumes its clock)
            "total_wall_time_s": round(wall, 3),
            "neuron_steps_per_s": round(neuron_steps / wall, 1) if wall > 0 else None,
            "num_neurons": self.engine.num_neurons,
            "num_envs": scenario.task.num_envs,
            "device": str(self.engine.device),
            "batched_runs": len(self.scenarios),
        }
        self.summaries[r] = summary
        d = self.out_dirs[r]
        if d is None:
            return
        if r in writers:
            writers[r][0].flush()
        atomic_write(d / "summary.json", json.dumps(summary, indent=2) + "\n")
        lone = self.lone[r].engine.population
        with torch.no_grad():
            for name, p in lone.named_parameters():
                p.copy_(self.final_parameters[r][name])
        model = {"scenario": scenario.to_dict(), "population": lone.state_dict()}
        tmp = d / "model.pt.tmp"
        torch.save(model, tmp)
        tmp.replace(d / "model.pt")


def measure_speedup(scenario: Scenario, seeds: list[int], episodes: int) -> dict:
    """Wall time of ``episodes`` episodes for each seed trained alone, one after another, then as one batch.

    The solve rule is off (every run plays exactly ``episodes`` episodes), so both do the same work; the returns
    of every episode are compared as well.
    """
    from narla.training import Trainer

    training = replace(scenario.training, max_episodes=episodes, stop_when_solved=False)
    scenarios = [replace(scenario, seed=s, training=training) for s in seeds]
    start = time.perf_counter()
    alone = []
    for s in scenarios:
        trainer = Trainer(s, progress=False)
        trainer.train()
        alone.append(trainer.returns)
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    batch = RunsTrainer(scenarios)
    batch.train()
    batched = time.perf_counter() - start
    return {
        "scenario": scenario.name,
        "runs": len(seeds),
        "episodes_per_run": episodes,
        "num_neurons": batch.engine.num_neurons,
        "sequential_s": round(sequential, 2),
        "batched_s": round(batched, 2),
        "speedup": round(sequential / batched, 2),
        "same_returns": alone == batch.returns,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m narla.runs SCENARIO --seeds 0-9 --episodes 100``: measure the batched-seeds speed-up."""
    from narla import scenario as scenarios
    from narla.sweep import parse_seeds

    parser = argparse.ArgumentParser(prog="python -m narla.runs", description=main.__doc__)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure_speedup(scenarios.load(args.scenario), parse_seeds(args.seeds), args.episodes)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
