"""User modules a scenario needs (registered rewards, dotted-path rewards and builders), importable from anywhere.

A scenario names them in ``imports: [mymodule, mypkg.rewards]`` (or ``narla run --import mymodule``). Importing
such a module runs its ``@register_reward`` decorators, so its rewards can then be named like built-in ones.

An entry is ``module`` (found on ``sys.path``; the ``narla`` command puts the working directory there) or
``module@DIR`` (``DIR`` is put on ``sys.path`` first). A run records every module it imported, and the module of
every dotted-path reward or builder, as ``module@DIR`` with ``DIR`` the absolute folder it was found in
(:func:`recorded`), so its ``scenario.yaml`` re-runs and replays from any working directory.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from narla.scenario import Scenario, ScenarioError


def parse_entry(entry: str) -> tuple[str, str | None]:
    """``"mod.sub@/abs/dir"`` -> ``("mod.sub", "/abs/dir")``; ``"mod"`` -> ``("mod", None)``."""
    module, _, root = entry.partition("@")
    return module, (root or None)


def import_module(entry: str, field: str = "imports") -> ModuleType:
    """Import one ``imports`` entry; a failure is one :class:`ScenarioError` naming ``field`` and the module."""
    if not isinstance(entry, str) or not entry.strip():
        raise ScenarioError(f"{field}: expected a module name such as 'myrewards' or 'pkg.mod@/abs/dir', got {entry!r}")
    module, root = parse_entry(entry.strip())
    if root is not None and root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(module)
    except Exception as exc:
        where = f" from {root!r}" if root else " (is its folder the working directory, or on PYTHONPATH?)"
        raise ScenarioError(f"{field}: cannot import module {module!r}{where}: {type(exc).__name__}: {exc}") from exc


def import_all(entries: list[str]) -> list[ModuleType]:
    """Import every entry of a scenario's ``imports`` (in order)."""
    return [import_module(e, f"imports[{i}]") for i, e in enumerate(entries)]


def module_root(module: ModuleType) -> str | None:
    """The absolute ``sys.path`` folder ``module`` was imported from (None for built-in or namespace modules)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    if path.name == "__init__.py":
        path = path.parent
    depth = module.__name__.count(".")
    return str(path.parents[depth])


def _dotted_modules(scenario: Scenario) -> list[str]:
    """Modules named by dotted-path rewards (``"mod:attr"``) and by a dotted-path ``network.builder``."""
    names: list[str] = []
    builder = scenario.network.get("builder") if isinstance(scenario.network, dict) else None
    if isinstance(builder, str) and ":" in builder:
        names.append(builder.partition(":")[0])
    rewards: Any = scenario.rewards
    terms = rewards.get("terms", []) if isinstance(rewards, dict) else rewards
    for term in terms if isinstance(terms, list) else []:
        name = term.get("name") if isinstance(term, dict) else term
        if isinstance(name, str) and ":" in name:
            names.append(name.partition(":")[0])
    return names


def recorded(scenario: Scenario) -> Scenario:
    """``scenario`` with ``imports`` listing, as ``module@DIR``, every module it imports or names by dotted path.

    Call it after the run is built (the modules are imported by then). Modules of narla itself are not listed.
    """
    entries: list[str] = []
    for name in [parse_entry(e)[0] for e in scenario.imports] + _dotted_modules(scenario):
        module = sys.modules.get(name)
        if name.split(".")[0] == "narla" or module is None:
            continue
        root = module_root(module)
        entry = f"{name}@{root}" if root else name
        if entry not in entries:
            entries.append(entry)
    return replace(scenario, imports=entries)
