"""A reward scheme: named rewards x weights x where they apply x phases by episode.

Built from the ``rewards:`` section of a scenario. Long form::

    rewards:
      trace_decay: 0.9                      # decay d of the activity trace the engine keeps
      trace_init: 0.5                       # the trace's value at an episode's start (no history yet)
      terms:
        - task                              # a bare name: weight 1, everywhere
        - {name: activity, weight: 0.5, where: {roles: [hidden]}}
        - {name: sparsity, params: {target: 0.2}, where: {layers: [1, 2]}}
        - {name: mypkg.rewards:curiosity, params: {scale: 0.1}, label: curiosity}
      phases:                               # optional; episode < until_episode selects a phase
        - {until_episode: 1000, terms: [activity, sparsity, prediction, trace]}
        - {terms: all}                      # open-ended; without it, all terms are active after the last phase

Short form: ``rewards: [task, activity]`` (a list of terms; trace_decay 0.9, trace_init 0.5, no phases).

The reward of neuron i is ``r_i = sum_k active_k(episode) * w_k * m_k[i] * reward_k(state)[:, i]`` with
``m_k`` the 0/1 mask of ``where`` (all neurons without it). ``where`` selects by ``roles`` (hidden, motor),
``layers`` (1-based; negative counts from the last), ``groups`` (``wiring.group_names``) and ``neurons`` (names);
keys combine with AND, the values of one key with OR. A term's ``label`` (default: the reward name, or the
``attr`` of a dotted path) names its component and is what ``phases`` refer to. ``episode`` is
``state.episode`` (episodes finished before the batch started), so phases switch between batches; in a batch of
seeds (:mod:`narla.runs`), whose runs are at different episodes, ``state.terms_mask`` gives each copy its phase
instead (``state.episode`` is 0 there, which is why such batches take narla's own rewards only). At a switch
the trainer resets the learner's optimizer state (``narla.training.Trainer``): a neuron that got no reward in
one phase would otherwise carry Adam moments with a stale bias correction and take oversized first steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch

from narla.graph import ROLES
from narla.rewards.registry import RewardError, RewardFn, is_tick_local, is_ticks_in_order, resolve_reward
from narla.rewards.state import NetworkState
from narla.wiring import Wiring

DEFAULT_TRACE_DECAY = 0.9
DEFAULT_TRACE_INIT = 0.5
SCHEME_KEYS = ("trace_decay", "trace_init", "terms", "phases")
TERM_KEYS = ("name", "weight", "params", "where", "label")
WHERE_KEYS = ("roles", "layers", "groups", "neurons")
PHASE_KEYS = ("until_episode", "terms")


@dataclass
class Term:
    """One reward of a scheme: ``weight * mask * fn(state)``; ``mask`` is [N] or None (everywhere)."""

    label: str
    reward: str
    fn: RewardFn
    weight: float
    mask: torch.Tensor | None


@dataclass
class Phase:
    """The terms active while ``episode < until_episode`` (``None``: open-ended)."""

    until_episode: int | None
    terms: list[str]


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(path: str, message: str) -> RewardError:
    return RewardError(f"{path}: {message}")


def _check_keys(path: str, data: Mapping, allowed: Sequence[str]) -> None:
    for key in data:
        if key not in allowed:
            raise _fail(path, f"unknown key {key!r}; allowed: {', '.join(allowed)}")


def _as_list(path: str, value: Any, what: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(path, f"must be a list of {what}, got {value!r}")
    return list(value)


def _selection(path: str, value: Any, what: str) -> list:
    """A non-empty list for one ``where`` key."""
    items = _as_list(path, value, what)
    if not items:
        raise _fail(path, f"must list at least one of the {what}; leave the key out to select all neurons")
    return items


def _where_mask(path: str, where: Any, wiring: Wiring | None) -> torch.Tensor | None:
    """The [N] float mask of the neurons a ``where`` selects (AND across keys, OR within a key); without a
    ``wiring``, only what needs no network is checked (its keys and roles) and None is returned."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise _fail(path, f"must be a mapping with keys {', '.join(WHERE_KEYS)}, got {where!r}")
    _check_keys(path, where, WHERE_KEYS)
    roles = _selection(f"{path}.roles", where["roles"], "roles") if "roles" in where else []
    for i, role in enumerate(roles):
        if role not in ROLES:
            raise _fail(f"{path}.roles[{i}]", f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
    if wiring is None:
        return None
    device = wiring.layer.device
    mask = torch.ones(wiring.num_neurons, dtype=torch.bool, device=device)
    if "roles" in where:
        motor = wiring.motor
        mask &= (motor & ("motor" in roles)) | (~motor & ("hidden" in roles))
    if "layers" in where:
        layers = _selection(f"{path}.layers", where["layers"], "layer numbers")
        count = wiring.num_layers
        chosen = []
        for i, layer in enumerate(layers):
            if not _is_int(layer) or not (1 <= layer <= count or -count <= layer <= -1):
                raise _fail(
                    f"{path}.layers[{i}]",
                    f"must be a layer number 1..{count} (or -1..-{count} counting from the last), got {layer!r}",
                )
            chosen.append(layer if layer > 0 else count + 1 + layer)
        mask &= torch.isin(wiring.layer, torch.tensor(chosen, dtype=torch.long, device=device))
    if "groups" in where:
        groups = _selection(f"{path}.groups", where["groups"], "group names")
        ids = []
        for i, group in enumerate(groups):
            if group not in wiring.group_names:
                raise _fail(f"{path}.groups[{i}]", f"unknown group {group!r}; allowed: {wiring.group_names}")
            ids.append(wiring.group_names.index(group))
        mask &= torch.isin(wiring.group, torch.tensor(ids, dtype=torch.long, device=device))
    if "neurons" in where:
        names = _selection(f"{path}.neurons", where["neurons"], "neuron names")
        picked = torch.zeros_like(mask)
        for i, name in enumerate(names):
            if name not in wiring.neuron_names:
                raise _fail(f"{path}.neurons[{i}]", f"unknown neuron {name!r}; see wiring.neuron_names")
            picked[wiring.neuron_names.index(name)] = True
        mask &= picked
    return mask.float()


def _term(path: str, spec: Any, wiring: Wiring | None) -> Term:
    """One term from a bare name or a mapping ``{name, weight, params, where, label}``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise _fail(path, f"must be a reward name or a mapping with keys {', '.join(TERM_KEYS)}, got {spec!r}")
    _check_keys(path, spec, TERM_KEYS)
    if "name" not in spec:
        raise _fail(path, "missing 'name': a registered reward or a dotted path 'package.module:attr'")
    name = spec["name"]
    if not isinstance(name, str) or not name:
        raise _fail(f"{path}.name", f"must be a reward name (str), got {name!r}")
    weight = spec.get("weight", 1.0)
    if not _is_number(weight) or not math.isfinite(weight):
        raise _fail(f"{path}.weight", f"must be a number, got {weight!r}")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise _fail(f"{path}.params", f"must be a mapping of parameter names to values, got {params!r}")
    label = spec.get("label", name.rpartition(":")[2])
    if not isinstance(label, str) or not label:
        raise _fail(f"{path}.label", f"must be a non-empty str, got {label!r}")
    try:
        fn = resolve_reward(name, params)
    except RewardError as exc:
        raise _fail(f"{path}.{exc.field}", str(exc)) from exc
    mask = _where_mask(f"{path}.where", spec.get("where"), wiring)
    return Term(label=label, reward=name, fn=fn, weight=float(weight), mask=mask)


def _phases(path: str, specs: Any, labels: list[str]) -> list[Phase]:
    """Phases in order; each ``until_episode`` must exceed the previous one; only the last may omit it."""
    phases: list[Phase] = []
    previous = 0
    for i, spec in enumerate(_as_list(path, specs, "phases")):
        where = f"{path}[{i}]"
        if not isinstance(spec, Mapping):
            raise _fail(where, f"must be a mapping with keys {', '.join(PHASE_KEYS)}, got {spec!r}")
        _check_keys(where, spec, PHASE_KEYS)
        until = spec.get("until_episode")
        if until is None and i != len(specs) - 1:
            raise _fail(f"{where}.until_episode", "required on every phase but the last")
        if until is not None and (not _is_int(until) or until <= previous):
            raise _fail(f"{where}.until_episode", f"must be an int > {previous}, got {until!r}")
        if "terms" not in spec:
            raise _fail(where, f"missing 'terms': a list of term labels ({', '.join(labels)}) or 'all'")
        terms = spec["terms"]
        if terms == "all":
            terms = list(labels)
        for j, label in enumerate(_as_list(f"{where}.terms", terms, "term labels, or 'all'")):
            if label not in labels:
                raise _fail(f"{where}.terms[{j}]", f"unknown term {label!r}; allowed: {', '.join(labels)}, or 'all'")
        phases.append(Phase(until_episode=until, terms=list(terms)))
        previous = until if until is not None else previous
    return phases


class RewardScheme:
    """Weighted, masked, phased sum of rewards: ``scheme(state) -> (total [B, N], {label: [B, N]})``."""

    def __init__(
        self,
        terms: list[Term],
        phases: list[Phase] | None = None,
        trace_decay: float = DEFAULT_TRACE_DECAY,
        trace_init: float = DEFAULT_TRACE_INIT,
    ):
        self.terms = terms
        self.phases = phases or []
        self.trace_decay = trace_decay
        self.trace_init = trace_init

    def update_trace(self, trace: torch.Tensor, spikes: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """One tick of the activity trace: ``x <- d * x + (1 - d) * s`` with ``x = trace_init`` before a first tick.

        ``trace``/``spikes`` [B, N], ``first`` [B] (True on an episode's first tick). Starting from the
        midpoint 0.5 (the default) means "no history": constant firing and constant silence then leave the
        band of :class:`narla.rewards.builtin.Trace` after the same number of ticks.
        """
        d = self.trace_decay
        start = torch.where(first.unsqueeze(1), self.trace_init, trace)
        return d * start + (1.0 - d) * spikes

    def trace_ticks(self, trace: torch.Tensor, spikes: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """``K`` ticks of :meth:`update_trace` at once, the same numbers bit for bit: ``[K, B, N]``, the trace after
        each tick of ``spikes[K, B, N]``, from ``trace[B, N]`` before the first (``first[K, B]``).

        The recurrence still runs tick by tick, but ``(1 - d) * s`` is one product over all ticks and the restart is
        applied only at ticks where some copy starts an episode (one host copy of ``K`` flags), two small calls a
        tick instead of five (for scoring a collected rollout, :func:`narla.rollout.score_ticks`)."""
        d = self.trace_decay
        out = torch.empty_like(spikes)
        fresh = (1.0 - d) * spikes
        for k, starts in enumerate(first.any(1).tolist()):
            start = torch.where(first[k].unsqueeze(1), self.trace_init, trace) if starts else trace
            trace = torch.add(d * start, fresh[k], out=out[k])
        return out

    @classmethod
    def from_config(cls, config: Any, wiring: Wiring | None, path: str = "rewards") -> RewardScheme:
        """Build from the ``rewards:`` section (long mapping form or short list form; None means ``[task]``).
        ``wiring`` None checks the section without a network (its terms' ``where`` selections checked as far as no
        network is needed, and not applied): for checking scenarios before they are built."""
        if config is None:
            config = ["task"]
        if not isinstance(config, Mapping):
            config = {"terms": _as_list(path, config, "reward terms, or a mapping with keys " + ", ".join(SCHEME_KEYS))}
        _check_keys(path, config, SCHEME_KEYS)
        decay = config.get("trace_decay", DEFAULT_TRACE_DECAY)
        if not _is_number(decay) or not 0.0 <= decay < 1.0:
            raise _fail(f"{path}.trace_decay", f"must be a number in [0, 1), got {decay!r}")
        init = config.get("trace_init", DEFAULT_TRACE_INIT)
        if not _is_number(init) or not 0.0 <= init <= 1.0:
            raise _fail(f"{path}.trace_init", f"must be a number in [0, 1], got {init!r}")
        if "terms" not in config:
            raise _fail(path, "missing 'terms': a list of rewards, e.g. [task, activity]")
        specs = _as_list(f"{path}.terms", config["terms"], "reward terms")
        if not specs:
            raise _fail(f"{path}.terms", "must list at least one reward, e.g. [task]")
        terms = [_term(f"{path}.terms[{i}]", spec, wiring) for i, spec in enumerate(specs)]
        labels: list[str] = []
        for i, term in enumerate(terms):
            if term.label in labels:
                raise _fail(f"{path}.terms[{i}]", f"duplicate term {term.label!r}; give each a distinct 'label'")
            labels.append(term.label)
        phases = _phases(f"{path}.phases", config["phases"], labels) if config.get("phases") is not None else []
        return cls(terms, phases, float(decay), float(init))

    @property
    def names(self) -> list[str]:
        """Component names (term labels), in order."""
        return [t.label for t in self.terms]

    @property
    def tick_local(self) -> bool:
        """Whether every term is :func:`~narla.rewards.registry.tick_local`: then the trace is the only state, and a
        rollout's ticks may be scored together after it is collected."""
        return all(is_tick_local(term.fn) for term in self.terms)

    @property
    def scores_in_bulk(self) -> bool:
        """Whether a collected rollout's ticks may be scored together, in windows of consecutive ticks: every term is
        :func:`~narla.rewards.registry.tick_local` or :func:`~narla.rewards.registry.ticks_in_order` (as
        ``paper_trace``), so narla's own rewards and the paper's all may."""
        return all(is_tick_local(term.fn) or is_ticks_in_order(term.fn) for term in self.terms)

    def active_terms(self, episode: int) -> list[str]:
        """Labels of the terms active in ``episode`` (all terms without phases or after the last phase)."""
        for phase in self.phases:
            if phase.until_episode is None or episode < phase.until_episode:
                return [label for label in self.names if label in phase.terms]
        return self.names

    def __call__(self, state: NetworkState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total reward [B, N] and each term's weighted, masked contribution [B, N] (zeros when inactive).

        The active terms are those of ``state.episode``; with ``state.terms_mask`` ``[K, B]`` (copies at different
        episodes, :mod:`narla.runs`) every term is computed and applies only in the copies its row marks, with
        exactly the values a scheme called on those copies alone gives them.
        """
        spikes = state.spikes
        per_copy = state.terms_mask
        active = set(self.names if per_copy is not None else self.active_terms(state.episode))
        total: torch.Tensor | None = None
        components: dict[str, torch.Tensor] = {}
        for k, term in enumerate(self.terms):
            if term.label not in active:
                components[term.label] = torch.zeros_like(spikes)
                continue
            try:
                value = term.fn(state)
            except RewardError:
                raise
            except Exception as exc:  # a user's reward failing: one message naming it
                raise RewardError(
                    f"reward {term.label!r} ({term.reward}) raised {type(exc).__name__}: {exc}"
                ) from exc
            self._check(term, value, spikes)
            if term.weight != 1.0:  # a weight of 1 changes no bit
                value = term.weight * value
            if term.mask is not None:
                value = value * term.mask.to(spikes.device)
            if per_copy is not None:
                value = torch.where(per_copy[k].unsqueeze(1), value, 0.0)
            components[term.label] = value
            total = value.clone() if total is None else total + value
        return (torch.zeros_like(spikes) if total is None else total), components

    def select_columns(self, columns: torch.Tensor) -> None:
        """Keep only the copies ``columns`` in the state of stateful rewards (those defining ``select_columns``), as
        when batched runs drop a finished run's copies while the others are mid-episode."""
        for term in self.terms:
            select = getattr(term.fn, "select_columns", None)
            if select is not None:
                select(columns)

    @staticmethod
    def _check(term: Term, value: Any, spikes: torch.Tensor) -> None:
        """Metadata checks only (no host sync): a floating [B, N] tensor on the spikes' device."""
        name = f"reward {term.label!r} ({term.reward})"
        if not isinstance(value, torch.Tensor):
            raise RewardError(f"{name} must return a torch.Tensor [B, N], got {type(value).__name__}")
        if value.shape != spikes.shape:
            raise RewardError(f"{name} returned shape {list(value.shape)}; expected [B, N] = {list(spikes.shape)}")
        if not value.dtype.is_floating_point:
            raise RewardError(f"{name} returned dtype {value.dtype}; expected a floating dtype like {spikes.dtype}")
        if value.device != spikes.device:
            raise RewardError(f"{name} returned a tensor on {value.device}; expected {spikes.device} (as the spikes)")

    def check_finite(self, components: Mapping[str, torch.Tensor]) -> None:
        """Raise naming the first component holding NaN or inf (syncs: call once per batch, not per tick)."""
        for label, value in components.items():
            if not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise RewardError(
                    f"reward {label!r} produced {bad} non-finite value(s) (NaN or inf) of {value.numel()}; "
                    "check its formula and parameters"
                )

    def __repr__(self) -> str:
        terms = ", ".join(f"{t.weight:g}*{t.label}" + ("[where]" if t.mask is not None else "") for t in self.terms)
        return (
            f"RewardScheme({terms}; phases={len(self.phases)}, "
            f"trace_decay={self.trace_decay}, trace_init={self.trace_init})"
        )
