"""Scenario files: the single, validated description of a run.

A scenario is YAML with the sections below; every field has a default except ``name``. The sections are pydantic
dataclasses; a validation error becomes one :class:`ScenarioError` that names the offending field by its dotted
path (``learning.lr``) and says what is allowed, and rules across fields (:func:`_check_rules`) are checked before
anything is built. :func:`schema` is the JSON Schema of the file (``narla schema``).

.. code-block:: yaml

    name: cartpole_1layer
    seed: 0
    device: cpu                 # cpu | cuda | cuda:N (unset: $NARLA_DEVICE, else cpu)
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
import json
import os
import re
from dataclasses import asdict, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

_CONFIG = ConfigDict(extra="forbid")
Number = Annotated[float, Strict()]  # a float or an int (stored as float); not a bool, not a string
Positive = Annotated[Number, Field(gt=0)]
Unit = Annotated[Number, Field(ge=0, le=1)]
Count = Annotated[StrictInt, Field(ge=1)]
NonNegative = Annotated[StrictInt, Field(ge=0)]


class ScenarioError(ValueError):
    """A scenario field is missing, unknown, or has a value that is not allowed."""


@dataclass(config=_CONFIG)
class TaskConfig:
    """Which task, how many copies ``B`` run in parallel, and task-specific options."""

    id: StrictStr = "cartpole"
    num_envs: Count = 1
    max_episode_steps: Count | None = None
    options: dict = field(default_factory=dict)


@dataclass(config=_CONFIG)
class NeuronConfig:
    """Each neuron's policy network, its modulatory transfer function (``narla.cooperation``) and its output kind.

    ``output``: ``spike`` (Bernoulli, NaRLA's neurons) or ``rate`` (a continuous value ``tanh(z)``, deterministic
    under ES, Gaussian with a learned per-neuron log-std under policy gradients), for every neuron, or per role
    as a mapping such as ``{hidden: spike, motor: rate}``.

    ``head``: ``logit`` (a binary neuron's MLP ends in one firing logit) or ``softmax`` (it ends in one unit per
    choice, fire/silent, and a softmax, as in the NaRLA paper: :class:`narla.neurons.heads.SoftmaxHeadPopulation`).
    """

    hidden: list[Count] = field(default_factory=lambda: [128, 128])
    activation: Literal["leaky_relu", "leaky_relu_0.3", "relu", "tanh"] = "leaky_relu"
    head: Literal["logit", "softmax"] = "logit"
    amtf: Literal["cooperation", "cooperation_relu6", "additive", "feedforward", "gain"] = "feedforward"
    output: Literal["spike", "rate"] | dict[Literal["hidden", "motor"], Literal["spike", "rate"]] = "spike"


@dataclass(config=_CONFIG)
class ReadoutConfig:
    """How motor neurons form the task action (``narla.readout``)."""

    kind: Literal["choice", "vote", "rate", "squash", "value"] = "choice"
    motor_per_group: Count = 1


@dataclass(config=_CONFIG)
class ContextConfig:
    """Context sources of every neuron (``narla.context``) and how C is integrated; all sources off by default.

    ``proximal``/``distal``/``feedback`` add graph context edges; ``universal_position`` is the width of the
    positional encoding of the neuron index (0 = off); ``universal_action`` feeds the previous task action.
    (The ``attention_neuron`` / ``cooperator`` builders wire their own context: see ``narla.cooperator``.)
    """

    proximal: StrictBool = False
    distal: StrictBool = False
    feedback: StrictBool = False
    universal_position: NonNegative = 0
    universal_action: StrictBool = False


@dataclass(config=_CONFIG)
class LearningConfig:
    """The learning rule and its hyper-parameters (every neuron learns from its own reward).

    ``es`` (per-neuron evolution strategies, :mod:`narla.learning.es`) uses ``lr``, ``sigma`` (perturbation
    scale), ``population`` (M antithetic pairs; ``task.num_envs`` must be a multiple of 2M) and
    ``fitness_shaping``; ``gamma`` and the gradient options do not apply to it. ``cma_es`` (whole-network
    CMA-ES, :mod:`narla.learning.cmaes`) uses ``sigma`` (initial step size) and ``population`` (members;
    ``task.num_envs`` must be a multiple of it, the quotient is the repeats per member). ``chunk_ticks``
    (``reinforce``): re-evaluate an update's ticks this many at a time, which bounds its memory
    (:mod:`narla.learning.reinforce`); null: all at once. ``chunk_columns`` (``reinforce``, instead of
    ``chunk_ticks``): re-evaluate windows of ticks holding at most this many valid columns (tick × copy), a tick
    holding more cut into runs of its copies: the same bound in fewer windows when episodes end at different ticks,
    at any batch size.
    """

    rule: Literal["reinforce", "actor_critic", "es", "cma_es"] = "reinforce"
    lr: Positive = 1e-3
    gamma: Unit = 0.99
    normalize_returns: StrictBool = True
    entropy_coef: Number = 0.0
    gae_lambda: Unit = 0.95
    value_coef: Number = 0.5
    max_grad_norm: Positive | None = None
    chunk_ticks: Count | None = None
    chunk_columns: Count | None = None
    sigma: Positive = 0.05
    population: Count = 8
    fitness_shaping: Literal["centered_rank", "none"] = "centered_rank"


@dataclass(config=_CONFIG)
class TrainingConfig:
    """When to stop and what to keep. ``solve_*`` default to the task's own criterion.

    Every episode count here (``max_episodes``, ``checkpoint_every``, ``solve_after``, the solve window) counts
    episodes of one environment copy: a batch of ``task.num_envs`` copies adds ``num_envs`` episodes.

    ``checkpoint_every``: write ``checkpoint.pt`` (the whole run state, :mod:`narla.checkpoint`) each time
    this many more episodes have finished, and at the end; ``narla run --resume DIR`` continues from it.
    ``solve_after``: the solve rule is checked only once more than this many episodes have finished (the NaRLA
    paper's code: 1,000). ``solve_strict``: the window's mean must exceed the threshold (``>``), not reach it.
    ``max_wall_s``: stop after this many seconds of training (status ``time_cap``); null: no limit.
    ``max_env_steps``: stop once the finished episodes' lengths (environment steps of all copies) sum to at
    least this many (status ``max_env_steps``): a budget of experience, for comparing learners whose episodes
    differ in length; null: no limit.
    ``test_every``: every this many updates (ES: generations), play ``test_episodes`` fresh episodes with the
    current policy (ES: the mean parameters, no perturbation) and append the score to ``tests.csv``; null: never.
    ``log_neurons``: also write ``neurons.csv``, each neuron's firing rate and return per episode.
    ``analyze_every``: every this many episodes, append study metrics (firing, alignment, correlation, lesion
    effects of a sample of neurons) to ``emergence.csv`` (:mod:`narla.study.tracking`); null: never.
    ``log``: where the per-episode record goes: ``csv`` (``episodes.csv``, always) and optionally ``tensorboard``
    (scalars in ``RUN_DIR/tensorboard``, :mod:`narla.tblog`).
    ``init_from``: a results directory of an earlier run of the same network (its ``model.pt``, else its
    ``checkpoint.pt``); training starts from its parameters and observation statistics, with a fresh learner
    (optimizer or evolution strategy, seeded by this scenario). Null: the network's own initialisation.
    """

    max_episodes: Count = 20000
    solve_window: Count | None = None
    solve_threshold: Number | None = None
    stop_when_solved: StrictBool = True
    checkpoint_every: Count | None = None
    solve_after: NonNegative = 0
    solve_strict: StrictBool = False
    max_wall_s: Positive | None = None
    max_env_steps: Count | None = None
    test_every: Count | None = None
    test_episodes: Count = 16
    log_neurons: StrictBool = False
    analyze_every: Count | None = None
    log: list[Literal["csv", "tensorboard"]] = field(default_factory=lambda: ["csv"])
    init_from: StrictStr | None = None


DEVICE_PATTERN = r"cpu|cuda(:\d+)?"
Device = Annotated[StrictStr, Field(pattern=f"^({DEVICE_PATTERN})$")]
ImportEntry = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(@.+)?$")]


@dataclass(config=_CONFIG)
class Scenario:
    """A whole run. ``network`` holds ``builder`` plus that builder's keyword arguments."""

    name: StrictStr
    seed: StrictInt = 0
    device: Device = "cpu"
    propagation: Literal["sweep", "delay"] = "sweep"
    task: TaskConfig = field(default_factory=TaskConfig)
    network: dict = field(default_factory=lambda: {"builder": "layered", "layers": 1})
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    rewards: Any = field(default_factory=lambda: ["task"])
    training: TrainingConfig = field(default_factory=TrainingConfig)
    imports: list[ImportEntry] = field(default_factory=list)  # user modules to import first (narla.imports)

    def to_dict(self) -> dict:
        """Plain data (YAML-ready) that :func:`from_dict` turns back into an equal scenario."""
        return asdict(self)


_ADAPTER = TypeAdapter(Scenario)

# What a value must be, by pydantic error type (the message then adds ", got VALUE").
_NEEDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list", "dict_type": "a mapping",
    "dataclass_type": "a mapping", "string_pattern_mismatch": None,
}
_PATTERNS = {"device": "'cpu', 'cuda' or 'cuda:N'",
             "imports": "a module name such as 'myrewards', or 'pkg.mod@/abs/dir'"}


def _path(loc: tuple) -> str:
    """``("neuron", "hidden", 1)`` -> ``neuron.hidden[1]`` (pydantic's union-member tags are left out)."""
    parts: list[str] = []
    for item in _plain(loc):
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _plain(loc: tuple) -> tuple:
    """``loc`` without the tags pydantic inserts for the members of a union (``literal[...]``, ``[key]``)."""
    return tuple(item for item in loc if isinstance(item, int) or ("[" not in item and "(" not in item))


_SECTIONS = {"task": TaskConfig, "neuron": NeuronConfig, "readout": ReadoutConfig, "context": ContextConfig,
             "learning": LearningConfig, "training": TrainingConfig}


def _section(loc: tuple) -> type | None:
    """The config class that holds the field at ``loc`` (for the list of its allowed fields)."""
    if len(loc) == 1:
        return Scenario
    if len(loc) == 2:
        return _SECTIONS.get(loc[0])
    return None


def _message(error: dict) -> str:
    """One pydantic error as narla's message: the field's dotted path, what is allowed, and what was given."""
    kind, loc, given = error["type"], _plain(tuple(error["loc"])), error.get("input")
    ctx = error.get("ctx") or {}
    path = _path(loc) or "scenario"
    if kind == "missing":
        return f"{path}: missing required field" + (" (a short name for the run)" if path == "name" else "")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        section = _section(loc)
        allowed = f"; allowed: {', '.join(f.name for f in fields(section))}" if section else ""
        return f"{path}: unknown field{allowed}"
    if kind == "literal_error":
        allowed = re.sub(r"'([^']*)'", r"\1", ctx.get("expected", "")).replace(" or ", ", ")
        return f"{path}: {given!r} is not allowed; allowed: {allowed}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        section = _section(loc)
        spec = next((f for f in fields(section) if f.name == loc[-1]), None) if section else None
        if spec is not None and spec.type == "Unit":
            return f"{path}: must be in [0, 1], got {given!r}"
        op = {"greater_than": "> {gt:g}", "greater_than_equal": ">= {ge:g}", "less_than": "< {lt:g}",
              "less_than_equal": "<= {le:g}"}[kind].format(**ctx)
        return f"{path}: must be {op}, got {given!r}"
    if kind == "string_pattern_mismatch":
        top = str(loc[0]) if loc else ""
        return f"{path}: must be {_PATTERNS.get(top, 'a valid value')}, got {given!r}"
    if kind in _NEEDS:
        return f"{path}: must be {_NEEDS[kind]}, got {given!r}"
    return f"{path}: {error['msg'][0].lower()}{error['msg'][1:]}, got {given!r}"


def schema() -> dict:
    """The JSON Schema of a scenario file (``narla schema``): editors complete and check YAML with it."""
    out = _ADAPTER.json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "narla scenario"
    return out


TASK_ACTIONS = {"cartpole": "discrete", "swingup": "box", "ant": "box"}  # gym:ID tasks are checked when built


def _layer_count(network: dict) -> int | None:
    """Layers of a ``layered`` network (hidden layers + the motor layer), None for other builders."""
    if network.get("builder", "layered") != "layered":
        return None
    if isinstance(network.get("hidden_layers"), int):
        return network["hidden_layers"] + 1
    layers = network.get("layers", 1)
    return layers if isinstance(layers, int) else None


def reward_terms(rewards: Any) -> list:
    """The term specs of a ``rewards`` section (long mapping form or short list; None: ``[task]``), as written:
    names or mappings; ``[]`` when the section is malformed (building its scheme says how)."""
    if rewards is None:
        return ["task"]
    terms = rewards.get("terms", []) if isinstance(rewards, dict) else rewards
    return terms if isinstance(terms, list) else []


def _where_layers(rewards: Any) -> list[tuple[str, Any]]:
    """``(field path, layer)`` of every ``where.layers`` entry of the reward terms."""
    found = []
    for i, term in enumerate(reward_terms(rewards)):
        where = term.get("where") if isinstance(term, dict) else None
        layers = where.get("layers") if isinstance(where, dict) else None
        for j, layer in enumerate(layers if isinstance(layers, list) else [layers] if layers is not None else []):
            found.append((f"rewards.terms[{i}].where.layers[{j}]", layer))
    return found


def _check_rules(s: Scenario) -> None:
    """Rules across fields, checked before anything is built (one :class:`ScenarioError` each)."""
    builder = s.network.get("builder", "layered")
    if not isinstance(builder, str):
        raise ScenarioError(f"network.builder: must be a builder name or 'module:function', got {builder!r}")
    rule, n, pop = s.learning.rule, s.task.num_envs, s.learning.population
    if s.learning.chunk_ticks is not None and s.learning.chunk_columns is not None:
        raise ScenarioError("learning.chunk_columns: set it or learning.chunk_ticks, not both (each bounds an "
                            "update's memory; chunk_columns in fewer windows)")
    if rule == "es" and n % (2 * pop):
        raise ScenarioError(f"task.num_envs: learning.rule es with learning.population {pop} needs a multiple of "
                            f"2 x population = {2 * pop} environment copies (antithetic pairs), got {n}")
    if rule == "cma_es" and n % pop:
        raise ScenarioError(f"task.num_envs: learning.rule cma_es with learning.population {pop} needs a multiple "
                            f"of {pop} environment copies (members x repeats), got {n}")
    action = TASK_ACTIONS.get(s.task.id)
    kind = s.readout.kind
    if action == "discrete" and kind in ("rate", "squash"):
        raise ScenarioError(f"readout.kind: {kind!r} drives a continuous (Box) action, task {s.task.id!r} has a "
                            "discrete one; allowed: choice, vote, value")
    if action == "box" and kind in ("choice", "vote"):
        raise ScenarioError(f"readout.kind: {kind!r} picks a discrete action, task {s.task.id!r} has a continuous "
                            "(Box) one; allowed: rate, squash, value")
    outputs = s.neuron.output if isinstance(s.neuron.output, dict) else {"hidden": s.neuron.output,
                                                                          "motor": s.neuron.output}
    if outputs.get("motor", "spike") == "rate" and kind != "value" and builder not in ("attention_neuron",
                                                                                        "cooperator"):
        raise ScenarioError(f"readout.kind: rate motor neurons need readout value, got {kind!r}")
    if s.neuron.head == "softmax" and (rule == "actor_critic" or s.neuron.amtf != "feedforward"
                                       or "rate" in outputs.values()):
        raise ScenarioError("neuron.head: 'softmax' needs neuron.amtf 'feedforward', spiking neurons and a "
                            "policy-only rule (not actor_critic)")
    if builder in ("attention_neuron", "cooperator") and s.training.analyze_every is not None:
        raise ScenarioError(f"training.analyze_every: lesions act on stage-wise networks, not network.builder "
                            f"{builder!r}; set it to null")
    if builder in ("attention_neuron", "cooperator") and rule not in ("es", "cma_es"):
        raise ScenarioError(f"learning.rule: {rule!r} cannot train network.builder {builder!r} (deterministic rate "
                            "neurons with memory); allowed: es, cma_es")
    count = _layer_count(s.network)
    if count is not None:
        for path, layer in _where_layers(s.rewards):
            if isinstance(layer, int) and not isinstance(layer, bool) and not (1 <= abs(layer) <= count):
                raise ScenarioError(f"{path}: layer {layer} does not exist; the network has {count} layers "
                                    f"(1..{count}, or -1..-{count} from the last)")
    t = s.training
    if "csv" not in t.log:
        raise ScenarioError(f"training.log: must be a list that includes csv (episodes.csv is the run's record), "
                            f"e.g. [csv, tensorboard], got {t.log!r}")


DEVICE_ENV = "NARLA_DEVICE"  # the device of scenarios that do not name one (``pytest --device`` sets it)


def default_device() -> str:
    """The device a scenario without ``device`` gets: ``$NARLA_DEVICE`` when set (checked), else ``cpu``."""
    value = os.environ.get(DEVICE_ENV) or "cpu"
    if not re.fullmatch(DEVICE_PATTERN, value):
        raise ScenarioError(f"{DEVICE_ENV}: must be {_PATTERNS['device']}, got {value!r}")
    return value


def from_dict(data: Any) -> Scenario:
    """Validate plain data into a :class:`Scenario` (raises :class:`ScenarioError` with the first problem)."""
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario: must be a mapping of sections, got {type(data).__name__}")
    if "device" not in data and os.environ.get(DEVICE_ENV):
        data = {**data, "device": default_device()}
    try:
        scenario = _ADAPTER.validate_python(data)
    except ValidationError as err:
        errors = err.errors()
        # A union (neuron.output) reports one error per member; the deepest is the member the value was meant for.
        raise ScenarioError(_message(max(errors, key=lambda e: len(e["loc"])))) from None
    scenario.network.setdefault("builder", "layered")
    _check_rules(scenario)
    return scenario


def output_kinds(output: Any) -> dict[str, str]:
    """``neuron.output`` -> ``{"hidden": kind, "motor": kind}`` (unnamed roles spike)."""
    if isinstance(output, str):
        return {"hidden": output, "motor": output}
    return {"hidden": output.get("hidden", "spike"), "motor": output.get("motor", "spike")}


def schema_json() -> str:
    """:func:`schema` as indented JSON text."""
    return json.dumps(schema(), indent=2) + "\n"


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
