"""What a training run records after each update: its results files, TensorBoard, tests, study metrics, progress.

:class:`RunLog` is the *record* step of :meth:`narla.training.Trainer.train` (collect, learn, record). It owns every
file a run appends to while it trains (``episodes.csv``, ``neurons.csv``, ``tests.csv``, ``emergence.csv``,
``tensorboard/``) and the progress line, so the training loop itself only plays and learns. A resumed run
(``resumed``) appends to the files it finds; a fresh one writes them anew.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from narla.progress import TrainingProgress
from narla.rollout import Rollout
from narla.tblog import TensorBoardLog
from narla.wiring import Wiring


def neuron_rows(rollout: Rollout, wiring: Wiring) -> dict[str, torch.Tensor]:
    """Per-neuron statistics of a batch, each ``[B]``: ``fire:NAME`` (the neuron's mean activity over the episode)
    and ``return:NAME`` (the sum of its total reward over the episode)."""
    valid = rollout.valid.float().unsqueeze(-1)
    length = valid.sum(0).clamp(min=1)  # [B, 1]
    firing = (rollout.spikes * valid).sum(0) / length  # [B, N]
    returns = rollout.neuron_returns()  # [B, N]
    out = {f"fire:{name}": firing[:, i] for i, name in enumerate(wiring.neuron_names)}
    out.update({f"return:{name}": returns[:, i] for i, name in enumerate(wiring.neuron_names)})
    return out


class RunLog:
    """The record step of a run (``out_dir`` None: no files, progress only)."""

    def __init__(self, trainer, out_dir: Path | None, resumed: bool) -> None:
        cfg = trainer.scenario.training
        self.trainer, self.cfg, self.out_dir, self.resumed = trainer, cfg, out_dir, resumed
        self.files: dict[str, tuple[Any, Any]] = {}  # name -> (open file, writer)
        self.bar = TrainingProgress(cfg.max_episodes, trainer.solve_threshold, trainer.solve_window, cfg.solve_after,
                                    cfg.solve_strict, enabled=trainer.progress, initial=len(trainer.returns),
                                    step_budget=cfg.max_env_steps, initial_steps=trainer.env_steps)
        board = "tensorboard" in cfg.log and out_dir is not None
        self.board = TensorBoardLog(out_dir / "tensorboard") if board else None
        self.tester = self.tracker = None

    def _append(self, name: str, rows: list[dict]) -> None:
        """Append ``rows`` to the results file ``name`` (with a header when the file is new)."""
        if self.out_dir is None or not rows:
            return
        if name not in self.files:
            path = self.out_dir / name
            append = self.resumed and path.exists()
            f = open(path, "a" if append else "w", newline="")
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if not append:
                writer.writeheader()
            self.files[name] = (f, writer)
        f, writer = self.files[name]
        writer.writerows(rows)
        f.flush()

    def record(self, rollout: Rollout, rows: list[dict], host: dict[str, list], loss: float, first: int,
               window: list[float], elapsed: float) -> None:
        """After an update: ``rows`` are the batch's new ``episodes.csv`` rows (episodes ``first + 1 ...``), ``host``
        the batch's per-episode statistics, ``window`` the solve rule's window of returns."""
        run, cfg, done = self.trainer.run, self.cfg, first + len(rows)
        mean = sum(window) / max(len(window), 1)
        self._append("episodes.csv", rows)
        if self.board is not None:
            self.board.update(done, host, loss, mean)
        if cfg.log_neurons and rows:
            stats = neuron_rows(rollout, run.wiring)
            values = torch.stack(list(stats.values()), 1)[: len(rows)].tolist()  # one transfer
            self._append("neurons.csv", [{"episode": first + 1 + b, **dict(zip(stats, v, strict=True))}
                                         for b, v in enumerate(values)])
        updates = done // run.task.num_envs
        if cfg.test_every is not None and updates % cfg.test_every == 0 and rows:
            if self.tester is None:
                from narla.evaluate import PolicyTest

                self.tester = PolicyTest(run, cfg.test_episodes, self.trainer.scenario.seed + 10_007)
            test_mean, sd = self.tester()
            self._append("tests.csv", [{"update": updates, "episodes": done, "test_mean": test_mean, "test_std": sd,
                                        "wall_clock": round(elapsed, 3)}])
            if self.board is not None:
                self.board.test(done, test_mean, sd)
        k = cfg.analyze_every
        if k is not None and done // k > first // k:
            if self.tracker is None:
                from narla.study.tracking import EmergenceTracker

                self.tracker = EmergenceTracker(run)
            self._append("emergence.csv", [self.tracker(rollout, done)])
        self.bar.update(done, mean, len(window), self.trainer.env_steps)

    def close(self, status: str) -> None:
        """Close every file and probe; the progress line ends with ``status``."""
        self.bar.close(len(self.trainer.returns), status, self.trainer.env_steps)
        for f, _ in self.files.values():
            f.close()
        for probe in (self.tester, self.tracker):
            if probe is not None:
                probe.close()
        if self.board is not None:
            self.board.close()
