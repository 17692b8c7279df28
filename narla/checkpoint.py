"""Checkpoints of a whole training run, and resuming from them.

A checkpoint (``checkpoint.pt`` in the results directory) holds everything the next batch depends on, so a run
that stops after episode E and is resumed continues exactly as the uninterrupted run would have (on CPU, same
seed):

- ``population``: every neuron's parameters (``state_dict``);
- ``learner``: the optimizer state (Adam moments and step counts), plus, for ES, the current perturbations and
  the noise generator (:meth:`narla.learning.es.PerNeuronES.state_dict`);
- ``normalizer``: the task's running observation statistics, where the task has a normalizer (Ant);
- ``rng``: the global torch RNG, the engine's sampling generator and the task's start-state generator;
- ``episodes``, ``returns``, ``solved_at``, ``wall_time_s``: the training history so far.

Checkpoints are taken between batches. :func:`narla.rollout.collect` resets every copy at the start of a batch,
so no episode is in flight then. Gymnasium tasks running in worker processes (Ant) keep their start-state
generators inside the workers; those are not captured, so a resumed Ant run matches the original in
distribution but not bit for bit.

The file is written to ``checkpoint.pt.tmp`` first and then renamed over the old one, so a crash never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from narla.scenario import ScenarioError

if TYPE_CHECKING:
    from narla.training import Run, Trainer

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def learner_state(learner: Any) -> dict:
    """The learner's own state: its ``state_dict()`` if it has one, else its optimizer's."""
    if hasattr(learner, "state_dict"):
        return learner.state_dict()
    return {"optimizer": learner.optimizer.state_dict()}


def load_learner_state(learner: Any, state: dict) -> None:
    """Inverse of :func:`learner_state`."""
    if hasattr(learner, "load_state_dict"):
        learner.load_state_dict(state)
    else:
        learner.optimizer.load_state_dict(state["optimizer"])


def rng_state(run: Run) -> dict[str, torch.Tensor]:
    """The random generators a run draws from: global torch, the engine's, the task's (where it has one)."""
    state = {"torch": torch.get_rng_state()}
    if run.engine.generator is not None:
        state["engine"] = run.engine.generator.get_state()
    task_generator = getattr(run.task, "generator", None)
    if isinstance(task_generator, torch.Generator):
        state["task"] = task_generator.get_state()
    return state


def load_rng_state(run: Run, state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if "engine" in state:
        run.engine.generator.set_state(state["engine"])
    if "task" in state:
        run.task.generator.set_state(state["task"])


def normalizer_of(run: Run) -> torch.nn.Module | None:
    """The task's running observation normalizer, or None."""
    return getattr(run.task, "normalizer", None)


def save_checkpoint(trainer: Trainer, path: str | Path, wall_time_s: float = 0.0) -> None:
    """Write the whole run state of ``trainer`` to ``path`` atomically (see the module doc)."""
    run = trainer.run
    normalizer = normalizer_of(run)
    state = {
        "format": FORMAT,
        "scenario": trainer.scenario.to_dict(),
        "episodes": len(trainer.returns),
        "returns": list(trainer.returns),
        "solved_at": trainer.solved_at,
        "wall_time_s": wall_time_s,
        "population": run.engine.population.state_dict(),
        "learner": learner_state(run.learner),
        "normalizer": normalizer.state_dict() if normalizer is not None else None,
        "rng": rng_state(run),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(trainer: Trainer, path: str | Path) -> dict:
    """Restore the run state saved by :func:`save_checkpoint` into ``trainer``; returns the raw checkpoint."""
    state = torch.load(path, map_location=trainer.run.device, weights_only=True)
    if state.get("format") != FORMAT:
        raise ScenarioError(f"{path}: not a narla checkpoint of format {FORMAT}")
    run = trainer.run
    run.engine.population.load_state_dict(state["population"])
    load_learner_state(run.learner, state["learner"])
    normalizer = normalizer_of(run)
    if normalizer is not None and state["normalizer"] is not None:
        normalizer.load_state_dict(state["normalizer"])
    rng = {k: v.cpu() if k == "torch" else v for k, v in state["rng"].items()}
    load_rng_state(run, rng)
    trainer.returns = list(state["returns"])
    trainer.solved_at = state["solved_at"]
    return state


def truncate_csv(path: Path, rows: int) -> None:
    """Keep the header and the first ``rows`` data rows of ``path`` (write-then-rename; a no-op if absent)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(lines[: rows + 1])
    os.replace(tmp, path)


def resume(out_dir: str | Path, overrides: list[str] | None = None, progress: bool = True) -> Trainer:
    """A :class:`~narla.training.Trainer` that continues the run in ``out_dir`` from its checkpoint.

    The scenario is ``out_dir/scenario.yaml`` (``overrides`` such as ``training.max_episodes=2000`` may extend
    it); ``episodes.csv`` (and ``tests.csv``) are cut back to the checkpoint's episode count and appended to by
    ``train()``.

    Raises:
        ScenarioError: ``out_dir`` holds no scenario or no checkpoint.
    """
    from narla import scenario as scenarios
    from narla.training import Trainer

    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT
    if not (out_dir / "scenario.yaml").is_file() or not path.is_file():
        raise ScenarioError(
            f"--resume {str(out_dir)!r}: no {CHECKPOINT} there; only runs with training.checkpoint_every set "
            "can be resumed"
        )
    scenario = scenarios.load(out_dir / "scenario.yaml", overrides)
    trainer = Trainer(scenario, out_dir, progress=progress, overwrite=True)
    state = load_checkpoint(trainer, path)
    trainer.resumed_from = state["episodes"]
    trainer.wall_offset = float(state.get("wall_time_s", 0.0))
    truncate_csv(out_dir / "episodes.csv", state["episodes"])
    truncate_csv(out_dir / "neurons.csv", state["episodes"])
    for name, column in (("tests.csv", "episodes"), ("emergence.csv", "episode")):
        path = out_dir / name
        if path.exists():  # rows logged after the checkpoint, before the run stopped
            with open(path, newline="") as f:
                kept = sum(1 for row in csv.DictReader(f) if float(row[column]) <= state["episodes"])
            truncate_csv(path, kept)
    return trainer
