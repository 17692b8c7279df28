"""Looking at a run or a sweep without writing code: ``narla plot RUN_DIR|SWEEP_DIR [--out DIR]``.

- A run (a folder with ``episodes.csv``): ``learning_curve.png`` (return per episode, its moving mean over the
  solve window, the test scores of ``tests.csv`` where there are any, and each layer's firing rate), and
  ``raster.png``, one replayed episode of the learned policy (neurons by layer against ticks, motor neurons on top).
- A sweep (a folder whose sub-folders hold runs): ``sweep_curves.png``, one panel per cell, each seed's moving
  mean, the seeds' mean and the band between their lowest and highest.

Figures go to ``DIR`` (default ``PATH/plots``), each written whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from narla.results import output_dir
from narla.scenario import ScenarioError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """A numeric CSV as columns (empty dict when the file is missing or empty)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def moving_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each index (fewer at the start)."""
    c = np.cumsum(np.insert(x.astype(float), 0, 0.0))
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def _window(run_dir: Path) -> int:
    import yaml

    path = run_dir / "scenario.yaml"
    training = (yaml.safe_load(path.read_text()) or {}).get("training", {}) if path.is_file() else {}
    return int(training.get("solve_window") or 100)


def plot_learning_curve(run_dir: Path, out: Path) -> Path:
    """``learning_curve.png`` of one run."""
    episodes = read_csv(run_dir / "episodes.csv")
    if not episodes:
        raise ScenarioError(f"{str(run_dir)!r}: no episodes.csv with rows; is it a narla results directory?")
    window = _window(run_dir)
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=[2, 1])
    x, ret = episodes["episode"], episodes["return"]
    top.plot(x, ret, color="0.8", lw=0.6, label="return per episode")
    top.plot(x, moving_mean(ret, window), color="tab:blue", lw=1.5, label=f"mean of the last {window}")
    tests = read_csv(run_dir / "tests.csv")
    if tests:
        top.errorbar(tests["episodes"], tests["test_mean"], yerr=tests["test_std"], fmt="o", ms=3, color="tab:red",
                     lw=0.8, label="test episodes (mean ± sd)")
    top.set(ylabel="task return", title=f"{run_dir.name}: learning curve")
    top.legend(fontsize=7, loc="upper left")
    layers = sorted((k for k in episodes if k.startswith("firing_L")), key=lambda k: int(k[len("firing_L"):]))
    for k in layers:
        bottom.plot(x, moving_mean(episodes[k], window), lw=1, label=f"layer {k[len('firing_L'):]}")
    bottom.set(xlabel="episode (one per environment copy)", ylabel="firing rate", ylim=(-0.02, 1.02))
    if layers:
        bottom.legend(fontsize=7, ncol=min(len(layers), 6), loc="upper left")
    fig.tight_layout()
    path = _save(fig, out / "learning_curve.png")
    plt.close(fig)
    return path


def plot_raster(run_dir: Path, out: Path, seed: int | None = None) -> Path:
    """``raster.png``: one replayed episode of the run's policy (needs ``model.pt``; no reward code)."""
    from narla.record import record

    rec = record(run_dir, 1, seed=seed, rewards=False)
    length = int(rec["length"][0])
    spikes = rec["spikes"][0, :length]  # [T, N]
    order = np.lexsort((np.arange(len(rec["layer"])), rec["motor"], rec["layer"]))  # by layer, motor last
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, max(2.5, min(8.0, 0.12 * len(order) + 1.5))))
    ax.imshow(spikes[:, order].T, aspect="auto", interpolation="nearest", cmap="Greys", origin="lower",
              vmin=min(0.0, float(spikes.min())), vmax=max(1.0, float(spikes.max())))
    layer = rec["layer"][order]
    for i in np.nonzero(np.diff(layer))[0]:
        ax.axhline(i + 0.5, color="tab:red", lw=0.6)
    ax.set(xlabel="tick (black: fired, or a rate neuron's value)", ylabel="neuron (by layer; motor neurons on top)",
           title=f"{run_dir.name}: one episode, {length} ticks, return {rec['task_reward'][0].sum():.1f}")
    fig.tight_layout()
    path = _save(fig, out / "raster.png")
    plt.close(fig)
    return path


def sweep_runs(sweep_dir: Path) -> dict[str, list[tuple[str, Path]]]:
    """``{cell: [(seed label, run dir), ...]}``: every folder under ``sweep_dir`` holding ``episodes.csv``,
    grouped by its parent (the cell) and named by its own folder (the seed)."""
    cells: dict[str, list[tuple[str, Path]]] = {}
    for csv_path in sorted(sweep_dir.rglob("episodes.csv")):
        run = csv_path.parent
        cell = str(run.parent.relative_to(sweep_dir)) if run.parent != sweep_dir else run.name
        cells.setdefault(cell, []).append((run.name, run))
    return cells


def plot_sweep(sweep_dir: Path, out: Path) -> Path:
    """``sweep_curves.png``: a panel per cell, seeds' moving means with their mean and min–max band."""
    cells = sweep_runs(sweep_dir)
    if not cells:
        raise ScenarioError(f"{str(sweep_dir)!r}: no run folders (with episodes.csv) below it")
    plt = _pyplot()
    cols = min(3, len(cells))
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (cell, runs) in zip(axes.flat, cells.items(), strict=False):
        curves = []
        for label, run in runs:
            ret = read_csv(run / "episodes.csv").get("return")
            if ret is None:
                continue
            curve = moving_mean(ret, _window(run))
            curves.append(curve)
            ax.plot(np.arange(1, len(curve) + 1), curve, lw=0.6, alpha=0.6, label=label)
        if curves:
            longest = max(len(c) for c in curves)
            grid = np.full((len(curves), longest), np.nan)
            for i, c in enumerate(curves):
                grid[i, : len(c)] = c
            x = np.arange(1, longest + 1)
            ax.fill_between(x, np.nanmin(grid, 0), np.nanmax(grid, 0), color="tab:blue", alpha=0.15, lw=0)
            ax.plot(x, np.nanmean(grid, 0), color="tab:blue", lw=1.5, label="mean of seeds")
        ax.set_title(cell, fontsize=8)
        ax.set_xlabel("episode", fontsize=7)
        ax.set_ylabel("return (moving mean)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=5, ncol=2, loc="upper left")
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.tight_layout()
    path = _save(fig, out / "sweep_curves.png")
    plt.close(fig)
    return path


def plot(path: str | Path, out: str | Path | None = None, seed: int | None = None) -> list[Path]:
    """The figures of a run or a sweep at ``path``; returns the PNGs written."""
    path = Path(path)
    if not path.is_dir():
        raise ScenarioError(f"{str(path)!r} is not a folder; give a results directory or a sweep directory")
    out = Path(out) if out is not None else path / "plots"
    if (path / "episodes.csv").is_file():
        written = [plot_learning_curve(path, out)]
        if (path / "model.pt").is_file() or (path / "checkpoint.pt").is_file():
            written.append(plot_raster(path, out, seed))
        return written
    return [plot_sweep(path, out)]


def main(args: argparse.Namespace) -> int:
    """``narla plot``: write the figures and name them."""
    if args.out is not None:
        output_dir(args.out, "--out")
    for path in plot(args.path, args.out, args.seed):
        print(path)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``narla plot``."""
    parser.add_argument("path", help="a results directory (narla run) or a sweep directory (narla sweep)")
    parser.add_argument("--out", help="where the PNGs go (default PATH/plots)")
    parser.add_argument("--seed", type=int, help="seed of the replayed episode in raster.png (default: the run's)")
