"""The prisoner's dilemma between neurons: do pairs that see each other's last move cooperate more?

Trains ``scenarios/dilemma_seeing.yaml`` and ``scenarios/dilemma_blind.yaml`` (narla sweep, seeds as one batch),
then replays each learned policy and measures, over the pairs ``(n1_0, n1_1), (n1_2, n1_3), ...``:

- the cooperation rate (a player fires) and the rates of mutual cooperation and mutual defection;
- reciprocity: per player, P(cooperate | the partner cooperated on the tick before) − P(cooperate | it
  defected), averaged over the players whose partner did both; a tit-for-tat player scores 1, a player that
  ignores its partner 0;

and writes ``docs/results/dilemma.md``::

    python -m narla.study.dilemma --runs runs/dilemma --out docs/results
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from narla.record import record
from narla.results import atomic_write
from narla.scenario import ScenarioError
from narla.sweep import load_record, make_trials, parse_seeds, run_sweep

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
CONDITIONS = [("dilemma_seeing", "sees the partner's last move (context)"), ("dilemma_blind", "blind")]
COMMAND = "python -m narla.study.dilemma --runs {runs} --out {out}"


def play_statistics(spikes: torch.Tensor, valid: torch.Tensor, players: int) -> dict[str, float]:
    """Cooperation statistics of the first ``players`` neurons (paired two by two) over ``spikes[E, T, N]``."""
    s = spikes[..., :players]
    me, partner = s, torch.stack([s[..., 1::2], s[..., 0::2]], -1).flatten(-2)
    mask = valid.bool()
    coop = float(me[mask].mean())
    a, b = s[..., 0::2][mask], s[..., 1::2][mask]
    both, neither = float((a * b).mean()), float(((1 - a) * (1 - b)).mean())
    prev, now = partner[:, :-1], me[:, 1:]
    keep = (mask[:, 1:] & mask[:, :-1]).unsqueeze(-1).float()
    after_c, after_d = keep * (prev == 1), keep * (prev == 0)  # [E, T-1, P] per player
    n_c, n_d = after_c.sum((0, 1)), after_d.sum((0, 1))
    p_c = (now * after_c).sum((0, 1)) / n_c.clamp(min=1)
    p_d = (now * after_d).sum((0, 1)) / n_d.clamp(min=1)
    defined = (n_c > 0) & (n_d > 0)  # a player whose partner both cooperated and defected at some point
    rec = float((p_c - p_d)[defined].mean()) if bool(defined.any()) else float("nan")
    return {"cooperation": coop, "mutual_cooperation": both, "mutual_defection": neither, "reciprocity": rec}


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, replay every run, write ``dilemma.md``."""
    parser = argparse.ArgumentParser(prog="python -m narla.study.dilemma", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/dilemma"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--episodes", type=int, default=32, help="replayed episodes per run (default 32)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        trials = make_trials([SCENARIOS / f"{c}.yaml" for c, _ in CONDITIONS], {}, parse_seeds(args.seeds),
                             args.runs)
        run_sweep(trials, args.workers, progress=False)
        rows = []
        training_s = 0.0
        for condition, label in CONDITIONS:
            walls = [load_record(t)["wall_time_s"] or 0.0 for t in trials if t.cell == condition]
            training_s += max(walls)  # the seeds of a condition train as one batch
            stats = []
            for t in trials:
                if t.cell != condition:
                    continue
                r = load_record(t)
                if r["status"] in (None, "missing") or str(r["status"]).startswith("failed"):
                    raise ScenarioError(f"run {t.dir} did not finish: {r['status']}")
                rec = record(t.dir, args.episodes, rewards=False)
                spikes = torch.as_tensor(rec["spikes"])
                valid = torch.arange(spikes.shape[1]).unsqueeze(0) < torch.as_tensor(rec["length"]).unsqueeze(1)
                stats.append(play_statistics(spikes, valid, players=16))
            rows.append((label, condition, {k: [s[k] for s in stats] for k in stats[0]}))
    except ScenarioError as err:
        print(f"dilemma: error: {err}", file=sys.stderr)
        return 2

    def cell(values: list[float]) -> str:
        values = [v for v in values if v == v]
        if not values:
            return "—"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.2f} ± {sd:.2f}"

    wall = time.perf_counter() - start
    lines = [
        "# The prisoner's dilemma between neurons",
        "",
        "8 pairs of hidden neurons play the iterated prisoner's dilemma through their spikes (fire = cooperate;",
        "payoffs T 5 > R 3 > P 1 > S 0, `narla/rewards/dilemma.py`), each an independent REINFORCE learner paid only",
        "its payoff; CartPole only provides the ticks. In one condition each neuron sees its layer's moves of the",
        "tick before (its partner's included) through context edges; in the other it plays blind. After training",
        f"(`scenarios/dilemma_*.yaml`: {len(parse_seeds(args.seeds))} seeds, 1,600 episodes each: 200 updates of 8",
        f"environment copies, episodes of at most 100 ticks), each policy replays {args.episodes} episodes. Mean ± sd",
        "over seeds:",
        "",
        f"Regenerate: `{COMMAND.format(runs=args.runs, out=args.out)}` (training {training_s / 60:.1f} min, from the "
        f"runs' summaries; replays and this page {wall / 60:.1f} min).",
        "",
        "| players | cooperation rate | mutual cooperation | mutual defection | "
        "reciprocity: P(C after C) − P(C after D) |",
        "|---|--:|--:|--:|--:|",
    ]
    for label, _, s in rows:
        lines.append(f"| {label} | {cell(s['cooperation'])} | {cell(s['mutual_cooperation'])} | "
                     f"{cell(s['mutual_defection'])} | {cell(s['reciprocity'])} |")
    lines += ["", "Defection dominates a single round (T > R, P > S), so independent learners that cannot condition",
              "on the partner's move are expected to drift to mutual defection; reciprocity measures whether the",
              "seeing players condition their move on their partner's last one.", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    path = atomic_write(args.out / "dilemma.md", "\n".join(lines))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
