"""Reproduce Table 1 of Ott, "Giving Up Control: Neurons as RL Agents": episodes until CartPole is solved.

One command runs the missing trials (through :mod:`narla.sweep`, finished trials are skipped) and renders
``docs/results/table1.md`` (our numbers beside the paper's) with one learning-curve PNG per cell::

    python -m narla.analysis.table1 --runs runs/table1 --out docs/results

Cells: reward condition (``scenarios/table1/{task,all,bio_all}_L{1,2,5}.yaml``) x 1, 2, 5 layers; the
paper's protocol: stop at a 100-episode mean return of 300, at most 20,000 episodes (unsolved counts as
20,000 in the statistics, as in the paper).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

import yaml

from narla.scenario import ScenarioError
from narla.sweep import (
    add_trial_options,
    check_trial_options,
    load_record,
    make_trials,
    parse_seeds,
    run_sweep,
    write_tables,
)

CONDITIONS = [("all", "All"), ("bio_all", "Bio → All"), ("task", "Task")]
LAYERS = [1, 2, 5]
PAPER = {
    ("all", 1): 1480, ("all", 2): 1910, ("all", 5): 4824,
    ("bio_all", 1): 1275, ("bio_all", 2): 3718, ("bio_all", 5): 4419,
    ("task", 1): 7691, ("task", 2): 20000, ("task", 5): 20000,
}
# Beyond the paper: cells that add our relay reward, compared with the paper's cell of the same condition.
EXTENSIONS = [("all_relay", "All + relay (ours)", "all"), ("bio_all_relay", "Bio → All + relay (ours)", "bio_all")]
EXTENSION_LAYERS = [5]
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "table1"
COMMAND = "python -m narla.analysis.table1 --runs {runs} --out {out}"


def stem(condition: str, layers: int) -> str:
    """The scenario file stem of a cell, e.g. ``all_L2``."""
    return f"{condition}_L{layers}"


def cells() -> list[tuple[str, str, int, int]]:
    """Every cell as ``(condition, label, layers, paper's mean)``: the paper's nine, then the extensions."""
    out = [(c, label, n, PAPER[(c, n)]) for c, label in CONDITIONS for n in LAYERS]
    out += [(c, label, n, PAPER[(base, n)]) for c, label, base in EXTENSIONS for n in EXTENSION_LAYERS]
    return out


def stem_is_paper(name: str) -> bool:
    """Whether a scenario stem is one of the paper's nine cells (those must exist; extensions may be absent)."""
    return any(name == stem(c, n) for c, _ in CONDITIONS for n in LAYERS)


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


def cell_stats(records: list[dict], cap: int = 20000) -> dict:
    """Episodes-to-solve over a cell's non-failed trials (unsolved = the cap), with spread and counts."""
    ok = [r for r in records if r["status"] and r["status"] != "missing" and not str(r["status"]).startswith("failed")]
    values = [float(r["solved_at"] if r["solved_at"] is not None else (r["cap"] or cap)) for r in ok]
    stats = {"n": len(ok), "total": len(records), "solved": sum(r["solved_at"] is not None for r in ok),
             "failed": sum(str(r["status"]).startswith("failed") for r in records),
             "wall_s": sum(r["wall_time_s"] or 0.0 for r in ok)}
    if values:
        stats.update(mean=statistics.fmean(values), median=statistics.median(values), min=min(values),
                     max=max(values), sd=statistics.stdev(values) if len(values) > 1 else 0.0)
    return stats


def plot_cell(
    path: Path, title: str, runs: list[tuple[int, list[float]]], paper: int, threshold: float = 300.0
) -> None:
    """One PNG: each seed's 100-episode mean return against episodes, the threshold and the paper's mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for seed, returns in runs:
        if returns:
            ax.plot(range(1, len(returns) + 1), moving_mean(returns, 100), lw=1, label=f"seed {seed}")
    ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"solved ({threshold:g})")
    ax.axvline(paper, color="tab:red", ls=":", lw=1, label=f"paper ({paper:,})")
    ax.set(title=title, xlabel="episode", ylabel="mean return (last 100)", ylim=(0, 510))
    ax.set_xlim(left=0)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _n(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.0f}"


def _settings(scenario_dir: Path, shown: list[tuple[str, str, int, int]]) -> list[str]:
    lines = []
    for condition, label, layers, _ in shown:
        path = scenario_dir / f"{stem(condition, layers)}.yaml"
        if not path.is_file():
            continue
        data = yaml.safe_load(path.read_text())
        learn, task = data.get("learning", {}), data.get("task", {})
        lines.append(
            f"| {label} | {layers} | {task.get('num_envs', 1)} | {learn.get('rule', 'reinforce')} | "
            f"{learn.get('lr', 1e-3):g} | {learn.get('gamma', 0.99):g} | {learn.get('entropy_coef', 0.0):g} |"
        )
    return lines


def render(records: list[dict], out: str | Path, command: str, scenario_dir: Path = SCENARIOS) -> Path:
    """Write ``OUT/table1.md`` and ``OUT/table1/<cell>.png`` from the trials' records; returns the markdown path."""
    out = Path(out)
    by_cell: dict[str, list[dict]] = {}
    for r in records:
        by_cell.setdefault(r["scenario"], []).append(r)
    present = [cell for cell in cells() if stem_is_paper(stem(cell[0], cell[2])) or stem(cell[0], cell[2]) in by_cell]
    stats = {stem(c, n): cell_stats(by_cell.get(stem(c, n), [])) for c, _, n, _ in present}
    compact = ["| reward | 1 layer | 2 layers | 5 layers |", "|---|--:|--:|--:|"]
    detail = [
        "| reward | layers | paper (mean) | ours: mean | median | sd | min – max | solved | final return | CPU time |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    rows: dict[str, dict[int, str]] = {}
    figures = []
    for condition, label, layers, paper in present:
        name = stem(condition, layers)
        s, rs = stats[name], sorted(by_cell.get(name, []), key=lambda r: r["seed"])
        rows.setdefault(label, {})[layers] = f"{_n(s.get('mean'))} ({paper:,})"
        final = [r["final_mean_return"] for r in rs if r["final_mean_return"] is not None]
        spread = f"{_n(s.get('min'))} – {_n(s.get('max'))}" if "min" in s else "—"
        solved = f"{s['solved']}/{s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else "")
        detail.append(
            f"| {label} | {layers} | {paper:,} | {_n(s.get('mean'))} | {_n(s.get('median'))} | {_n(s.get('sd'))} | "
            f"{spread} | {solved} | {_n(statistics.fmean(final)) if final else '—'} | {s['wall_s'] / 60:.1f} min |"
        )
        title = f"{label}, {layers} layer{'s' * (layers > 1)}"
        plot_cell(out / "table1" / f"{name}.png", title, [(r["seed"], read_returns(r["dir"])) for r in rs], paper)
        figures.append(f"| {title} | ![{name}](table1/{name}.png) |")
    for label, by_layers in rows.items():
        compact.append(f"| {label} | " + " | ".join(by_layers.get(n, "—") for n in LAYERS) + " |")
    total_wall = sum(s["wall_s"] for s in stats.values())
    text = "\n".join([
        "# Table 1 — episodes until CartPole is solved",
        "",
        "Ott, *Giving Up Control: Neurons as Reinforcement Learning Agents* (arXiv 2003.11642), Table 1: the number",
        "of episodes until the mean return of the last 100 episodes reaches 300, at most 20,000 episodes (a run",
        "that never gets there counts as 20,000, as in the paper). Episodes are counted as in the paper even",
        "when B copies run in parallel (one update per B episodes).",
        "",
        f"Regenerate (runs the missing trials, then renders this page): `{command}`",
        "",
        "## Ours (paper) — mean episodes to solve",
        "",
        *compact,
        "",
        "## Per cell",
        "",
        *detail,
        "",
        f"Total CPU time of the trials: {total_wall / 60:.1f} min (trials run in parallel, one per core).",
        "",
        "## Settings",
        "",
        "Networks: `layered` builder, L − 1 hidden layers of 15 binary neurons + one motor neuron choosing the",
        "action, NaRLA local connectivity, each neuron a 2×128 LeakyReLU policy. Rewards and their weights are in",
        "`scenarios/table1/` (see `scenarios/table1/README.md` for why).",
        "",
        "| reward | layers | B (episodes / update) | rule | lr | γ | entropy |",
        "|---|--:|--:|---|--:|--:|--:|",
        *_settings(scenario_dir, present),
        "",
        "## Learning curves (100-episode mean return; dashed: solved, dotted: the paper's mean)",
        "",
        "| cell | curve |",
        "|---|---|",
        *figures,
        "",
    ])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "table1.md"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the missing Table 1 trials, then render the markdown and the learning curves."""
    parser = argparse.ArgumentParser(prog="python -m narla.analysis.table1", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/table1"), help="sweep directory of the trials")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where table1.md and PNGs go")
    parser.add_argument("--seeds", default="0-4", help="seeds per cell (default 0-4)")
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS, help="directory of the cell scenarios")
    parser.add_argument("--render-only", action="store_true", help="do not train; render what is there")
    add_trial_options(parser)
    args = parser.parse_args(argv)
    try:
        check_trial_options(args)
        files = [args.scenarios / f"{stem(c, n)}.yaml" for c, _, n, _ in cells()]
        files = [f for f in files if f.is_file() or stem_is_paper(f.stem)]
        trials = make_trials(files, {}, parse_seeds(args.seeds), args.runs, args.set)
        if not args.render_only:
            run_sweep(trials, args.workers, progress=not args.quiet)
        records = [load_record(t) for t in trials]
        write_tables(args.runs, records)
        command = COMMAND.format(runs=args.runs, out=args.out) + "".join(f" --set {kv}" for kv in args.set)
        if args.seeds != "0-4":
            command += f" --seeds {args.seeds}"
        path = render(records, args.out, command, args.scenarios)
    except ScenarioError as err:
        print(f"table1: error: {err}", file=sys.stderr)
        return 2
    print(path.read_text().split("## Per cell")[0])
    print(f"written: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
