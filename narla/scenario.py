"""Scenario files: the single, validated description of a run.

A scenario is YAML with the sections below; every field has a default except ``name``. Validation
names the offending field by its dotted path (``learning.lr``) and says what is allowed.

.. code-block:: yaml

    name: cartpole_1layer
    seed: 0
    device: cpu                 # cpu | cuda | cuda:N
    propagation: sweep          # sweep | delay
    task: {id: cartpole, num_envs: 1}
    network: {builder: layered, layers: 1, width: 15, connectivity: local}
    neuron: {hidden: [128, 128], activation: leaky_relu, amtf: feedforward}
    readout: {kind: choice}
    context: {proximal: false, distal: false, feedback: false, universal_position: 0, universal_action: false}
    learning: {rule: reinforce, lr: 0.001, gamma: 0.99}
    rewards: [task]
    training: {max_episodes: 20000}
"""

from __future__ import annotations

import copy
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ScenarioError(ValueError):
    """A scenario field is missing, unknown, or has a value that is not allowed."""


def _choices(*allowed: str, default: str) -> Any:
    return field(default=default, metadata={"choices": allowed})


@dataclass
class TaskConfig:
    """Which task, how many copies ``B`` run in parallel, and task-specific options."""

    id: str = "cartpole"
    num_envs: int = 1
    max_episode_steps: int | None = None
    options: dict = field(default_factory=dict)


@dataclass
class NeuronConfig:
    """Each neuron's policy network, its modulatory transfer function (``narla.cooperation``) and its output kind.

    ``output``: ``spike`` (Bernoulli, NaRLA's neurons) or ``rate`` (a continuous value ``tanh(z)``, deterministic
    under ES, Gaussian with a learned per-neuron log-std under policy gradients), for every neuron, or per role
    as a mapping such as ``{hidden: spike, motor: rate}``.

    ``head``: ``logit`` (a binary neuron's MLP ends in one firing logit) or ``softmax`` (it ends in one unit per
    choice, fire/silent, and a softmax, as in the NaRLA paper: :class:`narla.neurons.heads.SoftmaxHeadPopulation`).
    """

    hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = _choices("leaky_relu", "leaky_relu_0.3", "relu", "tanh", default="leaky_relu")
    head: str = _choices("logit", "softmax", default="logit")
    amtf: str = _choices("cooperation", "cooperation_relu6", "additive", "feedforward", "gain", default="feedforward")
    output: Any = "spike"


@dataclass
class ReadoutConfig:
    """How motor neurons form the task action (``narla.readout``)."""

    kind: str = _choices("choice", "vote", "rate", "squash", "value", default="choice")
    motor_per_group: int = 1


@dataclass
class ContextConfig:
    """Context sources of every neuron (``narla.context``) and how C is integrated; all sources off by default.

    ``proximal``/``distal``/``feedback`` add graph context edges; ``universal_position`` is the width of the
    positional encoding of the neuron index (0 = off); ``universal_action`` feeds the previous task action.
    (The ``attention_neuron`` / ``cooperator`` builders wire their own context: see ``narla.cooperator``.)
    """

    proximal: bool = False
    distal: bool = False
    feedback: bool = False
    universal_position: int = 0
    universal_action: bool = False


@dataclass
class LearningConfig:
    """The learning rule and its hyper-parameters (every neuron learns from its own reward).

    ``es`` (per-neuron evolution strategies, :mod:`narla.learning.es`) uses ``lr``, ``sigma`` (perturbation
    scale), ``population`` (M antithetic pairs; ``task.num_envs`` must be a multiple of 2M) and
    ``fitness_shaping``; ``gamma`` and the gradient options do not apply to it. ``cma_es`` (whole-network
    CMA-ES, :mod:`narla.learning.cmaes`) uses ``sigma`` (initial step size) and ``population`` (members;
    ``task.num_envs`` must be a multiple of it, the quotient is the repeats per member).
    """

    rule: str = _choices("reinforce", "actor_critic", "es", "cma_es", default="reinforce")
    lr: float = 1e-3
    gamma: float = 0.99
    normalize_returns: bool = True
    entropy_coef: float = 0.0
    gae_lambda: float = 0.95
    value_coef: float = 0.5
    max_grad_norm: float | None = None
    sigma: float = 0.05
    population: int = 8
    fitness_shaping: str = _choices("centered_rank", "none", default="centered_rank")


@dataclass
class TrainingConfig:
    """When to stop and what to keep. ``solve_*`` default to the task's own criterion.

    Every episode count here (``max_episodes``, ``checkpoint_every``, ``solve_after``, the solve window) counts
    episodes of one environment copy: a batch of ``task.num_envs`` copies adds ``num_envs`` episodes.

    ``checkpoint_every``: write ``checkpoint.pt`` (the whole run state, :mod:`narla.checkpoint`) each time
    this many more episodes have finished, and at the end; ``narla run --resume DIR`` continues from it.
    ``solve_after``: the solve rule is checked only once more than this many episodes have finished (the NaRLA
    paper's code: 1,000). ``solve_strict``: the window's mean must exceed the threshold (``>``), not reach it.
    ``max_wall_s``: stop after this many seconds of training (status ``time_cap``); null: no limit.
    ``test_every``: every this many updates (ES: generations), play ``test_episodes`` fresh episodes with the
    current policy (ES: the mean parameters, no perturbation) and append the score to ``tests.csv``; null: never.
    ``log_neurons``: also write ``neurons.csv``, each neuron's firing rate and return per episode.
    ``log``: where the per-episode record goes: ``csv`` (``episodes.csv``, always) and optionally ``tensorboard``
    (scalars in ``RUN_DIR/tensorboard``, :mod:`narla.tblog`).
    """

    max_episodes: int = 20000
    solve_window: int | None = None
    solve_threshold: float | None = None
    stop_when_solved: bool = True
    checkpoint_every: int | None = None
    solve_after: int = 0
    solve_strict: bool = False
    max_wall_s: float | None = None
    test_every: int | None = None
    test_episodes: int = 16
    log_neurons: bool = False
    log: list[str] = field(default_factory=lambda: ["csv"])


@dataclass
class Scenario:
    """A whole run. ``network`` holds ``builder`` plus that builder's keyword arguments."""

    name: str
    seed: int = 0
    device: str = "cpu"
    propagation: str = _choices("sweep", "delay", default="sweep")
    task: TaskConfig = field(default_factory=TaskConfig)
    network: dict = field(default_factory=lambda: {"builder": "layered", "layers": 1})
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    rewards: Any = field(default_factory=lambda: ["task"])
    training: TrainingConfig = field(default_factory=TrainingConfig)
    imports: list[str] = field(default_factory=list)  # user modules to import first (narla.imports)

    def to_dict(self) -> dict:
        """Plain data (YAML-ready) that :func:`from_dict` turns back into an equal scenario."""
        return asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _coerce(inner[0], value, path)
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        return _build(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ScenarioError(f"{path}: must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is dict:
        if not isinstance(value, dict):
            raise ScenarioError(f"{path}: must be a mapping, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{path}: must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{path}: must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{path}: must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ScenarioError(f"{path}: must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported field type {_type_name(tp)} at {path}")


def _build(cls: type, data: Any, path: str) -> Any:
    where = f"{path}: " if path else ""
    if not isinstance(data, dict):
        raise ScenarioError(f"{where or 'scenario: '}must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            name = f"{path}.{key}" if path else str(key)
            raise ScenarioError(f"{name}: unknown field; allowed: {', '.join(known)}")
    kwargs = {}
    for f in fields(cls):
        name = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            continue
        value = _coerce(hints[f.name], data[f.name], name)
        allowed = f.metadata.get("choices")
        if allowed and value not in allowed:
            raise ScenarioError(f"{name}: {value!r} is not allowed; allowed: {', '.join(allowed)}")
        kwargs[f.name] = value
    return cls(**kwargs)


def _check_ranges(s: Scenario) -> None:
    def need(ok: bool, name: str, rule: str, value: Any) -> None:
        if not ok:
            raise ScenarioError(f"{name}: must be {rule}, got {value!r}")

    need(s.task.num_envs >= 1, "task.num_envs", ">= 1", s.task.num_envs)
    need(s.task.max_episode_steps is None or s.task.max_episode_steps >= 1, "task.max_episode_steps", ">= 1",
         s.task.max_episode_steps)
    need(all(h >= 1 for h in s.neuron.hidden), "neuron.hidden", "a list of layer widths >= 1", s.neuron.hidden)
    _check_output(s.neuron.output)
    need(s.readout.motor_per_group >= 1, "readout.motor_per_group", ">= 1", s.readout.motor_per_group)
    need(s.context.universal_position >= 0, "context.universal_position", ">= 0", s.context.universal_position)
    need(s.learning.lr > 0, "learning.lr", "> 0", s.learning.lr)
    need(0.0 <= s.learning.gamma <= 1.0, "learning.gamma", "in [0, 1]", s.learning.gamma)
    need(0.0 <= s.learning.gae_lambda <= 1.0, "learning.gae_lambda", "in [0, 1]", s.learning.gae_lambda)
    need(s.learning.max_grad_norm is None or s.learning.max_grad_norm > 0, "learning.max_grad_norm", "> 0",
         s.learning.max_grad_norm)
    need(s.learning.sigma > 0, "learning.sigma", "> 0", s.learning.sigma)
    need(s.learning.population >= 1, "learning.population", ">= 1", s.learning.population)
    need(s.training.checkpoint_every is None or s.training.checkpoint_every >= 1, "training.checkpoint_every",
         ">= 1 (or null)", s.training.checkpoint_every)
    need(s.training.test_every is None or s.training.test_every >= 1, "training.test_every", ">= 1 (or null)",
         s.training.test_every)
    need(s.training.test_episodes >= 1, "training.test_episodes", ">= 1", s.training.test_episodes)
    need(s.training.max_wall_s is None or s.training.max_wall_s > 0, "training.max_wall_s", "> 0 (or null)",
         s.training.max_wall_s)
    need(s.training.solve_after >= 0, "training.solve_after", ">= 0", s.training.solve_after)
    need(s.training.max_episodes >= 1, "training.max_episodes", ">= 1", s.training.max_episodes)
    need(s.training.solve_window is None or s.training.solve_window >= 1, "training.solve_window", ">= 1",
         s.training.solve_window)
    need(s.device == "cpu" or s.device.startswith("cuda"), "device", "'cpu', 'cuda' or 'cuda:N'", s.device)
    for i, sink in enumerate(s.training.log):
        need(sink in LOGS, f"training.log[{i}]", f"one of {', '.join(LOGS)}", sink)
    need("csv" in s.training.log, "training.log", "a list that includes csv (episodes.csv is the run's record), "
         "e.g. [csv, tensorboard]", s.training.log)
    for i, entry in enumerate(s.imports):
        need(re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(@.+)?", entry) is not None, f"imports[{i}]",
             "a module name such as 'myrewards', or 'pkg.mod@/abs/dir'", entry)
    builder = s.network.get("builder", "layered")
    need(isinstance(builder, str), "network.builder", "a builder name or 'module:function'", builder)


OUTPUTS = ("spike", "rate")
LOGS = ("csv", "tensorboard")


def _check_output(output: Any) -> None:
    if isinstance(output, str):
        if output not in OUTPUTS:
            raise ScenarioError(f"neuron.output: {output!r} is not allowed; allowed: {', '.join(OUTPUTS)} or a mapping "
                                "of roles (hidden, motor) to them")
        return
    if not isinstance(output, dict):
        raise ScenarioError(f"neuron.output: must be spike, rate or a mapping of roles to them, got {output!r}")
    for role, kind in output.items():
        if role not in ("hidden", "motor"):
            raise ScenarioError(f"neuron.output.{role}: unknown role; allowed: hidden, motor")
        if kind not in OUTPUTS:
            raise ScenarioError(f"neuron.output.{role}: {kind!r} is not allowed; allowed: {', '.join(OUTPUTS)}")


def output_kinds(output: Any) -> dict[str, str]:
    """``neuron.output`` -> ``{"hidden": kind, "motor": kind}`` (unnamed roles spike)."""
    if isinstance(output, str):
        return {"hidden": output, "motor": output}
    return {"hidden": output.get("hidden", "spike"), "motor": output.get("motor", "spike")}


def from_dict(data: Any) -> Scenario:
    """Validate plain data into a :class:`Scenario` (raises :class:`ScenarioError`)."""
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario: must be a mapping of sections, got {type(data).__name__}")
    if "name" not in data:
        raise ScenarioError("name: missing required field (a short name for the run)")
    scenario = _build(Scenario, data, "")
    scenario.network.setdefault("builder", "layered")
    _check_ranges(scenario)
    return scenario


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"learning.lr=0.01"`` -> ``(["learning", "lr"], 0.01)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ScenarioError(f"--set {text!r}: expected KEY=VALUE, e.g. learning.lr=0.01")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ScenarioError(f"--set {text!r}: the key must be a dotted path like task.num_envs")
    return key.split("."), yaml.safe_load(raw)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A copy of ``data`` with each ``KEY=VALUE`` override set (creating sections as needed)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ScenarioError(f"--set {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return data


def load(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"scenario file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ScenarioError(f"{path}: not valid YAML: {err}") from None
    if isinstance(data, dict):
        data = apply_overrides(data, overrides or [])
    return from_dict(data)


def dump(scenario: Scenario) -> str:
    """The scenario as YAML text."""
    return yaml.safe_dump(scenario.to_dict(), sort_keys=False)
