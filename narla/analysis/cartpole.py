"""NaRLA's output neuron alone and its 1-hidden-layer network on CartPole, task reward only: ``cartpole.md``.

The 1-hidden-layer network (15 + 1 neurons) is the paper's Table 1 "1 layer" cell (its mean with the task reward:
7,691 episodes); the output neuron alone is a network the paper never ran (REFERENCES.md: Table 1 counts hidden
layers).

One command trains the missing seeds (``narla sweep``: the five seeds of a network train as one batch) and renders
the page from the runs' own files::

    python -m narla.analysis.cartpole --runs runs/cartpole --out docs/results
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from narla.results import atomic_write
from narla.scenario import ScenarioError
from narla.sweep import load_record, make_trials, parse_seeds, run_sweep, write_tables

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
# (scenario, label, the paper's Table 1 mean for this network with the task reward; None: not a cell of it)
NETWORKS = [("cartpole_1layer", "output neuron alone (1 neuron)", None),
            ("cartpole_2layer", "1 hidden layer (15 + 1 neurons)", 7691)]
COMMAND = "python -m narla.analysis.cartpole --runs {runs} --out {out}"


def _n(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def render(records: list[dict], out: Path, command: str, wall_s: float | None) -> Path:
    """Write ``OUT/cartpole.md`` from the trial records (one per network and seed)."""
    seeds = sorted({r["seed"] for r in records})
    head = "| network | " + " | ".join(f"seed {s}" for s in seeds) + " | solved | median | range |"
    lines = [head, "|---|" + "--:|" * (len(seeds) + 3)]
    notes = []
    for stem, label, paper in NETWORKS:
        rs = {r["seed"]: r for r in records if r["scenario"] == stem}
        cells, solved = [], []
        for s in seeds:
            r = rs.get(s)
            if r is None or r["status"] in (None, "missing"):
                cells.append("—")
            elif r["solved_at"] is not None:
                cells.append(_n(r["solved_at"]))
                solved.append(r["solved_at"])
            else:
                cells.append(f"not solved in {_n(r['episodes'])}")
        n = sum(1 for s in seeds if s in rs and rs[s]["status"] not in (None, "missing"))
        med = _n(statistics.median(solved)) if solved and len(solved) == n else "—"
        span = f"{_n(min(solved))}–{_n(max(solved))}" if solved else "—"
        row = " | ".join(cells)
        lines.append(f"| {label}: solved at episode | {row} | {len(solved)}/{n} | {med} | {span} |")
        walls = {r.get("wall_time_s") for r in rs.values() if r.get("wall_time_s") is not None}
        batch = f"{max(walls):.0f} s for the {len(rs)} seeds as one batch" if walls else "—"
        if solved:
            cell = f"the paper's Table 1 mean for this network: {paper:,}" if paper is not None else (
                "a network the paper did not run")
            notes.append(f"- {label}: {len(solved)}/{n} seeds solved, median {med} episodes ({cell}); "
                         f"wall time {batch}.")
        else:
            notes.append(f"- {label}: no seed solved yet; wall time {batch}.")
    timing = f" The command took {wall_s / 60:.1f} min." if wall_s is not None else ""
    text = "\n".join([
        "# CartPole, task reward only: the output neuron alone and NaRLA's 1-hidden-layer network",
        "",
        "Paper protocol (Ott, arXiv 2003.11642): one episode per update (`task.num_envs: 1`), REINFORCE with",
        "γ = 0.99 and returns normalized per neuron, Adam lr 0.001, policies 2×128 LeakyReLU, solved when the mean",
        "return of the last 100 episodes reaches 300 (an episode is one episode of one environment copy). The",
        "scenarios are `scenarios/cartpole_1layer.yaml` and `scenarios/cartpole_2layer.yaml`; the seeds of each",
        "train as one batch (`narla.runs`), each run bit for bit what it would be alone. The paper counts hidden",
        "layers (scenarios/table1/README.md): its \"1 layer\" is the 15 + 1 network here; it never ran the output",
        "neuron alone.",
        "",
        f"Regenerate (trains the missing seeds, then writes this page): `{command}`.{timing}",
        "",
        *lines,
        "",
        *notes,
        "",
    ])
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write(out / "cartpole.md", text)


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, then render ``cartpole.md``."""
    parser = argparse.ArgumentParser(prog="python -m narla.analysis.cartpole", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/cartpole"), help="sweep directory of the runs")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where cartpole.md goes")
    parser.add_argument("--seeds", default="0-4", help="seeds per network (default 0-4)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--render-only", action="store_true", help="do not train; render what is there")
    args = parser.parse_args(argv)
    try:
        trials = make_trials([SCENARIOS / f"{stem}.yaml" for stem, _, _ in NETWORKS], {}, parse_seeds(args.seeds),
                             args.runs)
        wall = None
        if not args.render_only:
            start = time.perf_counter()
            run_sweep(trials, args.workers, progress=False)
            wall = time.perf_counter() - start
        records = [load_record(t) for t in trials]
        write_tables(args.runs, records)
        command = COMMAND.format(runs=args.runs, out=args.out)
        if args.seeds != "0-4":
            command += f" --seeds {args.seeds}"
        path = render(records, args.out, command, wall)
    except ScenarioError as err:
        print(f"cartpole: error: {err}", file=sys.stderr)
        return 2
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
