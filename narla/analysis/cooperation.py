"""Cooperator vs attention baseline vs point neurons, on cart-pole swing-up and CartPole.

Regenerate ``docs/results/cooperation.md`` and its learning curves with::

    python -m narla.analysis.cooperation --out docs/results

Three models share one network (``narla.cooperator``: tied permutation-invariant sensory neurons, motor
groups, proximal + distal + feedback + previous-action context) and differ only in how a neuron combines
its feedforward field R with its context C:

- ``cooperator``: C linear in the context inputs, output ``cooperation(R, C) = R² + 2R + 2C(1 + |R|)``;
- ``attention``: C by softmax attention across the context sources, output ``R + C`` (``narla.neurons.attention``);
- ``point``: C linear, output ``R + C`` (a point neuron; same parameters as the cooperator).

Every run uses the same fixed budget (``--episodes`` per run, ``--num-envs`` copies per update, episodes
counted per copy) and ``--seeds`` seeds. Swing-up episodes are the full 1,000 steps.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

MODELS = {
    "cooperator": [],
    "attention": ["context.integration=attention", "neuron.amtf=additive"],
    "point": ["neuron.amtf=additive"],
}
TASKS = {
    "swingup": {"scenario": "scenarios/swingup_cooperator.yaml", "target": 600.0},
    "cartpole": {"scenario": "scenarios/cartpole_cooperator.yaml", "target": 195.0},
}


def train_one(task: str, model: str, seed: int, episodes: int, num_envs: int) -> list[float]:
    """Train one (task, model, seed) for ``episodes`` episodes; the per-episode returns."""
    torch.set_num_threads(1)
    from narla.scenario import load
    from narla.training import Trainer

    overrides = [
        *MODELS[model],
        f"seed={seed}",
        f"task.num_envs={num_envs}",
        f"training.max_episodes={episodes}",
        "training.stop_when_solved=false",
    ]
    scenario = load(TASKS[task]["scenario"], overrides)
    trainer = Trainer(scenario, out_dir=None, progress=False)
    trainer.train()
    return trainer.returns


def batch_means(returns: list[float], num_envs: int) -> list[float]:
    """Mean return of each update's batch of ``num_envs`` episodes (the learning curve's points)."""
    return [statistics.fmean(returns[i : i + num_envs]) for i in range(0, len(returns), num_envs)]


def episodes_to(returns: list[float], num_envs: int, target: float) -> int | None:
    """Episodes (counted per copy) until the first batch whose mean return reaches ``target``; None if never."""
    for k, mean in enumerate(batch_means(returns, num_envs)):
        if mean >= target:
            return (k + 1) * num_envs
    return None


def _fmt(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {sd:.1f}"


def plot(task: str, curves: dict[str, list[list[float]]], num_envs: int, path: Path) -> None:
    """Learning curves: mean batch return over seeds (line) ± one standard deviation (band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model, runs in curves.items():
        points = torch.tensor([batch_means(r, num_envs) for r in runs])
        x = (torch.arange(points.shape[1]) + 1) * num_envs
        mean, sd = points.mean(0), points.std(0) if len(runs) > 1 else torch.zeros(points.shape[1])
        ax.plot(x, mean, label=model)
        ax.fill_between(x, mean - sd, mean + sd, alpha=0.2)
    ax.axhline(TASKS[task]["target"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("episodes (per copy)")
    ax.set_ylabel("fitness (episode return)")
    ax.set_title(f"{task}: {len(next(iter(curves.values())))} seeds, {num_envs} copies per update")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(task: str, curves: dict[str, list[list[float]]], num_envs: int) -> list[str]:
    target = TASKS[task]["target"]
    rows = [
        f"| model | final fitness (last {2 * num_envs} eps) | best batch mean | episodes to {target:.0f} "
        "(runs reaching it) |",
        "|---|---|---|---|",
    ]
    for model, runs in curves.items():
        final = [statistics.fmean(r[-2 * num_envs :]) for r in runs]
        best = [max(batch_means(r, num_envs)) for r in runs]
        reached = [e for e in (episodes_to(r, num_envs, target) for r in runs) if e is not None]
        hit = f"{statistics.median(reached):.0f} median ({len(reached)}/{len(runs)})" if reached else (
            f"not reached (0/{len(runs)})"
        )
        rows.append(f"| {model} | {_fmt(final)} | {_fmt(best)} | {hit} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/results", help="folder for cooperation.md and the PNGs")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--num-envs", type=int, default=16, help="copies per update (B)")
    parser.add_argument("--swingup-episodes", type=int, default=256, help="episodes per swing-up run")
    parser.add_argument("--cartpole-episodes", type=int, default=480, help="episodes per CartPole run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = {"swingup": args.swingup_episodes, "cartpole": args.cartpole_episodes}
    jobs = [(t, m, s, budget[t], args.num_envs) for t in TASKS for m in MODELS for s in range(args.seeds)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(train_one, *zip(*jobs, strict=True)))
    wall = time.perf_counter() - start
    curves: dict[str, dict[str, list[list[float]]]] = {t: {m: [] for m in MODELS} for t in TASKS}
    for (t, m, _, _, _), returns in zip(jobs, results, strict=True):
        curves[t][m].append(returns)

    command = "python -m narla.analysis.cooperation --out docs/results"
    lines = [
        "# Cooperator vs attention baseline vs point neurons",
        "",
        f"Regenerate: `{command}` (defaults: {args.seeds} seeds, {args.num_envs} copies per update, "
        f"{args.swingup_episodes} swing-up / {args.cartpole_episodes} CartPole episodes per run; "
        f"this run took {wall / 60:.1f} min wall with {args.workers} workers on a shared 2-core CPU).",
        "",
        "Models (one network, `narla.cooperator`, differing only in how each neuron combines R and C): "
        "**cooperator** = linear C, `cooperation(R, C)`; **attention** = C by softmax attention across the "
        "neuron's context sources, `R + C` (parameter count within 2 %); **point** = linear C, `R + C`. "
        "Every neuron learns by per-neuron REINFORCE on the task reward (scenarios "
        "`scenarios/swingup_cooperator.yaml`, `swingup_attention.yaml`, `cartpole_cooperator.yaml`). "
        "Fitness is the episode return; a curve point is the mean return of one update's batch of copies; "
        "'episodes to X' is the number of episodes (per copy) until the first batch whose mean reaches X, "
        "median over the runs that reach it. ± is the standard deviation over seeds.",
        "",
    ]
    for task in TASKS:
        name = f"cooperation_{task}.png"
        plot(task, curves[task], args.num_envs, out / name)
        lines += [f"## {task}", "", *table(task, curves[task], args.num_envs), "", f"![{task}]({name})", ""]
    (out / "cooperation_returns.json").write_text(json.dumps(curves) + "\n")
    best = {m: max(max(batch_means(r, args.num_envs)) for r in curves["swingup"][m]) for m in MODELS}
    tail = 2 * args.num_envs
    final = {m: statistics.fmean(statistics.fmean(r[-tail:]) for r in curves["swingup"][m]) for m in MODELS}
    ranking = " > ".join(f"{m} ({final[m]:.1f})" for m in sorted(MODELS, key=final.get, reverse=True))
    reached = episodes_to(max(curves["swingup"]["cooperator"], key=lambda r: max(r)), args.num_envs, 600.0)
    lines += [
        "## The paper's claim",
        "",
        "Adeel et al. report swing-up fitness 600 within 23 episodes for the Cooperator and about 1,000 for the "
        "Transformer baseline (trained with evolution strategies on their AttentionNeuron code). "
        + (
            f"Here the best swing-up batch mean of any Cooperator run is {best['cooperator']:.1f} "
            f"(attention {best['attention']:.1f}, point {best['point']:.1f}) within {args.swingup_episodes} "
            "episodes, so **the claim does not hold in this setting and budget**."
            if reached is None
            else f"Here a Cooperator run reaches a batch mean of 600 after {reached} episodes."
        ),
        f"Ranking by final swing-up fitness at this budget: {ranking}; with curves this flat and seed spreads this "
        "wide, the ordering says little. Per-episode returns of every run: `cooperation_returns.json`.",
        "",
        "Differences that matter: every neuron is a Bernoulli RL agent trained by its own REINFORCE gradient "
        "(not one ES-optimized policy), the sensory code is spikes pooled per channel (not attention over "
        "real-valued messages), and the budget is "
        f"{args.swingup_episodes} episodes per run (a {math.ceil(args.swingup_episodes / args.num_envs)}-update "
        "run), far below the paper's.",
        "",
    ]
    (out / "cooperation.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
