"""Checkpoint files of a whole training run: writing and reading them, nothing else.

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
half-written checkpoint behind. What goes in it is :meth:`narla.training.Trainer.state_dict`; resuming is
:func:`narla.training.resume`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from narla.scenario import ScenarioError

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def save(path: str | Path, state: dict) -> None:
    """Write ``state`` (a :meth:`narla.training.Trainer.state_dict`, or any training state of tensors and plain
    data, e.g. the PPO teacher's and distillation's) to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by :func:`save` (its tensors on ``device``)."""
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != FORMAT:
        raise ScenarioError(f"{path}: not a narla checkpoint of format {FORMAT}")
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


def truncate_logs(out_dir: Path, episodes: int) -> None:
    """Cut a results directory's logs back to ``episodes`` finished episodes (rows written after a checkpoint)."""
    truncate_csv(out_dir / "episodes.csv", episodes)
    truncate_csv(out_dir / "neurons.csv", episodes)
    for name, column in (("tests.csv", "episodes"), ("emergence.csv", "episode")):
        path = out_dir / name
        if path.exists():
            with open(path, newline="") as f:
                kept = sum(1 for row in csv.DictReader(f) if float(row[column]) <= episodes)
            truncate_csv(path, kept)



def logged_env_steps(out_dir: Path) -> int:
    """Environment steps of the episodes in ``out_dir/episodes.csv`` (their ``length`` column summed); 0 if absent."""
    path = Path(out_dir) / "episodes.csv"
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return sum(int(float(row["length"])) for row in csv.DictReader(f))
