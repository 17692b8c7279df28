"""What differs between reward conditions: ``docs/results/emergence.md`` from the paper's networks.

Analyses (``narla analyze``, :func:`narla.study.analyze.analyze_run`) the Table 1 runs of the paper's network with
2 hidden layers (31 neurons) trained with the task reward only, with all five rewards, and Bio → All, and sets
their lesion profiles, influence matrices, alignment and information per layer side by side::

    python -m narla.study.emergence --runs runs/table1/paper --out docs/results

The runs are those of ``python -m narla.analysis.table1`` (the paper's protocol); a run still training is analysed
as it stands, and the page says at which episode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from narla.results import atomic_write
from narla.scenario import ScenarioError
from narla.study.analyze import analyze_run, figures

CONDITIONS = [("task", "Task"), ("all", "All"), ("bio_all", "Bio → All")]
COMMAND = "python -m narla.study.emergence --runs {runs} --out {out}"


def _episodes(run_dir: Path) -> tuple[int, str]:
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return int(summary.get("episodes") or 0), str(summary.get("status", "?"))


def condition_summary(results: list[dict]) -> dict:
    """Means over a condition's runs of the per-run headline numbers."""
    def mean(values: list[float]) -> float:
        return statistics.fmean(values) if values else float("nan")

    layers = sorted(results[0]["activity"]["firing_per_layer"], key=int)
    out: dict = {"runs": len(results), "return": mean([r["mean_return"] for r in results])}
    out["layer_lesion"] = {k: mean([next(x["effect"] for x in r["lesions"]["layers"] if x["target"] == f"layer {k}")
                                    for r in results]) for k in layers}
    out["carriers"] = mean([sum(1 for x in r["lesions"]["neurons"] if x["ci"][1] < 0 and x["mode"] == "silence")
                            for r in results])
    out["firing"] = {k: mean([r["activity"]["firing_per_layer"][k] for r in results]) for k in layers}
    out["alignment"] = {k: mean([r["alignment"]["per_layer"][k] for r in results]) for k in layers}
    out["info_obs"] = {k: mean([r["information"]["obs_max_per_layer"][k] for r in results]) for k in layers}
    out["info_action"] = {k: mean([r["information"]["action_per_layer"][k] for r in results]) for k in layers}
    pos, neg, share = [], [], []
    for r in results:
        if r["influence"] is None:
            continue
        m = np.array(r["influence"]["matrix"])
        for row, name in enumerate(r["influence"]["sources"]):
            m[row, r["neurons"].index(name)] = 0.0  # pairs only
        pos.append(float(m[m > 0].sum()) / m.shape[0])
        neg.append(float(-m[m < 0].sum()) / m.shape[0])
        share.append(pos[-1] / (pos[-1] + neg[-1]) if pos[-1] + neg[-1] > 0 else float("nan"))
    out["help"], out["hurt"], out["coop_share"] = mean(pos), mean(neg), mean(share)
    out["free_riders"] = mean([len(r["alignment"]["free_riders"]) for r in results])
    return out


def render(rows: list[tuple[str, str, dict, list[tuple[str, int, str]]]], out: Path, command: str,
           wall_s: float, episodes: int) -> Path:
    """``emergence.md``: one table per measurement, a row per reward condition."""
    def f(v: float, fmt: str = ".2f") -> str:
        return "—" if v != v else format(v, fmt)

    layers = sorted(rows[0][2]["firing"], key=int)
    head = " | ".join(f"L{k}" for k in layers)
    lines = [
        "# Emergence: what the reward conditions change inside the paper's network",
        "",
        "The paper's network with 2 hidden layers (15 + 15 binary neurons and the output neuron, band wiring; layers",
        "L1, L2 hidden, L3 the output) trained under the paper's protocol (`scenarios/table1/paper/`) with the task",
        "reward only, with all five rewards, and Bio → All (the four biological rewards until episode 1,000). Each",
        f"run's policy played {episodes} recorded episodes per measurement (`narla analyze`).",
        "",
        f"Regenerate: `{command}` ({wall_s / 60:.1f} min). The runs are those of the Table 1 command; those still",
        "training were analysed as they stood:",
        "",
    ]
    for label, _, _, runs in rows:
        lines.append(f"- {label}: " + ", ".join(f"{name} at episode {ep:,} ({status})" for name, ep, status in runs))
    def top(key, fmt: str, low: bool = False) -> str:
        values = [(s[key] if not isinstance(s[key], dict) else statistics.fmean(s[key].values()), label)
                  for label, _, s, _ in rows if s[key] == s[key]]
        value, label = (min if low else max)(values)
        return f"{label} ({format(value, fmt)})"

    lines += ["", "## What differs (computed from the tables below)", "",
              f"- Highest mean return of the replayed policy: {top('return', '.1f')}.",
              f"- Most single neurons whose silencing hurts the task: {top('carriers', '.1f')} per run.",
              f"- Most cooperative influence (share of positive influence): {top('coop_share', '.2f')}; least: "
              f"{top('coop_share', '.2f', low=True)}.",
              f"- Lowest alignment of the neurons' own returns with the task return (mean over layers): "
              f"{top('alignment', '.2f', low=True)}; under the task reward alone every neuron is paid the task's "
              "return, so its alignment is 1 by construction.",
              f"- Most free riders: {top('free_riders', '.1f')} per run.",
              ]
    lines += ["", "## Task return and lesions", "",
              f"| condition | runs | mean return | silencing a whole layer: Δ return ({head}) | "
              "single neurons whose silencing hurts (mean per run, of 31) |", "|---|--:|--:|---|--:|"]
    for label, _, s, _ in rows:
        lesion = ", ".join(f(s["layer_lesion"][k], "+.0f") for k in layers)
        lines.append(f"| {label} | {s['runs']} | {f(s['return'], '.1f')} | {lesion} | {f(s['carriers'], '.1f')} |")
    lines += ["", "## Influence between neurons (flip one neuron's action, 10 ticks of the others' rewards)", "",
              "| condition | help per source neuron (sum of I > 0) | hurt per source neuron (sum of −I < 0) | "
              "cooperative share |", "|---|--:|--:|--:|"]
    for label, _, s, _ in rows:
        lines.append(f"| {label} | {f(s['help'])} | {f(s['hurt'])} | {f(s['coop_share'])} |")
    lines += ["", "## Firing, alignment and information per layer", "",
              "Alignment is the correlation across the replayed episodes; it is 0 where the task return did not vary",
              "(every episode of a policy reached the 500-step limit, say).", "",
              f"| condition | firing ({head}) | alignment: corr(own return, task return) ({head}) | "
              f"max MI with a feature, bits ({head}) | MI with the action, bits ({head}) | free riders |",
              "|---|---|---|---|---|--:|"]
    for label, _, s, _ in rows:
        cells = [", ".join(f(s[key][k]) for k in layers) for key in ("firing", "alignment", "info_obs", "info_action")]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {f(s['free_riders'], '.1f')} |")
    lines += ["", "## Figures of one run per condition (seed 0)", ""]
    for label, stem, _, _ in rows:
        lines.append(f"- {label}: " + ", ".join(f"![{p}](emergence/{stem}_{p})" for p in
                                                ("activity.png", "lesions.png", "influence.png",
                                                 "information_alignment.png")))
    lines += ["", "The iterated prisoner's dilemma between neurons, with and without sight of the partner's last move,",
              "has a page of its own: [dilemma.md](dilemma.md) (`python -m narla.study.dilemma`).", ""]
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write(out / "emergence.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Analyse the runs of each condition and write the page."""
    parser = argparse.ArgumentParser(prog="python -m narla.study.emergence", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/table1/paper"), help="the Table 1 paper runs")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where emergence.md goes")
    parser.add_argument("--seeds", default="0-2", help="seeds per condition (default 0-2)")
    parser.add_argument("--layers", type=int, default=2, help="hidden layers of the cells analysed (default 2)")
    parser.add_argument("--episodes", type=int, default=16, help="episodes per measurement (default 16)")
    args = parser.parse_args(argv)
    from narla.sweep import parse_seeds

    start = time.perf_counter()
    rows = []
    try:
        for condition, label in CONDITIONS:
            stem = f"{condition}_L{args.layers}"
            results, runs = [], []
            for seed in parse_seeds(args.seeds):
                run_dir = args.runs / stem / f"seed{seed}"
                if not (run_dir / "model.pt").is_file():
                    raise ScenarioError(f"--runs: {str(run_dir)!r} has no model.pt; run python -m "
                                        "narla.analysis.table1 first")
                result = analyze_run(run_dir, args.episodes)
                results.append(result)
                runs.append((f"seed {seed}", *_episodes(run_dir)))
                if seed == parse_seeds(args.seeds)[0]:
                    (args.out / "emergence").mkdir(parents=True, exist_ok=True)
                    pngs = figures(result, args.out / "emergence")
                    for p in pngs:
                        (args.out / "emergence" / p).replace(args.out / "emergence" / f"{stem}_{p}")
            rows.append((label, stem, condition_summary(results), runs))
    except ScenarioError as err:
        print(f"emergence: error: {err}", file=sys.stderr)
        return 2
    command = COMMAND.format(runs=args.runs, out=args.out)
    path = render(rows, args.out, command, time.perf_counter() - start, args.episodes)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
