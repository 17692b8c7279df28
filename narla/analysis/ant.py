"""Ant: the Cooperator against the attention baseline, trained side by side, then each replayed for 10 episodes.

``python -m narla.analysis.ant --out docs/results [--episodes 64] [--steps 1000]`` trains
``scenarios/ant_cooperator.yaml`` and ``scenarios/ant_attention.yaml`` in two worker processes (each with its
Ant copies stepped in-process, one core each), writes their results directories under ``OUT/ant_runs/``, plots
return against episodes and against environment steps (``OUT/ant_return.png``), evaluates each learned policy
over 10 episodes (``narla eval``) and writes the table ``OUT/ant.json``. ``docs/results/ant.md`` reports it.
"""

from __future__ import annotations

import argparse
import csv
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SCENARIOS = ("ant_cooperator", "ant_attention")


def train_one(name: str, out: str, episodes: int, steps: int, seed: int) -> dict:
    """Train one scenario into ``out`` (Ant copies in this process) and evaluate it over 10 episodes."""
    import torch

    from narla.evaluate import evaluate
    from narla.scenario import load
    from narla.training import Trainer

    torch.set_num_threads(1)  # one core per scenario: more threads only contend on a small machine

    overrides = [
        "task.options={asynchronous: false, normalize_obs: true}",
        f"task.max_episode_steps={steps}",
        f"training.max_episodes={episodes}",
        f"seed={seed}",
    ]
    trainer = Trainer(load(f"scenarios/{name}.yaml", overrides), out, progress=False)
    summary = trainer.train()
    trainer.run.task.close()
    return {"summary": summary, "eval": evaluate(out, 10)}


def curve(run_dir: Path) -> tuple[list[int], list[int], list[float]]:
    """Episode index, cumulative environment steps and return of every episode of a run."""
    episodes, steps, returns = [], [], []
    total = 0
    with open(run_dir / "episodes.csv", newline="") as f:
        for row in csv.DictReader(f):
            total += int(float(row["length"]))
            episodes.append(int(row["episode"]))
            steps.append(total)
            returns.append(float(row["return"]))
    return episodes, steps, returns


def plot(out: Path) -> None:
    """Return vs episodes and vs environment steps, one line per scenario (16-episode running mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in SCENARIOS:
        episodes, steps, returns = curve(out / "ant_runs" / name)
        windows = [returns[max(0, i - 15) : i + 1] for i in range(len(returns))]
        mean = [sum(w) / len(w) for w in windows]
        axes[0].plot(episodes, mean, label=name)
        axes[1].plot(steps, mean, label=name)
    axes[0].set_xlabel("episode")
    axes[1].set_xlabel("environment steps")
    for ax in axes:
        ax.set_ylabel("return (16-episode mean)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ant_return.png", dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--episodes", type=int, default=64, help="training episodes per scenario")
    parser.add_argument("--steps", type=int, default=1000, help="steps per episode (Ant's own limit: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    runs = args.out / "ant_runs"
    runs.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        futures = {
            name: pool.submit(train_one, name, str(runs / name), args.episodes, args.steps, args.seed)
            for name in SCENARIOS
        }
        results = {name: f.result() for name, f in futures.items()}
    table = {}
    for name, res in results.items():
        _, steps, returns = curve(runs / name)
        table[name] = {
            "episodes": len(returns),
            "env_steps": steps[-1] if steps else 0,
            "wall_time_s": res["summary"]["wall_time_s"],
            "first16_mean_return": sum(returns[:16]) / max(len(returns[:16]), 1),
            "last16_mean_return": res["summary"]["final_mean_return"],
            "best16_mean_return": res["summary"]["best_mean_return"],
            "eval10_mean_return": res["eval"]["mean_return"],
            "eval10_std_return": res["eval"]["std_return"],
        }
    (args.out / "ant.json").write_text(json.dumps(table, indent=2) + "\n")
    plot(args.out)
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
