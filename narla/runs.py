"""Seeds as a batch dimension: ``R`` independent runs of one scenario, each on its own episode clock, acting as one
computation.

Each run is built exactly as a lone run (:func:`narla.training.build` with its seed: same initial parameters,
environment and spike generators, its own :class:`~narla.learning.Reinforce` and Adam). What the runs share is the
acting: one :class:`RunEngine` ticks every run's environment copies at once (columns ``[R, B]``, run-major), every
stage's forward pass one batched matrix product over the ``R·n`` (run, neuron) slices of a stacked copy of the runs'
parameters.

The runs are **asynchronous**: a run whose episode ends learns from it at once (its own learner, on its own
parameters: the lone run's update, computation for computation) and starts its next episode on the next tick,
while the others play on. A batch therefore costs about the ticks of its longest run, not the sum over episodes of
the slowest run's episode. Nothing is shared between runs:

- parameters: each run keeps its own (the lone population); the stacked copy the ticks read is refreshed from a
  run's rows after each of its updates;
- randomness: run ``r``'s spikes come from its own generator and its environment copies start from their own
  generator, drawn on its own tick clock (a block of up to 16 ticks at a time, as a lone run's collection checks
  every 16 ticks, :func:`narla.rollout.collect`, padding ticks included);
- rewards: a phased scheme applies to each run the phase of its own episode count (``NetworkState.terms_mask``);
- each run has its own episode counter, stop rule and results directory (same files as ``narla run``).

A run that stops (solved, out of episodes, or a non-finite loss) leaves the batch at once: its columns, its rows
of the stacked parameters and its generators are dropped, so it costs nothing afterwards. On CPU a run trained
this way equals the same seed trained alone, bit for bit (``tests/test_runs.py``): CPU ``torch.rand`` is one
contiguous stream, so a block drawn at once holds the numbers the lone run draws tick by tick. On CUDA, whose
generator is not one stream, a run in a batch draws different (equally random) numbers than alone.

A batch can be paused and resumed (``checkpoint=PATH``): every ``checkpoint_every_s`` seconds, and when the time cap
``max_wall_s`` is reached, the runs drain (a run whose episode ends waits instead of starting the next) and, once
every run is between episodes, the batch's state (each run's parameters, Adam state, generators and history) is
written to ``PATH``. A time cap then pauses the runs still going (``summary.json`` status ``paused``) instead of
ending them, and the next trainer given the same seeds and ``PATH`` continues them exactly where they were: a paused
and resumed batch equals the uninterrupted one, bit for bit on CPU.

Supported: ``learning.rule: reinforce``, spiking neurons of the stage-wise population without universal context,
torch-native tasks (``cartpole``, ``swingup``). :func:`batchable` says why a scenario is not; ``narla sweep`` then
runs its seeds one by one.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import torch

from narla.checkpoint import truncate_csv
from narla.engine import Engine
from narla.imports import recorded
from narla.memory import check_record
from narla.neurons import Population
from narla.results import atomic_write, machine, write_index
from narla.rewards.registry import RewardError, is_builtin_reward
from narla.rollout import Carry, Rollout, finish_tick, start_carry
from narla.scenario import Scenario, ScenarioError, dump, from_dict, reward_terms
from narla.tasks.physics import PhysicsTask
from narla.training import (
    Run,
    TrainingError,
    _best_window_mean,
    build,
    check_loss,
    episode_rows,
    host_rows,
    solve_check,
)

SYNC_EVERY = 16  # ticks between a lone collection's checks (narla.rollout.collect's default), the draws' block size
CHECKPOINT_FORMAT = 2  # 2: one entry per run, written between episodes (1: the lockstep batches of earlier versions)


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
    if scenario.task.options.get("normalize_obs"):
        return "task.options.normalize_obs is set (batched runs step the physics of each run's copies directly)"
    for i, spec in enumerate(reward_terms(scenario.rewards)):
        name = spec.get("name") if isinstance(spec, dict) else spec
        if not isinstance(name, str) or not is_builtin_reward(name):
            return (f"rewards.terms[{i}] {name!r} is not one of narla's own rewards (a batch plays its runs at "
                    "different episodes and cannot give a custom reward the lone run's state.episode)")
    if scenario.training.test_every is not None:
        return "training.test_every is set (batched runs write no test episodes)"
    if "tensorboard" in scenario.training.log:
        return "training.log includes tensorboard (batched runs write CSV only)"
    for key in ("chunk_ticks", "chunk_columns"):
        if getattr(scenario.learning, key) is not None:
            return f"learning.{key} is set (batched runs re-evaluate each run's ticks at once)"
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
    """The acting engine over ``R`` runs: columns ``[R, B]`` (run-major), each run on its own tick clock.

    ``population`` holds the runs' parameters stacked in *virtual order*, stage by stage and run by run (virtual
    neuron ``R·a + k·(b − a) + j`` of stage ``[a, b)`` is neuron ``a + j`` of run ``k``), so a stage's rows over all
    runs are one slice. ``lone[k]`` is run ``k``'s own population (what it learns on, :meth:`refresh` copies it in);
    ``ticks[k]`` counts the ticks of its current episode, on which clock its spikes are drawn from ``generators[k]``.
    Feedforward Bernoulli neurons take :class:`~narla.engine.Engine`'s short stage path in the runs' layout
    (:meth:`_tick_uniforms`, :meth:`_bernoulli_stage`), others the general one (:meth:`_policy`, :meth:`_sample`).
    """

    def __init__(self, runs: list[Run], envs_per_run: int, max_ticks: int) -> None:
        first = runs[0]
        self.lone: list[Population] = [r.engine.population for r in runs]
        super().__init__(first.wiring, stack_populations(self.lone), first.engine.readout, first.engine.propagation,
                         None)
        self.envs_per_run = envs_per_run
        self.max_ticks = max_ticks  # an episode's tick limit (a lone collection stops there, mid-block)
        self.generators = [r.generator for r in runs]
        self.ticks = [0] * len(runs)
        self.drawing = [True] * len(runs)  # False: the run waits between episodes (it draws nothing, its clock stops)
        self._block = torch.zeros(len(runs), SYNC_EVERY, self.num_neurons, envs_per_run, device=self.device)
        self._u: torch.Tensor | None = None  # [N, R·B] this tick's uniforms
        self._row = 0  # first neuron row of the next stage's draw within the tick
        self._slots_cache: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        self._lay_out()

    @property
    def num_runs(self) -> int:
        return len(self.lone)

    @property
    def capturable(self) -> bool:
        """False: each run draws its uniforms from its own generator on its own clock (:meth:`_draw`), which a
        :class:`~narla.capture.GraphTick` (drawing from the engine's generator) would not follow."""
        return False

    def _tick_uniforms(self, cols: int) -> torch.Tensor:
        """The short stage path's uniforms: this tick's ``[N, R·B]``, each run's from its generator (:meth:`_draw`)."""
        return self._u

    def _bernoulli_stage(
        self, act: torch.Tensor, prev: torch.Tensor, u: torch.Tensor, start: int, end: int
    ) -> None:
        """:meth:`Engine._bernoulli_stage` in the runs' layout: the stage's inputs are gathered straight into its
        run-major rows ``[R·n, F, B]`` (one index into the activity), their firing logits are one product over those
        rows (:meth:`Engine._firing_logits`), and each run's spikes are drawn against its own uniforms ``u`` and written
        into its columns of ``act``. The same numbers as gathering, computing and drawing column by column."""
        r, n, b = self.num_runs, end - start, self.envs_per_run
        index, mask = self._run_major_slots(start, end)
        x = self._feedforward_source(act, prev).reshape(-1).index_select(0, index).view(r * n, -1, b)
        x = x if mask is None else x.mul_(mask)  # index_select's own new tensor
        z = self._firing_logits(x, r * start, r * end).view(r, n, b)
        draw = u[start:end].view(n, r, b).transpose(0, 1)  # [R, n, B]
        spikes = act[self.num_sensors + start : self.num_sensors + end].view(n, r, b)
        spikes.copy_((draw < torch.sigmoid(z)).transpose(0, 1))

    def _run_major_slots(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Where the stage ``start:end``'s inputs lie in the flattened activity ``[S + N, R·B]``, in run-major order
        ``[R, n, F, B]`` (flattened), and its padding mask ``[R·n, F, 1]`` (None: no padding); cached per batch
        width."""
        r, b = self.num_runs, self.envs_per_run
        ff_idx, ff_mask = self._slices[(start, end)][:2]
        cached = self._slots_cache.get((start, end, r))
        if cached is None or cached[0] is not ff_idx:  # new, or the stage's slots changed (Engine.trim_padding)
            cols = torch.arange(r * b, device=self.device).view(r, 1, 1, b)
            index = (ff_idx.unsqueeze(0).unsqueeze(-1) * (r * b) + cols).reshape(-1)
            mask = None if self._gathers[(start, end)][3] is None else ff_mask.repeat(r, 1, 1)
            cached = self._slots_cache[(start, end, r)] = (ff_idx, index, mask)
        return cached[1], cached[2]

    def _lay_out(self) -> None:
        """Stack every run's parameters in virtual order (after the batch's runs changed)."""
        r, n = self.num_runs, self.num_neurons
        order = [run * n + a + j for a, b in self.stages for run in range(r) for j in range(b - a)]
        index = torch.tensor(order, dtype=torch.long, device=self.device)
        lone = [dict(p.named_parameters()) for p in self.lone]
        with torch.no_grad():
            for name, p in self.population.named_parameters():
                p.data = torch.cat([ps[name].detach() for ps in lone]).index_select(0, index)
        # run k's rows in ascending virtual order hold its neurons 0 … N − 1 in order
        self._positions = [(index.div(n, rounding_mode="floor") == k).nonzero().squeeze(1) for k in range(r)]

    def refresh(self, run: int) -> None:
        """Copy run ``run``'s own parameters (after its update) into the stacked ones the ticks read."""
        lone = dict(self.lone[run].named_parameters())
        with torch.no_grad():
            for name, p in self.population.named_parameters():
                p.index_copy_(0, self._positions[run], lone[name].detach())

    def start_episode(self, run: int) -> None:
        """Run ``run`` starts an episode: its clock restarts and it draws again."""
        self.ticks[run] = 0
        self.drawing[run] = True

    def _to_runs(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, F, R·B]`` -> ``[R·n, F, B]`` (run-major rows, each run's columns in lone order)."""
        n, f, _ = x.shape
        r, b = self.num_runs, self.envs_per_run
        if r == 1:
            return x
        return x.view(n, f, r, b).permute(2, 0, 1, 3).reshape(r * n, f, b)

    def _from_runs(self, y: torch.Tensor) -> torch.Tensor:
        rn, d, _ = y.shape
        r, b = self.num_runs, self.envs_per_run
        if r == 1:
            return y
        return y.view(r, rn // r, d, b).permute(1, 2, 0, 3).reshape(rn // r, d, r * b)

    def _policy(
        self, x: torch.Tensor, c: torch.Tensor, start: int, end: int, prev_action: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self._to_runs(x)
        c = self._to_runs(c) if self._uses_context else x.new_zeros(x.shape[0], 0, x.shape[2])
        r = self.num_runs
        return self._from_runs(self.population(x, c, r * start, r * end))

    def _draw(self) -> None:
        """This tick's uniforms ``[N, R·B]``, each run's from the block it drew at the start of its current 16 ticks.

        A lone run draws ``rand(n, B)`` per stage per tick, and CPU ``torch.rand`` is one contiguous stream
        (``rand(a)`` then ``rand(b)`` equals ``rand(a + b)`` split), so a block ``rand(k·N·B)`` holds exactly the
        numbers the lone run draws over those ``k`` ticks, stage by stage."""
        n, b = self.num_neurons, self.envs_per_run
        for k, (t, g) in enumerate(zip(self.ticks, self.generators, strict=True)):
            if self.drawing[k] and t % SYNC_EVERY == 0:
                size = min(SYNC_EVERY, self.max_ticks - t)
                self._block[k, :size] = torch.rand(size * n * b, generator=g, device=self.device).view(size, n, b)
        rows = torch.tensor([k * SYNC_EVERY + t % SYNC_EVERY for k, t in enumerate(self.ticks)], device=self.device)
        u = self._block.view(-1, n, b).index_select(0, rows)  # [R, N, B]
        self._u = u.transpose(0, 1).reshape(n, -1)  # [N, R·B]: a stage's rows are a slice

    def _sample(self, logits: torch.Tensor, motor: torch.Tensor) -> torch.Tensor:
        """Bernoulli spikes ``[n, R·B]``; run ``r``'s uniforms from its own generator."""
        n, d, _ = logits.shape
        if d != 1:
            raise ValueError("batched runs support binary neurons only (a 'choice' readout of a 2-action task)")
        u = self._u[self._row : self._row + n]  # [n, R·B]
        self._row += n
        return (u < torch.sigmoid(logits[:, 0])).long()

    def tick(self, obs: torch.Tensor, prev: torch.Tensor, prev_action: torch.Tensor | None = None):
        self._draw()
        self._row = 0
        act, actions = super().tick(obs, prev, prev_action)
        self.ticks = [t + d for t, d in zip(self.ticks, self.drawing, strict=True)]
        return act, actions

    def keep_runs(self, keep: list[int]) -> None:
        """Drop every run not in ``keep`` (batch positions): its generators and its rows of the stacked parameters."""
        self.lone = [self.lone[k] for k in keep]
        self.generators = [self.generators[k] for k in keep]
        self.ticks = [self.ticks[k] for k in keep]
        self.drawing = [self.drawing[k] for k in keep]
        self._block = self._block[torch.tensor(keep, dtype=torch.long, device=self.device)]
        self._lay_out()


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
    """The runs' environment copies as one task of ``R·B`` copies, each run on its own step clock.

    Run ``r``'s copies start from its own generator's draws (its reset's, then one per step for the same-step
    auto-reset), drawn a block of up to 16 steps at a time (:meth:`PhysicsTask.sample_starts`: the numbers the lone
    run draws step by step). The physics is the task's own, stepping all copies at once.
    """

    def __init__(self, tasks: list[PhysicsTask]) -> None:
        for t in tasks:
            if not isinstance(t, PhysicsTask):
                raise ValueError(f"batched runs need torch-native tasks, got {type(t).__name__}")
        self.tasks = tasks
        self.steps = [0] * len(tasks)
        self.drawing = [True] * len(tasks)
        first = tasks[0]
        self.envs_per_run = first.num_envs
        self.inner = copy.copy(first)
        self.inner._sample_start = self._sample_start  # the physics stays the task's own; only the draws change
        self.inner.num_envs = first.num_envs * len(tasks)
        self.inner.state = torch.zeros(self.inner.num_envs, first.state_dim, dtype=torch.float64, device=first.device)
        self.inner.elapsed = torch.zeros(self.inner.num_envs, dtype=torch.int64, device=first.device)
        self._block = torch.zeros(len(tasks), SYNC_EVERY, first.num_envs, first.state_dim, dtype=torch.float64,
                                  device=first.device)

    def start_episode(self, run: int) -> None:
        """Run ``run``'s copies start an episode from its reset's draw (the rest play on)."""
        b = self.envs_per_run
        self.inner.state[run * b : (run + 1) * b] = self.tasks[run].sample_starts(1)[0]
        self.inner.elapsed[run * b : (run + 1) * b] = 0
        self.steps[run] = 0
        self.drawing[run] = True

    def _sample_start(self) -> torch.Tensor:
        """``[R·B, state_dim]``: each run's draw for this step of its episode (the task calls it once per step)."""
        limit = self.tasks[0].max_episode_steps
        for k, (t, task) in enumerate(zip(self.steps, self.tasks, strict=True)):
            if self.drawing[k] and t % SYNC_EVERY == 0:
                size = min(SYNC_EVERY, limit - t)
                self._block[k, :size] = task.sample_starts(size)
        rows = torch.tensor([k * SYNC_EVERY + t % SYNC_EVERY for k, t in enumerate(self.steps)],
                            device=self._block.device)
        self.steps = [t + d for t, d in zip(self.steps, self.drawing, strict=True)]
        return self._block.view(-1, *self._block.shape[2:]).index_select(0, rows).view(self.inner.num_envs, -1)

    def keep_runs(self, keep: list[int], columns: torch.Tensor) -> None:
        """Keep the runs ``keep`` (batch positions), whose copies are ``columns``."""
        self.tasks = [self.tasks[k] for k in keep]
        self.steps = [self.steps[k] for k in keep]
        self.drawing = [self.drawing[k] for k in keep]
        index = torch.tensor(keep, dtype=torch.long, device=self._block.device)
        self._block = self._block[index]
        inner = self.inner
        inner.num_envs = self.envs_per_run * len(keep)
        inner.state = inner.state.index_select(0, columns)
        inner.elapsed = inner.elapsed.index_select(0, columns)
        inner._reached = None


class RunsTrainer:
    """Trains the scenarios ``scenarios[r]`` (equal but for ``seed``) as one batch; one results directory each.

    ``max_wall_s``: stop every run still going after this many seconds of this call (status ``time_cap``, each at
    the end of its current episode), or, with a ``checkpoint`` path, pause them there (status ``paused``) so that a
    later trainer resumes them. ``checkpoint``: the batch's checkpoint file, written every ``checkpoint_every_s``
    seconds and at the cap; if it exists and holds some of these seeds, :meth:`train` continues those runs from it
    (the others start from their first episode).
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
        # the per-tick records are allocated whole when training starts (_start_columns): say now if they cannot be
        check_record(self.engine, self.task.inner, copies=len(scenarios) * base.task.num_envs,
                     ticks=self.engine.max_ticks + 1, upfront=True)
        self.scheme = self.lone[0].scheme
        solve = self.task.inner.solve
        cfg = base.training
        self.solve_window = cfg.solve_window or (solve.window if solve else 100)
        self.solve_threshold = cfg.solve_threshold if cfg.solve_threshold is not None else (
            solve.threshold if solve else None)
        self.returns: list[list[float]] = [[] for _ in scenarios]
        self.solved_at: list[int | None] = [None] * len(scenarios)
        self.summaries: list[dict | None] = [None] * len(scenarios)
        self.final_parameters: list[dict[str, torch.Tensor] | None] = [None] * len(scenarios)
        self.phases: list[list[str] | None] = [None] * len(scenarios)  # each run's reward terms (a switch resets Adam)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every_s = checkpoint_every_s
        self.active = list(range(len(scenarios)))  # original run indices, in batch order
        self.neuron_steps = [0] * len(scenarios)
        self.wall_offset = 0.0  # wall time of earlier calls (a resumed batch)
        self.resumed_from: list[int] | None = None
        self.ticks_played = 0  # ticks of the batch in this call (each computes every run still in it)
        # On the CPU, where reading which copies still run costs no device sync, a run's episode ends on the tick its
        # last copy finishes: the lone run's collection skips the rest of its 16-tick block there, and the block's
        # draws are taken already. On a GPU only on the 16-tick clock, so that a tick never waits for the host.
        self.end_every_tick = self.engine.device.type == "cpu"
        self._reported = -1  # hundreds of episodes the slowest run had passed at the last progress line

    # -- the batch's columns: run-major [R·B], each run's B copies together ------------------------------------
    def _start_columns(self) -> None:
        """Every run's copies ready for its first episode of this call; the per-tick records allocated."""
        engine, r, b = self.engine, len(self.active), self.engine.envs_per_run
        n, dev = engine.num_neurons, engine.device
        self.carry: Carry = start_carry(engine, r * b)
        self.alive = torch.ones(r * b, dtype=torch.bool, device=dev)
        self.fresh: torch.Tensor | None = None  # [R·B] bool: the copy's episode starts this tick (None: none does)
        self.sums = {name: torch.zeros(r * b, n, device=dev) for name in self.scheme.names}
        self.terms_mask = (torch.ones(len(self.scheme.terms), r * b, dtype=torch.bool, device=dev)
                           if self.scheme.phases else None)
        t = engine.max_ticks + 1  # a waiting run writes one row past its episode
        self.record = {
            "obs": torch.zeros(r, t, b, self.task.inner.obs_dim, device=dev),
            "actions": torch.zeros(r, t, b, n, dtype=engine.record_dtype or torch.long, device=dev),
            "first": torch.zeros(r, t, b, dtype=torch.bool, device=dev),
            "valid": torch.zeros(r, t, b, dtype=torch.bool, device=dev),
            "done": torch.zeros(r, t, b, dtype=torch.bool, device=dev),
            "task_reward": torch.zeros(r, t, b, device=dev),
            "rewards": torch.zeros(r, t, b, n, device=dev),
        }
        self._record_rows = torch.arange(r, device=dev) * t  # run k's tick i is row k·t + i of a record's [R·t, …]
        for pos in range(r):
            self._start_episode(pos)

    def _start_episode(self, pos: int) -> None:
        """The run at batch position ``pos`` starts its next episode: a fresh carry, its reset's draw, its phase."""
        r = self.active[pos]
        b = self.engine.envs_per_run
        cols = slice(pos * b, (pos + 1) * b)
        terms = self.scheme.active_terms(len(self.returns[r]))
        if self.phases[r] is not None and terms != self.phases[r]:
            self.lone[r].learner.optimizer.state.clear()  # as narla.training.Trainer: a new phase, a fresh Adam
        self.phases[r] = terms
        if self.terms_mask is not None:
            self.terms_mask[:, cols] = torch.tensor([t.label in terms for t in self.scheme.terms],
                                                    device=self.engine.device).unsqueeze(1)
        carry = self.carry
        carry.prev[:, cols] = 0.0
        carry.prev_spikes[cols] = 0.0
        carry.trace[cols] = 0.0
        carry.first[cols] = True
        self.alive[cols] = True
        if self.fresh is None:
            self.fresh = torch.zeros_like(self.alive)
        self.fresh[cols] = True
        self.engine.start_episode(pos)
        self.task.start_episode(pos)
        self.obs = self.task.inner.observe()  # the other copies' observations are those of their current state

    def _tick(self) -> None:
        """One tick of every run's copies; what each run's episode needs is written at its own tick index."""
        engine = self.engine
        r = engine.num_runs
        self.ticks_played += 1
        rows = self._record_rows + torch.tensor(engine.ticks, device=engine.device)  # [R] rows of the records
        obs, carry, alive = self.obs, self.carry, self.alive
        act, actions = engine.tick(obs, carry.prev)
        first = carry.first
        out, self.carry = finish_tick(engine, self.task.inner, self.scheme, carry, act, actions, 0, obs,
                                      terms_mask=self.terms_mask)
        mask = alive.unsqueeze(1).float()
        dtype = engine.record_dtype
        ticks = {
            "obs": obs, "actions": actions.T if dtype is None else actions.T.to(dtype), "first": first,
            "valid": alive, "done": out.done & alive, "task_reward": out.reward * alive, "rewards": out.total * mask,
        }
        for key, value in ticks.items():
            record = self.record[key]
            record.view(-1, *record.shape[2:]).index_copy_(0, rows, value.view(r, *record.shape[2:]))
        fresh = self.fresh.unsqueeze(1) if self.fresh is not None else None
        for name in self.scheme.names:
            part = out.parts[name] * mask
            summed = self.sums[name] + part
            self.sums[name] = summed if fresh is None else torch.where(fresh, part, summed)
        self.fresh = None
        self.alive = alive & ~out.done
        self.obs = out.next_obs

    def _rollout(self, pos: int) -> Rollout:
        """The episode the run at ``pos`` just ended, as the lone run's :func:`narla.rollout.collect` returns it: its
        ticks up to the end of their 16-tick block, those after the episode's end as zeros (the lone run's padding)."""
        t, b = self.engine.ticks[pos], self.engine.envs_per_run
        padded = min(-(-t // SYNC_EVERY) * SYNC_EVERY, self.engine.max_ticks)
        for v in self.record.values():
            v[pos, t:padded] = 0
        rec = {k: v[pos, :padded] for k, v in self.record.items()}
        sums = {name: v[pos * b : (pos + 1) * b] for name, v in self.sums.items()}
        return Rollout(component_sums=sums, **rec)

    def _keep(self, keep: list[int]) -> None:
        """Only the runs at batch positions ``keep`` play on: every per-run and per-column state is cut to them."""
        if not keep:
            self.active = []
            return
        b = self.engine.envs_per_run
        cols = torch.tensor([k * b + j for k in keep for j in range(b)], dtype=torch.long, device=self.engine.device)
        runs = torch.tensor(keep, dtype=torch.long, device=self.engine.device)
        self.active = [self.active[k] for k in keep]
        self.engine.keep_runs(keep)
        self.task.keep_runs(keep, cols)
        self.scheme.select_columns(cols)
        carry = self.carry
        self.carry = Carry(carry.prev.index_select(1, cols), carry.prev_spikes.index_select(0, cols),
                           carry.trace.index_select(0, cols), carry.first.index_select(0, cols), None)
        self.obs, self.alive = self.obs.index_select(0, cols), self.alive.index_select(0, cols)
        if self.fresh is not None:
            self.fresh = self.fresh.index_select(0, cols)
        self.sums = {name: v.index_select(0, cols) for name, v in self.sums.items()}
        if self.terms_mask is not None:
            self.terms_mask = self.terms_mask.index_select(1, cols)
        self.record = {k: v.index_select(0, runs) for k, v in self.record.items()}
        self._record_rows = self._record_rows[: len(keep)]

    # -- training -----------------------------------------------------------------------------------------------
    def train(self) -> list[dict]:
        """Train until every run has stopped or paused; returns each run's summary (also in its ``summary.json``)."""
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
        try:
            self._play(start, windows, writers)
            if self.checkpoint is not None and not self.active:
                self.checkpoint.unlink(missing_ok=True)
        except BaseException as err:
            for pos, r in enumerate(self.active):
                if self.summaries[r] is None:  # a run that finished on this tick keeps its own status
                    self._finish(r, pos, f"failed: {type(err).__name__}: {err}",
                                 self.wall_offset + time.perf_counter() - start, writers)
            raise
        finally:
            for f, _ in writers.values():
                f.close()
        return list(self.summaries)

    def _play(self, start: float, windows: list[deque], writers: dict) -> None:
        """The loop: tick every run; a run whose episode ended learns from it and starts the next, waits (a
        checkpoint is due), or stops."""
        engine = self.engine
        limit, saved, draining = engine.max_ticks, start, False
        self._start_columns()
        while self.active:
            self._tick()
            due = [pos for pos, (t, d) in enumerate(zip(engine.ticks, engine.drawing, strict=True))
                   if d and (self.end_every_tick or t % SYNC_EVERY == 0 or t == limit)]
            if not due:
                continue
            running = self.alive.view(engine.num_runs, -1).any(1).tolist()  # the one host read of a check
            ended = [pos for pos in due if not running[pos] or engine.ticks[pos] == limit]
            if not ended:
                continue
            now = time.perf_counter()
            elapsed = self.wall_offset + now - start
            capped = self.max_wall_s is not None and now - start >= self.max_wall_s
            draining = draining or (self.checkpoint is not None and (capped or now - saved >= self.checkpoint_every_s))
            stopped = []
            for pos in ended:
                status = self._learn(pos, elapsed, windows, writers)
                if status is None and capped and self.checkpoint is None:
                    status = "time_cap"
                if status is not None:
                    self._finish(self.active[pos], pos, status, elapsed, writers)
                    stopped.append(pos)
                elif draining:
                    engine.drawing[pos] = self.task.drawing[pos] = False  # waits between episodes
                else:
                    self._start_episode(pos)
            if stopped:
                self._keep([pos for pos in range(len(self.active)) if pos not in stopped])
            if self.progress:
                self._report()
            if draining and self.active and not any(engine.drawing):  # every run is between episodes
                for f, _ in writers.values():
                    f.flush()
                self._save_checkpoint(elapsed)
                if capped:
                    for pos, r in enumerate(self.active):
                        self._finish(r, pos, "paused", elapsed, writers)
                    return
                saved, draining = time.perf_counter(), False
                for pos in range(len(self.active)):
                    self._start_episode(pos)

    def _learn(self, pos: int, elapsed: float, windows: list[deque], writers: dict) -> str | None:
        """The run at ``pos`` learns from the episode it ended (its own learner: the lone run's update) and records
        it; returns why it stops, or None."""
        r = self.active[pos]
        run, cfg = self.lone[r], self.scenarios[r].training
        rollout = self._rollout(pos)
        stats = run.learner.update(rollout)
        host, (loss,) = host_rows(episode_rows(rollout, run.wiring), [stats["loss"]])
        self.engine.refresh(pos)
        try:
            check_loss(loss, self.scheme, rollout.component_sums, len(self.returns[r]))
        except (RewardError, TrainingError) as err:  # this run stops with the lone run's status; the others go on
            return f"failed: {type(err).__name__}: {err}"
        self._record(r, host, loss, elapsed, windows[r], writers)
        if self.solved_at[r] is not None and cfg.stop_when_solved:
            return "solved"
        if len(self.returns[r]) >= cfg.max_episodes:
            return "max_episodes"
        return None

    def _report(self) -> None:
        """A progress line each time the slowest run passes another hundred episodes."""
        least = min(len(self.returns[r]) for r in self.active)
        if least // 100 > self._reported:
            self._reported = least // 100
            means = [sum(self.returns[r][-self.solve_window :]) / max(len(self.returns[r][-self.solve_window :]), 1)
                     for r in self.active]
            print(f"episode {least}+: {len(self.active)} runs, window means " + " ".join(f"{m:.0f}" for m in means),
                  flush=True)

    def _record(self, r: int, host: dict, loss: float, elapsed: float, window: deque, writers: dict) -> None:
        """Append run ``r``'s episodes (``host``: its ``B`` copies' rows) to its history, CSV and stop rule."""
        cfg = self.scenarios[r].training
        for k in range(len(host["return"])):
            if len(self.returns[r]) >= cfg.max_episodes:
                break
            ret = host["return"][k]
            self.returns[r].append(ret)
            window.append(ret)
            self.neuron_steps[r] += int(host["length"][k]) * self.engine.num_neurons
            row = {"episode": len(self.returns[r]), "wall_clock": round(elapsed, 3), "loss": loss}
            row.update({key: host[key][k] for key in host})
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
        """Write the batch's state to ``self.checkpoint`` with every run between episodes (write-then-rename:
        never half-written)."""
        runs = []
        for r in self.active:
            lone = self.lone[r]
            runs.append({
                "returns": self.returns[r],
                "solved_at": self.solved_at[r],
                "neuron_steps": self.neuron_steps[r],
                "phase": self.phases[r],
                "population": lone.engine.population.state_dict(),
                "optimizer": lone.learner.optimizer.state_dict(),
                "generator": lone.generator.get_state(),
                "task_generator": lone.task.generator.get_state(),
            })
        state = {
            "format": CHECKPOINT_FORMAT,
            "seeds": [self.scenarios[r].seed for r in self.active],
            "scenario": self._key(),
            "wall_time_s": elapsed,
            "runs": runs,
            "torch_rng": torch.get_rng_state(),
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)

    def _read_checkpoint(self) -> dict:
        """``self.checkpoint``'s state, if this trainer can continue from it: this format, this scenario, and seeds
        among this trainer's (the runs it paused; the trainer's other seeds start afresh). Else ScenarioError."""
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        seeds = [s.seed for s in self.scenarios]
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ScenarioError(
                f"batch checkpoint {str(self.checkpoint)!r} was written by an older narla (format "
                f"{state.get('format')}, this one reads {CHECKPOINT_FORMAT}); delete it to start these runs over"
            )
        try:  # the saved scenario as this version reads it: fields added since then take their defaults
            saved = from_dict(state.get("scenario")).to_dict()
        except ScenarioError:
            saved = None
        held = list(state.get("seeds") or [])
        if not set(held) <= set(seeds) or saved != self._key():
            raise ScenarioError(
                f"batch checkpoint {str(self.checkpoint)!r} pauses seeds {held} of "
                f"{'this' if saved == self._key() else 'another'} scenario, not among seeds {seeds} of "
                "this one; delete it to start these runs over"
            )
        return state

    def can_resume(self) -> bool:
        """Whether :meth:`train` will continue from ``self.checkpoint`` (it exists and :meth:`_read_checkpoint`
        accepts it)."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        try:
            self._read_checkpoint()
        except ScenarioError:
            return False
        return True

    def _load_checkpoint(self) -> None:
        """Continue the runs ``self.checkpoint`` paused; seeds it does not hold start from their first episode."""
        state = self._read_checkpoint()
        seeds = [s.seed for s in self.scenarios]
        for seed, saved_run in zip(state["seeds"], state["runs"], strict=True):
            r = seeds.index(seed)
            lone = self.lone[r]
            lone.engine.population.load_state_dict(saved_run["population"])
            lone.learner.optimizer.load_state_dict(saved_run["optimizer"])
            lone.generator.set_state(saved_run["generator"])
            lone.task.generator.set_state(saved_run["task_generator"])
            self.returns[r] = list(saved_run["returns"])
            self.solved_at[r] = saved_run["solved_at"]
            self.neuron_steps[r] = saved_run["neuron_steps"]
            self.phases[r] = saved_run["phase"]
        self.engine._lay_out()
        torch.set_rng_state(state["torch_rng"].cpu())
        self.wall_offset = float(state["wall_time_s"])
        self.resumed_from = [len(r) for r in self.returns]

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
        lone = self.lone[r].engine.population
        self.final_parameters[r] = {name: p.detach().clone() for name, p in lone.named_parameters()}
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
            "machine": machine(self.engine.device),
            "batched_runs": len(self.scenarios),
        }
        self.summaries[r] = summary
        d = self.out_dirs[r]
        if d is None:
            return
        if r in writers:
            writers[r][0].flush()
        atomic_write(d / "summary.json", json.dumps(summary, indent=2) + "\n")
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
