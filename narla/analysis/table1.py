"""Reproduce Table 1 of Ott, "Giving Up Control: Neurons as RL Agents": episodes until CartPole is solved.

One command trains the missing trials (through :mod:`narla.sweep`: the seeds of a cell train as one batch,
:mod:`narla.runs`; finished trials are skipped) and renders ``docs/results/table1.md`` with two tables and one
learning-curve PNG per cell::

    python -m narla.analysis.table1 --runs runs/table1 --out docs/results

- **The paper's protocol** (``scenarios/table1/paper/``): its networks (L hidden layers of 15 + the output neuron),
  neurons, rewards, one update per episode, ten repeats, stop when the 100-episode mean exceeds 300 checked only
  after episode 1,000, at most 20,000 episodes. Bio → All switches at episode 1,000 (the paper's text) and, as a
  row of its own, at 500 (the paper's code).
- **narla's best** (``scenarios/table1/best/``): our tuned settings and rewards, relay included; not the paper's
  protocol.

Unsolved runs count as 20,000 in the means, as in the paper. The scenarios carry no time limit: the full protocol
takes about an hour or more of this 2-core machine (the page states how long it took). ``--cell-minutes M`` gives
each unfinished cell at most ``M`` minutes in this call; a cell still going then pauses (its batch checkpoint,
``batch_checkpoint.pt``, stays in the cell's directory) and the next call continues it exactly where it was. Paused
runs are shown as running, with the episode they reached, and are left out of the means until they finish.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

from narla.results import atomic_write
from narla.scenario import ScenarioError
from narla.sweep import (
    add_trial_options,
    check_trial_options,
    check_trials,
    load_record,
    make_trials,
    parse_seeds,
    run_sweep,
    write_tables,
)

CONDITIONS = [("all", "All"), ("bio_all", "Bio → All"), ("bio_all_500", "Bio → All (switch at 500, the code)"),
              ("task", "Task")]
LAYERS = [1, 2, 5]
PAPER = {
    ("all", 1): 1480, ("all", 2): 1910, ("all", 5): 4824,
    ("bio_all", 1): 1275, ("bio_all", 2): 3718, ("bio_all", 5): 4419,
    ("task", 1): 7691, ("task", 2): 20000, ("task", 5): 20000,
}
PAPER["bio_all_500", 1], PAPER["bio_all_500", 2], PAPER["bio_all_500", 5] = PAPER["bio_all", 1], PAPER[
    "bio_all", 2], PAPER["bio_all", 5]
BEST = [("all_relay", "All + relay (narla)", "all")]
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "table1"
COMMAND = "python -m narla.analysis.table1 --runs {runs} --out {out}"
SPEEDUP_COMMAND = ("python -m narla.runs scenarios/table1/paper/all_L2.yaml --seeds 0-9 --episodes 60 "
                   "--out docs/results/seed_batch_speedup.json")
CAP = 20000


def stem(condition: str, layers: int) -> str:
    """The scenario file stem of a cell, e.g. ``all_L2`` (``layers`` hidden layers, the paper's counting)."""
    return f"{condition}_L{layers}"


def neurons(layers: int) -> int:
    """Neurons of a cell: ``layers`` hidden layers of 15 plus the output neuron."""
    return 15 * layers + 1


def read_returns(run_dir: str | Path) -> list[float]:
    """Per-episode returns from a results directory's ``episodes.csv`` (empty when missing)."""
    path = Path(run_dir) / "episodes.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [float(row["return"]) for row in csv.DictReader(f)]


def moving_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at every index (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


OPEN = ("paused", "time_cap")  # a run still going (paused by --cell-minutes) or cut by an older time cap


def cell_stats(records: list[dict], cap: int = CAP) -> dict:
    """Episodes-to-solve of a cell's non-failed trials (unsolved = ``cap``), spread, counts and open runs.

    An *open* run (paused, or cut by a time cap) has no final number yet; it enters the statistics with the least it
    can still reach (the next episode, or its solve episode), and ``open`` > 0 marks every statistic as a lower
    bound (each is monotone in every run's number)."""
    ok = [r for r in records if r["status"] and r["status"] != "missing" and not str(r["status"]).startswith("failed")]
    values = []
    for r in ok:
        if r["solved_at"] is not None:
            values.append(float(r["solved_at"]))
        elif r["status"] in OPEN:
            values.append(float(min(int(r["episodes"] or 0) + 1, cap)))
        else:
            values.append(float(cap))
    open_runs = [r for r in ok if r["status"] in OPEN and r["solved_at"] is None]
    stats = {"n": len(ok), "total": len(records), "solved": sum(r["solved_at"] is not None for r in ok),
             "failed": sum(str(r["status"]).startswith("failed") for r in records),
             "open": len(open_runs), "open_episodes": sorted(int(r["episodes"] or 0) for r in open_runs),
             "wall_s": max((r["wall_time_s"] or 0.0 for r in ok), default=0.0)}
    if values:
        stats.update(mean=statistics.fmean(values), median=statistics.median(values), min=min(values),
                     max=max(values), sd=statistics.stdev(values) if len(values) > 1 else 0.0,
                     interval=mean_interval(values))
    return stats


def mean_interval(values: list[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
                  ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (episodes to solve of a cell's runs): ``resamples``
    resamplings with replacement, from a fixed seed so that the page is the same on every render."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))].mean(1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def against_paper(interval: tuple[float, float], paper: float) -> str:
    """The paper's mean episodes-to-solve against our interval (fewer is better): ``beats`` when the whole interval
    lies below it, ``short`` when above it, ``matches`` when it lies inside."""
    low, high = interval
    if high < paper:
        return "beats"
    if low > paper:
        return "short"
    return "matches"


def plot_cell(path: Path, title: str, runs: list[tuple[int, list[float]]], paper: int | None,
              threshold: float = 300.0) -> None:
    """One PNG: each seed's 100-episode mean return against episodes, the threshold and the paper's mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for seed, returns in runs:
        if returns:
            ax.plot(range(1, len(returns) + 1), moving_mean(returns, 100), lw=1, label=f"seed {seed}")
    ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"solved ({threshold:g})")
    if paper is not None:
        ax.axvline(paper, color="tab:red", ls=":", lw=1, label=f"paper ({paper:,})")
    ax.set(title=title, xlabel="episode", ylabel="mean return (last 100)", ylim=(0, 510))
    ax.set_xlim(left=0)
    ax.legend(fontsize=6, loc="upper left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def _n(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.0f}"


def final_window(returns: list[float], window: int = 100) -> float | None:
    """Mean return of the last ``window`` episodes (None without episodes)."""
    last = returns[-window:]
    return sum(last) / len(last) if last else None


def _cell_row(label: str, layers: int, paper: int | None, s: dict, finals: list[float]) -> str:
    """One table row; ``finals``: each run's last-100-episode mean return. With open runs every statistic is
    a lower bound (``≥``)."""
    if not s.get("n"):
        return (f"| {label} | {layers} ({neurons(layers)}) | {_n(paper)} |{' — |' * 4} 0/{s.get('total', 0)} |"
                f"{' — |' * 3}")
    ge = "≥ " if s["open"] else ""
    spread = f"{ge}{_n(s['mean'])}" if s["open"] else f"{_n(s['mean'])} ± {_n(s['sd'])}"
    running = "—"
    if s["open"]:
        eps = s["open_episodes"]
        running = f"{s['open']} (episodes {eps[0]:,}–{eps[-1]:,})" if eps[0] != eps[-1] else f"{s['open']} ({eps[0]:,})"
    solved = f"{s['solved']}/{s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else "")
    above = f"{sum(f > 300 for f in finals)}/{len(finals)} (median {_n(statistics.median(finals))})" if finals else "—"
    verdict = "—"
    if not s["open"] and paper is not None:
        low, high = s["interval"]
        verdict = f"{against_paper(s['interval'], paper)} ({_n(low)} – {_n(high)})"
    return (f"| {label} | {layers} ({neurons(layers)}) | {_n(paper)} | {spread} | {verdict} | {ge}{_n(s['median'])} | "
            f"{ge}{_n(s['min'])} – {ge}{_n(s['max'])} | {solved} | {running} | {above} | "
            f"{s['wall_s'] / 60:.1f} min |")


HEADER = [
    "| reward | hidden layers (neurons) | paper (mean) | ours: mean ± sd | vs the paper (95 % interval of our mean) | "
    "median | min – max | solved | still running (episode reached) | "
    "last-100 mean > 300 now (median of the runs' last-100 means) | wall time (batched, all calls) |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
]


def machines(records: list[dict]) -> str:
    """The machines the trials ran on, as their ``summary.json`` records them (``machine``: a paused and resumed
    trial's last call), with how many trials each: a cell is a sample of its machine's kernels (README,
    *Reproducibility*)."""
    counts: dict[str, int] = {}
    for r in records:
        path = Path(r["dir"]) / "summary.json"
        m = json.loads(path.read_text()).get("machine") if path.is_file() else None
        name = "not recorded" if not m else (f"{m['cpu']} ({m['cpu_capability']} kernels), {m['cpus']} CPUs, "
                                             f"torch {m['torch']}, {m['threads']} thread(s)")
        counts[name] = counts.get(name, 0) + 1
    return "; ".join(f"{name}: {n} trial(s)" for name, n in sorted(counts.items())) or "none"


def render(paper_records: list[dict], best_records: list[dict], out: str | Path, command: str,
           wall: dict | None = None) -> Path:
    """Write ``OUT/table1.md`` and ``OUT/table1/<part>_<cell>.png``; returns the markdown path."""
    out = Path(out)
    figures: list[str] = []

    def section(records: list[dict], part: str, cells: list[tuple[str, str, int, int | None]]) -> list[str]:
        by_cell: dict[str, list[dict]] = {}
        for r in records:
            by_cell.setdefault(r["scenario"], []).append(r)
        lines = list(HEADER)
        for condition, label, layers, paper in cells:
            name = stem(condition, layers)
            rs = sorted(by_cell.get(name, []), key=lambda r: r["seed"])
            s = cell_stats(rs)
            curves = [(r["seed"], read_returns(r["dir"])) for r in rs]
            finals = [f for _, ret in curves if (f := final_window(ret)) is not None]
            lines.append(_cell_row(label, layers, paper, s, finals))
            title = f"{part}: {label}, {layers} hidden layer{'s' * (layers > 1)}"
            png = f"{part}_{name}.png"
            if rs:
                plot_cell(out / "table1" / png, title, curves, paper)
                figures.append(f"| {title} | ![{png}](table1/{png}) |")
        return lines

    paper_cells = [(c, label, n, PAPER[(c, n)]) for c, label in CONDITIONS for n in LAYERS]
    best_cells = [(c, label, n, PAPER[(base, n)]) for c, label, base in BEST for n in LAYERS]
    paper_lines = section(paper_records, "paper", paper_cells)
    best_lines = section(best_records, "best", best_cells)
    timing: list[str] = []
    if wall:
        calls = wall.get("calls", [])
        total = sum(c["wall_s"] for c in calls)
        timing = [f"Wall time of the commands that produced these numbers: {total / 60:.1f} min over {len(calls)} "
                  f"call(s) ({', '.join(_call(c) for c in calls)}); {wall['seeds']} seeds per cell.", ""]
    speed = out / "seed_batch_speedup.json"
    if speed.is_file():
        m = json.loads(speed.read_text())
        timing += [f"Seeds as one batch vs one by one (`{SPEEDUP_COMMAND}`, `{speed.name}`): {m['runs']} runs of "
                   f"{m['num_neurons']} neurons, {m['episodes_per_run']} episodes each: {m['sequential_s']} s one by "
                   f"one, {m['batched_s']} s batched, **{m['speedup']}×**; same returns: {m['same_returns']}.", ""]
    text = "\n".join([
        "# Table 1 — episodes until CartPole is solved",
        "",
        "Ott, *Giving Up Control: Neurons as Reinforcement Learning Agents* (arXiv 2003.11642), Table 1. Layers are",
        "counted as the paper's code counts them: **L hidden layers** of 15 binary neurons plus the output neuron",
        "(1, 2, 5 hidden layers = 16, 31, 76 neurons). A run that is not solved counts as 20,000 episodes in the",
        "mean, as in the paper. All seeds of a cell train as one batch (`narla.runs`: each run bit for bit what it",
        "would be alone); \"wall time\" is the batch's.",
        "",
        f"Regenerate both tables (trains the missing trials, then renders this page): `{command}`",
        "",
        *timing,
        "## 1. The paper's protocol",
        "",
        "`scenarios/table1/paper/`: the paper's network (band wiring), neurons (Linear(in, 32) → LeakyReLU(0.3) →",
        "Linear(32, 2) → softmax), Adam lr 0.01, γ 0.99, REINFORCE with returns normalized per neuron and episode, one",
        "update per episode, the paper-form rewards with weight 1 (`paper_firing`, `paper_sparsity`,",
        "`paper_prediction`, `paper_trace`), stop when the 100-episode mean exceeds 300 checked only after episode",
        "1,000 (so no cell can report fewer than 1,001), at most 20,000 episodes. Bio → All switches after 1,000",
        "episodes as the paper's text says; the row \"switch at 500\" follows the paper's code.",
        "A call can be limited (`--cell-minutes`): a cell still running between calls is paused and continues",
        "exactly where it was. While a cell has runs still going, its statistics are **lower bounds** (marked ≥): a",
        "running run enters them with the next episode it can reach. Versions of narla whose updates differ only in",
        "float rounding (how returns or re-evaluations are computed) train different episodes from the same seed, as",
        "training amplifies any rounding, and so do machines whose kernels round differently (README,",
        "*Reproducibility*): each regeneration is a valid sample of the protocol, not the same runs. These runs'",
        f"(last) calls ran on: {machines(paper_records + best_records)}.",
        "\"vs the paper\" places the paper's mean against a 95 % percentile-bootstrap interval of our mean (10,000",
        "resamplings of the cell's runs, fixed seed): **beats** when the whole interval lies below it (fewer episodes",
        "to solve), **matches** when it contains it, **short** when the whole interval lies above it.",
        "",
        *paper_lines,
        "",
        "## 2. narla's best (differs from the paper's protocol)",
        "",
        "`scenarios/table1/best/`: our tuned settings, not the paper's: a 2×128 LeakyReLU policy with one firing",
        "logit, NaRLA local wiring, 16 episodes per update, Adam lr 0.003, our weighted biological rewards plus the",
        "`relay` reward (`scenarios/table1/README.md`), and the solve rule checked from the first full 100-episode",
        "window (≥ 300). Cells named by the paper's layer counting; the paper column is its *All* cell.",
        "",
        *best_lines,
        "",
        "## Learning curves (100-episode mean return; dashed: 300, dotted: the paper's mean)",
        "",
        "| cell | curve |",
        "|---|---|",
        *figures,
        "",
    ])
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write(out / "table1.md", text)


def _call(c: dict) -> str:
    cap = f", ≤ {c['cell_minutes']:g} min per cell" if c.get("cell_minutes") else ""
    return f"{c['wall_s'] / 60:.1f} min on {c['workers']} worker(s){cap}"


def largest_first(trials: list) -> list:
    """``trials`` with the cells of most hidden layers first (stable otherwise): the longest cells start first, so
    that on a few workers none of them begins last and holds the call up alone."""
    def layers(trial) -> int:
        stem = Path(trial.scenario).stem
        return int(stem.rsplit("_L", 1)[1]) if "_L" in stem and stem.rsplit("_L", 1)[1].isdigit() else 0

    return sorted(trials, key=lambda t: -layers(t))


def _trials(directory: Path, runs: Path, seeds: list[int], overrides: list[str]) -> list:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ScenarioError(f"--scenarios: no cell scenarios in {str(directory)!r}")
    return make_trials(files, {}, seeds, runs, overrides)


def main(argv: list[str] | None = None) -> int:
    """Train the missing Table 1 trials (both parts), then render the markdown and the learning curves."""
    parser = argparse.ArgumentParser(prog="python -m narla.analysis.table1", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/table1"), help="sweep directory of the trials")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where table1.md and PNGs go")
    parser.add_argument("--seeds", default="0-9", help="seeds per cell (default 0-9: the paper's ten repeats)")
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS, help="directory holding paper/ and best/")
    parser.add_argument("--render-only", action="store_true", help="do not train; render what is there")
    parser.add_argument("--cell-minutes", type=float, default=None, metavar="M",
                        help="give each unfinished cell at most M minutes in this call, then pause it (a later call "
                             "continues it); default: run every cell to the end of the protocol")
    add_trial_options(parser)
    args = parser.parse_args(argv)
    try:
        check_trial_options(args)
        if args.cell_minutes is not None and not args.cell_minutes > 0:
            raise ScenarioError(f"--cell-minutes: must be > 0, got {args.cell_minutes}")
        seeds = parse_seeds(args.seeds)
        cap = [f"training.max_wall_s={args.cell_minutes * 60:g}"] if args.cell_minutes else []
        paper = _trials(args.scenarios / "paper", args.runs / "paper", seeds, args.set + cap)
        best = _trials(args.scenarios / "best", args.runs / "best", seeds, args.set + cap)
        wall_file = args.runs / "wall.json"
        if not args.render_only:
            check_trials(paper + best)
            start = time.perf_counter()
            workers = args.workers or len(os.sched_getaffinity(0))  # as run_sweep: one per core by default
            run_sweep(largest_first(paper + best), workers, progress=not args.quiet)
            wall = json.loads(wall_file.read_text()) if wall_file.is_file() else {"calls": []}
            wall.setdefault("calls", [])
            wall["calls"].append({"wall_s": round(time.perf_counter() - start, 1), "workers": workers,
                                  "cell_minutes": args.cell_minutes})
            wall["seeds"] = len(seeds)
            args.runs.mkdir(parents=True, exist_ok=True)
            tmp = wall_file.with_name(wall_file.name + ".tmp")
            tmp.write_text(json.dumps(wall, indent=2) + "\n")
            tmp.replace(wall_file)
        wall = json.loads(wall_file.read_text()) if wall_file.is_file() else None
        paper_records = [load_record(t) for t in paper]
        best_records = [load_record(t) for t in best]
        write_tables(args.runs / "paper", paper_records)
        write_tables(args.runs / "best", best_records)
        command = COMMAND.format(runs=args.runs, out=args.out)
        command += "".join(f" --set {kv}" for kv in args.set)
        if args.cell_minutes:
            command += f" --cell-minutes {args.cell_minutes:g}"
        if args.seeds != "0-9":
            command += f" --seeds {args.seeds}"
        path = render(paper_records, best_records, args.out, command, wall)
    except ScenarioError as err:
        print(f"table1: error: {err}", file=sys.stderr)
        return 2
    print(path.read_text().split("## Learning curves")[0])
    print(f"written: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
