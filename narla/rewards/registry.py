"""Named rewards: register your own with a decorator, or name one by dotted path ``"package.module:attr"``.

A reward is either a function ``fn(state, **params) -> Tensor[B, N]`` (configured with
``functools.partial``) or a class whose instances are called ``obj(state) -> Tensor[B, N]`` (configured by
``cls(**params)``; a good place to validate parameters and to cache per-wiring tensors).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, TypeVar

import torch

from narla.rewards.state import NetworkState

RewardFn = Callable[[NetworkState], torch.Tensor]
T = TypeVar("T")

_REGISTRY: dict[str, Callable[..., Any]] = {}


class RewardError(ValueError):
    """A reward, or a reward scheme, that cannot be used as configured.

    ``field`` is the config key at fault when the reward is resolved from a scheme: ``"name"`` or ``"params"``.
    """

    def __init__(self, message: str, field: str = "name") -> None:
        super().__init__(message)
        self.field = field


def register_reward(name: str) -> Callable[[T], T]:
    """Decorator: make a reward function or class available under ``name`` (in YAML: ``{name: ...}``)."""
    if not isinstance(name, str) or not name or ":" in name:
        raise RewardError(f"reward name must be a non-empty str without ':', got {name!r}")

    def decorate(obj: T) -> T:
        if not callable(obj):
            raise RewardError(f"reward {name!r}: cannot register {obj!r}, it is not callable")
        if _REGISTRY.get(name, obj) is not obj:
            raise RewardError(f"reward {name!r} is already registered (to {_REGISTRY[name]!r}); pick another name")
        _REGISTRY[name] = obj
        return obj

    return decorate


def tick_local(obj: T) -> T:
    """Decorator: the reward reads only what one tick gives it (``spikes``, ``trace``, ``task_reward``, ``wiring``),
    keeps no state between calls and treats every row of the batch alike, so a rollout may score all its ticks
    at once as rows of one state (:func:`narla.rollout.collect`); ``prev_spikes`` is given too, the other task
    fields are not."""
    obj.tick_local = True
    return obj


def is_tick_local(fn: Callable[..., Any]) -> bool:
    """Whether a resolved reward (a function, a ``functools.partial`` of one, or a class instance) is
    :func:`tick_local`."""
    return bool(getattr(fn.func if isinstance(fn, functools.partial) else fn, "tick_local", False))


def ticks_in_order(obj: T) -> T:
    """Decorator: a reward that keeps state from tick to tick (restarting a copy on ``state.first``) but can score
    several consecutive ticks in one call. Given a state whose rows are ``state.ticks`` ticks of the same copies,
    tick-major, it returns what that many calls, one tick each in order, would return, and keeps the state they
    would leave; it reads what a :func:`tick_local` reward may read, and ``first``. A rollout may then score its
    ticks in windows after collection (:func:`narla.rollout.score_ticks`)."""
    obj.ticks_in_order = True
    return obj


def is_ticks_in_order(fn: Callable[..., Any]) -> bool:
    """Whether a resolved reward is :func:`ticks_in_order` (a class instance or a function marked so)."""
    return bool(getattr(fn.func if isinstance(fn, functools.partial) else fn, "ticks_in_order", False))


def registered_rewards() -> list[str]:
    """The registered reward names, sorted."""
    return sorted(_REGISTRY)


def is_builtin_reward(name: str) -> bool:
    """Whether ``name`` resolves to one of narla's own rewards (defined in ``narla.rewards``), whose reads of the
    :class:`~narla.rewards.state.NetworkState` are known; False for a user's reward or a name that does not resolve."""
    try:
        obj = _lookup(name)
    except RewardError:
        return False
    return getattr(obj, "__module__", "").startswith("narla.rewards.")


def _lookup(name: str) -> Callable[..., Any]:
    """The registered object, or the object a dotted path ``"package.module:attr"`` points to."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" not in name:
        raise RewardError(
            f"unknown reward {name!r}; registered rewards: {', '.join(registered_rewards())}; "
            "or name your own by dotted path 'package.module:attr'"
        )
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise RewardError(f"reward {name!r}: a dotted path must look like 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RewardError(f"reward {name!r}: cannot import module {module_name!r}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardError(f"reward {name!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RewardError(f"reward {name!r}: {module_name}:{attr} is a {type(obj).__name__}, not a callable reward")
    return obj


def _parameters(name: str, obj: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The configurable parameters of a reward (without ``self`` / ``state``) and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError) as exc:
        raise RewardError(f"reward {name!r}: cannot read its signature: {exc}") from exc
    params = list(signature.parameters.values())
    if not inspect.isclass(obj):
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not params or params[0].kind not in positional:
            raise RewardError(f"reward {name!r}: a reward function must take the NetworkState as its first argument")
        params = params[1:]
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = {
        p.name: p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return named, var_kw


def _check_value(name: str, param: inspect.Parameter, value: Any) -> None:
    """Reject a value whose type clearly differs from the parameter's default (number, bool, str)."""
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "a bool"
    elif isinstance(default, Real):
        ok, expected = isinstance(value, Real) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a str"
    else:
        return
    if not ok:
        message = f"reward {name!r}: parameter {param.name!r} must be {expected}, got {value!r}"
        raise RewardError(message, field="params")


def resolve_reward(name: str, params: Mapping[str, Any] | None = None) -> RewardFn:
    """A ready-to-call reward ``fn(state) -> Tensor[B, N]`` from a registered name or ``"package.module:attr"``."""
    if not isinstance(name, str) or not name:
        raise RewardError(f"reward name must be a non-empty str, got {name!r}")
    params = dict(params or {})
    obj = _lookup(name)
    allowed, var_kw = _parameters(name, obj)
    shown = ", ".join(allowed) or "none"
    for key, value in params.items():
        if key not in allowed and not var_kw:
            raise RewardError(f"reward {name!r} has no parameter {key!r}; allowed: {shown}", field="params")
        if key in allowed:
            _check_value(name, allowed[key], value)
    missing = [k for k, p in allowed.items() if p.default is inspect.Parameter.empty and k not in params]
    if missing:
        message = f"reward {name!r}: missing required parameter(s) {', '.join(missing)}; allowed: {shown}"
        raise RewardError(message, field="params")
    if not inspect.isclass(obj):
        return functools.partial(obj, **params) if params else obj
    try:
        instance = obj(**params)
    except (TypeError, ValueError) as exc:
        raise RewardError(f"reward {name!r}: invalid parameters {params}: {exc}", field="params") from exc
    if not callable(instance):
        raise RewardError(f"reward {name!r}: {obj.__name__} instances are not callable; define __call__(self, state)")
    return instance
