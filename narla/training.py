"""Build a run from a scenario and train it: rollouts, updates, history, results directory.

Results directory (written as the run goes; files are replaced atomically, never half-written):
- ``scenario.yaml``: the resolved scenario (with the seed and device actually used);
- ``episodes.csv``: one row per finished episode (episode, return, length, wall clock, loss, firing
  rate per layer, and each reward component's mean per layer);
- ``tests.csv`` (with ``training.test_every``): the test score of the current policy every that many updates
  (update, episodes, test_mean, test_std, wall clock; :class:`narla.evaluate.PolicyTest`);
- ``summary.json``: solved-at episode, wall time (this call's and the total over resumed calls), neuron-steps/s,
  status;
- ``model.pt``: the final per-neuron parameters and the scenario.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import torch

from narla import checkpoint
from narla import graph as graphs
from narla.context import action_dim, add_context
from narla.cooperator import attention_neuron, cooperator, is_attention_network, population_from_graph
from narla.engine import Engine
from narla.imports import import_all, recorded
from narla.learning import ActorCritic, Reinforce
from narla.learning.cmaes import CMAES
from narla.learning.es import PerNeuronES
from narla.memory import check_record, check_update
from narla.neurons import Population
from narla.neurons.heads import SoftmaxHeadPopulation
from narla.readout import Readout
from narla.results import atomic_write, machine, output_dir, write_index
from narla.rewards import RewardScheme
from narla.rollout import Rollout, collect, scores_in_bulk
from narla.runlog import RunLog
from narla.scenario import Scenario, ScenarioError, dump, output_kinds
from narla.tasks.base import Task
from narla.tasks.registry import make_task
from narla.wiring import Wiring, compile_graph

BUILDERS: dict[str, Callable[..., nx.DiGraph]] = {
    "layered": graphs.layered,
    "random_sparse": graphs.random_sparse,
    "small_world": graphs.small_world,
    "attention_neuron": attention_neuron,
    "cooperator": cooperator,
}


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, say); the results written so far are kept."""


class ResultsExistError(FileExistsError):
    """The results directory already holds a run; narla never overwrites results."""


def _import(path: str, field_name: str) -> Callable:
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ScenarioError(f"{field_name}: cannot import {path!r} ({err})") from None


@graphs.gc_paused()
def build_graph(network: dict, n_obs: int, motor_groups: list[str]) -> nx.DiGraph:
    """The scenario's ``network`` section -> a validated neuron graph.

    ``builder`` is a built-in name or ``"module:function"``; a user function is called as
    ``fn(n_obs=..., motor_groups=[...], **params)`` and must return a ``networkx.DiGraph``.
    """
    params = dict(network)
    name = params.pop("builder", "layered")
    if name in BUILDERS:
        fn = BUILDERS[name]
    elif ":" in name:
        fn = _import(name, "network.builder")
    else:
        raise ScenarioError(
            f"network.builder: unknown builder {name!r}; allowed: {', '.join(BUILDERS)} or 'module:function'"
        )
    sig = inspect.signature(fn)
    allowed = [p for p in sig.parameters if p not in ("n_obs", "n_motor", "motor_groups")]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for key in params:
        if key not in allowed and not takes_any:
            raise ScenarioError(f"network.{key}: unknown parameter of builder {name!r}; allowed: {', '.join(allowed)}")
    kwargs = {"n_obs": n_obs, "motor_groups": motor_groups, **params}
    if "n_motor" in sig.parameters:
        kwargs["n_motor"] = len(motor_groups)
    for key, p in sig.parameters.items() if name in BUILDERS else ():  # a user's builder may be wrapped
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and key not in kwargs:
            raise ScenarioError(f"network.{key}: required by builder {name!r}")
    try:
        graph = fn(**kwargs)
    except ValueError as err:  # GraphError included
        if name not in BUILDERS:
            raise
        # a built-in builder names the parameter first ("width must be ..."): say it by its dotted path
        text = str(err)
        key, must, rest = text.partition(" must ")
        if must and key in params:
            raise ScenarioError(f"network.{key}: must {rest}") from None
        raise ScenarioError(text if text.startswith("network") else f"network: {text}") from None
    if not isinstance(graph, nx.DiGraph):
        raise ScenarioError(f"network.builder: {name!r} returned {type(graph).__name__}, expected a networkx.DiGraph")
    # a built-in builder's graph is new and validated, with every default set; a user's is copied and checked
    return graph if name in BUILDERS else graphs.from_networkx(graph)


@dataclass
class Run:
    """Everything a scenario builds, ready to train."""

    scenario: Scenario
    task: Task
    graph: nx.DiGraph
    wiring: Wiring
    engine: Engine
    scheme: RewardScheme
    learner: Reinforce | ActorCritic | PerNeuronES | CMAES | None
    device: torch.device
    generator: torch.Generator = field(repr=False, default=None)


def build(scenario: Scenario, learner: bool = True, init_from: bool = True) -> Run:
    """Construct task, graph, wiring, population, engine, reward scheme and learner; seeded.

    ``learner=False`` builds no learner (``run.learner`` is None): a replay acts with the population's own
    parameters, never with an evolution strategy's perturbed members. ``init_from=False`` ignores
    ``training.init_from`` (a resumed run takes its parameters from its checkpoint instead).
    """
    import_all(scenario.imports)  # user modules first: their @register_reward decorators run now
    device = torch.device(scenario.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScenarioError(f"device: {scenario.device!r} requested but CUDA is not available here; use cpu")
    torch.manual_seed(scenario.seed)
    task_kwargs = dict(scenario.task.options)
    if scenario.task.max_episode_steps is not None:
        task_kwargs["max_episode_steps"] = scenario.task.max_episode_steps
    try:
        task = make_task(scenario.task.id, scenario.task.num_envs, device=device, **task_kwargs)
    except ValueError as err:
        raise ScenarioError(f"task: {err}") from None
    try:
        readout = Readout(scenario.readout.kind, task.action_space, scenario.readout.motor_per_group)
    except ValueError as err:
        raise ScenarioError(str(err)) from None
    graph = build_graph(scenario.network, task.obs_dim, readout.motor_groups())
    ctx = scenario.context
    if ctx.proximal or ctx.distal or ctx.feedback:
        graph = add_context(graph, proximal=ctx.proximal, distal=ctx.distal, feedback=ctx.feedback)
    wiring = compile_graph(graph, device)
    rule = scenario.learning.rule
    if is_attention_network(graph):
        if learner and rule not in ("es", "cma_es"):
            raise ScenarioError(
                f"learning.rule: {rule!r} cannot train network.builder {scenario.network['builder']!r} (deterministic "
                "rate neurons with memory); allowed: es, cma_es"
            )
        population = population_from_graph(graph, action_dim(task.action_space)).to(device)
    else:
        kinds = output_kinds(scenario.neuron.output)
        rate = torch.where(wiring.motor, kinds["motor"] == "rate", kinds["hidden"] == "rate")
        if bool(rate[wiring.motor].any()) and scenario.readout.kind != "value":
            raise ScenarioError(
                f"readout.kind: rate motor neurons need readout value, got {scenario.readout.kind!r}"
            )
        if bool(rate[wiring.motor].any()) and readout.out_dim > 1:
            raise ScenarioError("neuron.output.motor: a categorical motor neuron cannot be a rate neuron")
        options = dict(
            out_dim=readout.out_dim,
            hidden=scenario.neuron.hidden,
            activation=scenario.neuron.activation,
            amtf=scenario.neuron.amtf,
            critic=rule == "actor_critic",
            position_dim=ctx.universal_position,
            action_dim=action_dim(task.action_space) if ctx.universal_action else 0,
            rate=rate if bool(rate.any()) else None,
        )
        if scenario.neuron.head == "softmax":
            if rule == "actor_critic" or scenario.neuron.amtf != "feedforward" or bool(rate.any()):
                raise ScenarioError(
                    "neuron.head: 'softmax' needs neuron.amtf 'feedforward', spiking neurons and a policy-only rule"
                )
            population = SoftmaxHeadPopulation(wiring, **options).to(device)
        else:
            population = Population(wiring, **options).to(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(scenario.seed + 1)
    try:
        engine = Engine(wiring, population, readout, scenario.propagation, generator)
    except ValueError as err:
        raise ScenarioError(str(err)) from None
    if learner and init_from and scenario.training.init_from is not None:
        start_from(population, task, scenario.training.init_from)
    if rule in ("es", "cma_es"):
        engine.explore = False  # rate neurons are deterministic under evolution strategies
        log_std = getattr(population, "log_std", None)
        if log_std is not None:
            log_std.requires_grad_(False)  # not evolved: it only shapes the policy-gradient Gaussian
    scheme = RewardScheme.from_config(scenario.rewards, wiring)
    cfg = scenario.learning
    if not learner:
        learner = None
    elif rule == "reinforce":
        learner = Reinforce(engine, cfg.lr, cfg.gamma, cfg.normalize_returns, cfg.entropy_coef, cfg.max_grad_norm,
                            cfg.chunk_ticks, cfg.chunk_columns)
    elif rule == "es":
        es_generator = torch.Generator(device=device)
        es_generator.manual_seed(scenario.seed + 2)
        try:
            learner = PerNeuronES(
                engine, task.num_envs, cfg.lr, cfg.sigma, cfg.population, cfg.fitness_shaping, es_generator
            )
        except ValueError as err:
            raise ScenarioError(str(err)) from None
    elif rule == "cma_es":
        try:
            learner = CMAES(engine, task.num_envs, cfg.population, cfg.sigma, scenario.seed)
        except ValueError as err:
            raise ScenarioError(str(err)) from None
    else:
        learner = ActorCritic(
            engine, cfg.lr, cfg.gamma, cfg.gae_lambda, cfg.value_coef, cfg.entropy_coef, cfg.normalize_returns,
            cfg.max_grad_norm,
        )
    task.reset(seed=scenario.seed)
    return Run(scenario, task, graph, wiring, engine, scheme, learner, device, generator)


def start_from(population: torch.nn.Module, task: Task, run_dir: str) -> None:
    """``training.init_from``: load an earlier run's parameters into ``population`` and its observation statistics
    into ``task`` (:func:`narla.evaluate.apply_model`), before any learner reads the population."""
    from narla.evaluate import apply_model, load_model

    field_name = "training.init_from"
    try:
        saved = load_model(run_dir)
    except ScenarioError as err:
        raise ScenarioError(f"{field_name}: {err}") from None
    try:
        apply_model(saved, population, task)
    except (KeyError, RuntimeError) as err:
        detail = str(err).strip().splitlines()
        raise ScenarioError(
            f"{field_name}: the parameters in {run_dir!r} do not fit this network "
            f"({detail[-1].strip() if detail else 'no population saved'}); it must be a run of the same network"
        ) from None


def collect_options(run: Run, copies: int | None = None) -> dict:
    """:func:`narla.rollout.collect`'s keyword arguments for ``run``'s learner with ``copies`` copies (default the
    task's): whether to record each tick's rewards (``learner.records_rewards``: not where a batch's would be too
    large and the update can score them again), and whether to keep the last hidden layer for the update
    (``learner.keeps_hidden``, not without recorded rewards: such an update re-evaluates window by window) with its
    window (``learner.chunk_columns``). The Trainer and ``narla bench`` collect with them."""
    learner, task = run.learner, run.task
    copies = task.num_envs if copies is None else copies
    records = getattr(learner, "records_rewards", None)
    record = (records is None or not scores_in_bulk(run.engine, run.scheme)
              or records(run.scheme, run.wiring.num_neurons, copies, task.max_episode_steps))
    return {"keep_hidden": record and getattr(learner, "keeps_hidden", False),
            "hidden_columns": getattr(learner, "chunk_columns", None), "record_rewards": record}


def episode_rows(rollout: Rollout, wiring: Wiring) -> dict[str, torch.Tensor]:
    """Per-episode statistics of a batch, each ``[B]`` (firing rates and reward components per layer)."""
    valid = rollout.valid.float()
    length = valid.sum(0)
    per_step = length.clamp(min=1).unsqueeze(1)
    layers = wiring.layer - 1
    num_layers, count = wiring.num_layers, wiring.layer_sizes

    def per_layer(episode_sums: torch.Tensor) -> torch.Tensor:
        per_neuron = episode_sums / per_step  # [B, N] per-tick mean over the episode
        sums = torch.zeros(per_neuron.shape[0], num_layers, device=per_neuron.device).index_add_(1, layers, per_neuron)
        return sums / count

    out = {"return": rollout.task_reward.sum(0), "length": length}
    firing = per_layer(rollout.spike_counts())
    for layer in range(num_layers):
        out[f"firing_L{layer + 1}"] = firing[:, layer]
    for name, values in rollout.component_sums.items():
        means = per_layer(values)
        for layer in range(num_layers):
            out[f"reward_{name}_L{layer + 1}"] = means[:, layer]
    return out


def host_rows(rows: dict[str, torch.Tensor], scalars: list[torch.Tensor]) -> tuple[dict[str, list], list[float]]:
    """``rows`` (each ``[B]``) and 0-d ``scalars`` copied to the host in one transfer: lists and floats."""
    keys = list(rows)
    b = rows[keys[0]].shape[0]
    packed = torch.stack([rows[k].float() for k in keys] + [s.detach().float().reshape(1).expand(b) for s in scalars])
    host = packed.cpu().tolist()
    return dict(zip(keys, host[: len(keys)], strict=True)), [row[0] for row in host[len(keys):]]


class Trainer:
    """Runs a scenario until its solve criterion or ``training.max_episodes``."""

    def __init__(
        self, scenario: Scenario, out_dir: str | Path | None = None, progress: bool = True, overwrite: bool = False,
        init_from: bool = True,
    ) -> None:
        self.out_dir = output_dir(out_dir, "results directory") if out_dir is not None else None
        if self.out_dir is not None and not overwrite and (self.out_dir / "episodes.csv").exists():
            raise ResultsExistError(
                f"results directory {str(self.out_dir)!r} already holds a run; choose another --out "
                "(narla never overwrites results)"
            )
        if "tensorboard" in scenario.training.log and importlib.util.find_spec("tensorboard") is None:
            raise ScenarioError(
                "training.log: 'tensorboard' needs the tensorboard package: pip install 'narla[tensorboard]'"
            )
        self.run = build(scenario, init_from=init_from)
        record = collect_options(self.run)["record_rewards"]
        check_record(self.run.engine, self.run.task, rewards=record)  # a warning now, not the kernel's kill later
        check_update(self.run.engine, self.run.task, self.run.learner, rewards=record)
        self.scenario = recorded(scenario)  # with the user modules it needs, so that it re-runs from anywhere
        self.progress = progress
        solve = self.run.task.solve
        self.solve_window = scenario.training.solve_window or (solve.window if solve else 100)
        self.solve_threshold = scenario.training.solve_threshold
        if self.solve_threshold is None and solve is not None:
            self.solve_threshold = solve.threshold
        self.returns: list[float] = []
        self.env_steps = 0  # environment steps of the finished episodes (their lengths summed over copies)
        self.solved_at: int | None = None
        self.resumed_from: int | None = None  # set by load_state_dict (a resumed run): its logs are appended to
        self.wall_offset = 0.0  # wall time of the sessions before a resume, seconds

    def _start_results(self) -> None:
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out_dir / "scenario.yaml", dump(self.scenario))
            write_index(self.out_dir, self.scenario.name)

    def train(self) -> dict:
        """Train; returns the summary (also written to ``summary.json``).

        One loop, top to bottom: collect a batch of episodes (every neuron's rewards included), learn from it,
        record it (:class:`narla.runlog.RunLog`: results files, tests, progress), checkpoint, check the stop rule.
        """
        run, cfg = self.run, self.scenario.training
        self._start_results()
        window: deque[float] = deque(self.returns[-self.solve_window :], maxlen=self.solve_window)
        log = RunLog(self, self.out_dir, resumed=self.resumed_from is not None)
        start, neuron_steps, status = time.perf_counter(), 0, "max_episodes"
        phase = run.scheme.active_terms(len(self.returns) - run.task.num_envs) if self.returns else None
        options = collect_options(run)
        try:
            while len(self.returns) < cfg.max_episodes:
                first = len(self.returns)
                phase = self._enter_phase(first, phase)
                rollout = collect(run.engine, run.task, run.scheme, first, **options)
                stats = run.learner.update(rollout)
                host, (loss,) = host_rows(episode_rows(rollout, run.wiring), [stats["loss"]])
                check_loss(loss, run.scheme, rollout.component_sums, first)
                neuron_steps += int(sum(host["length"])) * run.wiring.num_neurons
                elapsed = self.wall_offset + time.perf_counter() - start
                rows = self._add_episodes(host, loss, elapsed, window)
                log.record(rollout, rows, host, loss, first, list(window), elapsed)
                every = cfg.checkpoint_every
                if every is not None and self.out_dir is not None and len(self.returns) // every > first // every:
                    self.save_checkpoint(elapsed)
                if self.solved_at is not None and cfg.stop_when_solved:
                    status = "solved"
                    break
                if cfg.max_env_steps is not None and self.env_steps >= cfg.max_env_steps:
                    status = "max_env_steps"
                    break
                if cfg.max_wall_s is not None and time.perf_counter() - start >= cfg.max_wall_s:
                    status = "time_cap"
                    break
        except BaseException as err:
            status = f"failed: {type(err).__name__}: {err}"
            raise
        finally:
            log.close(status)
            summary = self._summary(status, time.perf_counter() - start, neuron_steps)
            if self.out_dir is not None:
                atomic_write(self.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
                self.save(self.out_dir / "model.pt")
                if cfg.checkpoint_every is not None and not status.startswith("failed"):
                    self.save_checkpoint(self.wall_offset + time.perf_counter() - start)
        return summary

    def _enter_phase(self, episode: int, phase: list[str] | None) -> list[str]:
        """The reward terms of ``episode``; a new reward phase is a new objective, so Adam starts afresh: its moments
        (and its bias correction, already decayed) describe the old one, and a neuron that got no reward in the last
        phase would otherwise take steps several times ``lr`` right after the switch."""
        terms = self.run.scheme.active_terms(episode)
        optimizer = getattr(self.run.learner, "optimizer", None)
        if phase is not None and terms != phase and optimizer is not None:
            optimizer.state.clear()
        return terms

    def _add_episodes(self, host: dict[str, list], loss: float, elapsed: float, window: deque) -> list[dict]:
        """Add the batch's episodes (up to ``max_episodes``) to the history and the solve rule; their CSV rows."""
        cfg, rows = self.scenario.training, []
        for b in range(len(host["return"])):
            if len(self.returns) >= cfg.max_episodes:
                break
            ret = host["return"][b]
            self.returns.append(ret)
            self.env_steps += int(host["length"][b])
            window.append(ret)
            rows.append({"episode": len(self.returns), "wall_clock": round(elapsed, 3), "loss": loss,
                         **{k: v[b] for k, v in host.items()}})
            if self.solved_at is None and solve_check(cfg, self.solve_threshold, window, self.solve_window,
                                                      len(self.returns)):
                self.solved_at = len(self.returns)
        return rows

    def _summary(self, status: str, wall: float, neuron_steps: int) -> dict:
        last = self.returns[-self.solve_window :]
        return {
            "name": self.scenario.name,
            "seed": self.scenario.seed,
            "status": status,
            "episodes": len(self.returns),
            "env_steps": self.env_steps,
            "solved_at": self.solved_at,
            "solve_window": self.solve_window,
            "solve_threshold": self.solve_threshold,
            "final_mean_return": sum(last) / len(last) if last else None,
            "best_mean_return": _best_window_mean(self.returns, self.solve_window),
            "wall_time_s": round(wall, 3),  # this call's (the rate below is this call's too)
            "total_wall_time_s": round(self.wall_offset + wall, 3),  # over every call of a resumed run
            "neuron_steps_per_s": round(neuron_steps / wall, 1) if wall > 0 else None,
            "num_neurons": self.run.wiring.num_neurons,
            "num_envs": self.run.task.num_envs,
            "device": str(self.run.device),
            "machine": machine(self.run.device),
        }

    def save(self, path: Path) -> None:
        """Write the population's parameters, the scenario and the task's observation normalizer atomically."""
        from narla.evaluate import save_model

        save_model(path, self.scenario, self.run.engine.population, self.run.task)

    def state_dict(self, wall_time_s: float = 0.0) -> dict:
        """Everything the next batch depends on (see :mod:`narla.checkpoint`): parameters, the learner's state,
        observation statistics, every random generator, and the history so far."""
        run = self.run
        normalizer = getattr(run.task, "normalizer", None)
        learner = run.learner
        rng = {"torch": torch.get_rng_state()}
        if run.engine.generator is not None:
            rng["engine"] = run.engine.generator.get_state()
        if isinstance(getattr(run.task, "generator", None), torch.Generator):
            rng["task"] = run.task.generator.get_state()
        return {
            "scenario": self.scenario.to_dict(),
            "episodes": len(self.returns),
            "returns": list(self.returns),
            "env_steps": self.env_steps,
            "solved_at": self.solved_at,
            "wall_time_s": wall_time_s,
            "population": run.engine.population.state_dict(),
            "learner": learner.state_dict() if hasattr(learner, "state_dict") else
            {"optimizer": learner.optimizer.state_dict()},
            "normalizer": normalizer.state_dict() if normalizer is not None else None,
            "rng": rng,
        }

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`: this trainer continues exactly where that one was."""
        run = self.run
        run.engine.population.load_state_dict(state["population"])
        if hasattr(run.learner, "load_state_dict"):
            run.learner.load_state_dict(state["learner"])
        else:
            run.learner.optimizer.load_state_dict(state["learner"]["optimizer"])
        normalizer = getattr(run.task, "normalizer", None)
        if normalizer is not None and state["normalizer"] is not None:
            normalizer.load_state_dict(state["normalizer"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if "engine" in rng:
            run.engine.generator.set_state(rng["engine"])
        if "task" in rng:
            run.task.generator.set_state(rng["task"])
        self.returns = list(state["returns"])
        self.env_steps = int(state.get("env_steps", 0))
        self.solved_at = state["solved_at"]
        self.resumed_from = state["episodes"]
        self.wall_offset = float(state.get("wall_time_s", 0.0))

    def save_checkpoint(self, wall_time_s: float = 0.0) -> None:
        """Write ``checkpoint.pt``: the whole run state, for ``narla run --resume`` (:mod:`narla.checkpoint`)."""
        if self.out_dir is not None:
            checkpoint.save(self.out_dir / checkpoint.CHECKPOINT, self.state_dict(wall_time_s))


def resume(out_dir: str | Path, overrides: list[str] | None = None, progress: bool = True) -> Trainer:
    """A :class:`Trainer` that continues the run in ``out_dir`` from its ``checkpoint.pt``.

    The scenario is ``out_dir/scenario.yaml`` (``overrides`` such as ``training.max_episodes=2000`` may extend
    it); the logs (``episodes.csv``, ``tests.csv``, ...) are cut back to the checkpoint's episode count and
    appended to by ``train()``.

    Raises:
        ScenarioError: ``out_dir`` holds no scenario or no checkpoint.
    """
    from narla import scenario as scenarios

    out_dir = Path(out_dir)
    path = out_dir / checkpoint.CHECKPOINT
    if not (out_dir / "scenario.yaml").is_file() or not path.is_file():
        raise ScenarioError(
            f"--resume {str(out_dir)!r}: no {checkpoint.CHECKPOINT} there; only runs with training.checkpoint_every "
            "set can be resumed"
        )
    trainer = Trainer(scenarios.load(out_dir / "scenario.yaml", overrides), out_dir, progress=progress, overwrite=True,
                      init_from=False)
    state = checkpoint.load(path)  # on the CPU: RNG states must stay there
    trainer.load_state_dict(state)
    checkpoint.truncate_logs(out_dir, state["episodes"])
    if "env_steps" not in state:  # a checkpoint from before env_steps was kept: sum the episodes' lengths
        trainer.env_steps = checkpoint.logged_env_steps(out_dir)
    return trainer


def check_loss(loss: float, scheme, components: dict[str, torch.Tensor], episode: int) -> None:
    """Stop with one message on a non-finite ``loss`` of the update after ``episode`` episodes: a
    :class:`~narla.rewards.RewardError` naming the reward whose ``components`` (label -> tensor) went non-finite, if
    one did, else a :class:`TrainingError`."""
    if not math.isfinite(loss):
        scheme.check_finite(components)
        raise TrainingError(
            f"the loss became {loss} at episode {episode}; try a smaller learning.lr or "
            "learning.max_grad_norm (results so far are kept)"
        )


def solve_check(cfg, threshold: float | None, window: deque, size: int, episodes: int) -> bool:
    """The stop rule after ``episodes`` finished episodes: a full window whose mean reaches ``threshold``
    (exceeds it when ``cfg.solve_strict``), checked only once ``episodes > cfg.solve_after``."""
    if threshold is None or len(window) < size or episodes <= cfg.solve_after:
        return False
    mean = sum(window) / len(window)
    return mean > threshold if cfg.solve_strict else mean >= threshold


def _best_window_mean(returns: list[float], window: int) -> float | None:
    if not returns:
        return None
    w = min(window, len(returns))
    total = sum(returns[:w])
    best = total
    for i in range(w, len(returns)):
        total += returns[i] - returns[i - w]
        best = max(best, total)
    return best / w
