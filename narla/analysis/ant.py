"""PyBullet Ant: the Cooperator vs AttentionNeuron vs a plain layered network, beside a random policy.

Regenerate ``docs/results/ant.md`` (and ``ant_curves.png``, ``ant.json``) with::

    python -m narla.analysis.ant --runs runs/ant --out docs/results --env-steps 4000000

Steps, in order, each skipped when its result is already there (so an interrupted study resumes):

1. **Throughput** (``--bench-seconds``): environment steps/s of a bare single-process gymnasium loop on one Ant
   copy with random actions, against narla's Ant task stepping the scenario's ``B`` copies in worker processes
   while the Cooperator acts for all of them at once, measured one after the other in this invocation.
2. **Random policy**: ``--test-episodes`` episodes of ``action_space.sample()``.
3. **Training**: each of ``scenarios/ant_{cooperator,attention,layered,cooperator_slot}.yaml`` is one resumable
   ``narla`` run in ``RUNS/MODEL`` (checkpoints every 10 generations), trained by whole-network CMA-ES until its
   episodes have taken ``--env-steps`` environment steps (``training.max_env_steps``: every model gets the same
   experience, whatever its episode lengths), or until ``--max-minutes`` of training in this invocation (the run
   then resumes next time). A larger ``--env-steps`` later extends the same runs.
4. **Test**: the mean parameters play ``--test-episodes`` episodes, plainly and with a new feature order each
   episode (``narla eval --shuffle``).

A *generation* is ``B`` copies each playing one episode; *environment steps* sum the episodes' lengths.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from narla.results import atomic_write

MODELS = ("cooperator", "attention", "layered", "cooperator_slot")
GOAL = 1000.0


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def bare_gym_steps_per_s(seconds: float, seed: int = 0) -> float:
    """Environment steps/s of one Ant copy stepped with random actions in this process (no narla)."""
    import gymnasium as gym

    from narla.tasks.ant import ANT_ENV_ID

    env = gym.make(ANT_ENV_ID)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def narla_steps_per_s(scenario: str, seconds: float, asynchronous: bool) -> float:
    """Environment steps/s of ``scenario``'s ``B`` Ant copies while its network acts for all of them each tick."""
    import torch

    from narla import scenario as scenarios
    from narla.training import build

    overrides = [] if asynchronous else ["task.options.asynchronous=false", "task.options.num_workers=null"]
    run = build(scenarios.load(scenario, overrides), learner=False)
    engine, task = run.engine, run.task
    try:
        obs = task.reset(seed=0)
        engine.reset_memory(task.num_envs)
        prev = torch.zeros(engine.num_sensors + engine.num_neurons, task.num_envs)
        prev_action = torch.zeros(task.num_envs, engine.population.action_dim)
        ticks, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            prev, actions = engine.tick(obs, prev, prev_action=prev_action)
            action = engine.readout(actions)
            obs, _, terminated, truncated = task.step(action)
            engine.keep_memory(~(terminated | truncated))
            prev_action = action * (~(terminated | truncated)).float().unsqueeze(1)
            ticks += 1
        return ticks * task.num_envs / (time.perf_counter() - start)
    finally:
        task.close()


def random_policy(episodes: int, seed: int = 0) -> dict:
    """Returns of ``episodes`` full Ant episodes of uniformly random actions."""
    import gymnasium as gym

    from narla.tasks.ant import ANT_ENV_ID

    env = gym.make(ANT_ENV_ID)
    env.action_space.seed(seed)
    returns, steps = [], 0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
    env.close()
    return {"returns": returns, "mean": statistics.fmean(returns), "std": statistics.pstdev(returns), "steps": steps}


def cached_random_policy(runs: Path, episodes: int, seed: int = 0) -> dict:
    """:func:`random_policy`, kept in ``RUNS/random.json`` and measured again only for another number of episodes."""
    rnd = _read(runs / "random.json")
    if rnd is None or len(rnd["returns"]) != episodes:
        rnd = random_policy(episodes, seed)
        atomic_write(runs / "random.json", json.dumps(rnd, indent=2) + "\n")
    return rnd


def train(model: str, runs: Path, env_steps: int, max_minutes: float | None, seed: int) -> dict:
    """Train (or resume) ``RUNS/MODEL`` until its episodes have taken ``env_steps`` environment steps; returns its
    summary."""
    import torch

    torch.set_num_threads(1)
    from narla import scenario as scenarios
    from narla.checkpoint import CHECKPOINT, logged_env_steps
    from narla.training import Trainer, resume

    out = runs / model
    path = Path("scenarios") / f"ant_{model}.yaml"
    num_envs = scenarios.load(path).task.num_envs
    extend = [f"training.max_env_steps={env_steps}", "training.max_episodes=100000000"]
    # This invocation's cap replaces whatever cap the run recorded from an earlier one.
    extend.append(f"training.max_wall_s={max_minutes * 60 if max_minutes is not None else 'null'}")
    summary = _read(out / "summary.json")
    if summary is not None and logged_env_steps(out) >= env_steps:
        return summary
    if (out / CHECKPOINT).is_file():
        trainer = resume(out, extend, progress=True)
    else:
        scenario = scenarios.load(path, [f"seed={seed}", f"training.checkpoint_every={10 * num_envs}", *extend])
        trainer = Trainer(scenario, out, progress=True, overwrite=True)
    try:
        return trainer.train()
    finally:
        trainer.run.task.close()


def test(run_dir: Path, episodes: int) -> dict:
    """Plain and shuffled test scores of the mean parameters (cached in ``test.json`` for the model it tested and the
    number of test episodes)."""
    from narla.evaluate import evaluate

    summary = _read(run_dir / "summary.json") or {}
    cached = _read(run_dir / "test.json")
    if (cached is not None and cached.get("episodes_trained") == summary.get("episodes")
            and len(cached.get("plain", {}).get("returns", [])) == episodes):
        return cached
    result = {"episodes_trained": summary.get("episodes")}
    for kind, shuffle in (("plain", False), ("shuffled", True)):
        stats = evaluate(run_dir, episodes, num_envs=episodes, shuffle=shuffle)
        result[kind] = {"mean": stats["mean_return"], "std": stats["std_return"], "returns": stats["returns"]}
    atomic_write(run_dir / "test.json", json.dumps(result, indent=2) + "\n")
    return result


def generation_curve(run_dir: Path, num_envs: int) -> dict[str, list[float]]:
    """Per generation: population mean return, best copy's return, environment steps so far; and the training
    wall clock of the last episode (seconds, summed over every invocation that trained the run)."""
    with open(run_dir / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mean, best, steps, total = [], [], [], 0
    for g in range(len(rows) // num_envs):
        batch = rows[g * num_envs : (g + 1) * num_envs]
        returns = [float(r["return"]) for r in batch]
        total += sum(int(float(r["length"])) for r in batch)
        mean.append(statistics.fmean(returns))
        best.append(max(returns))
        steps.append(total)
    return {"mean": mean, "best": best, "steps": steps, "wall_s": float(rows[-1]["wall_clock"]) if rows else 0.0}


def plot(curves: dict[str, dict], random_mean: float, path: Path) -> None:
    """Population mean and best return against generations and against environment steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for model, c in curves.items():
        gens = range(1, len(c["mean"]) + 1)
        for ax, x in zip(axes, (gens, c["steps"]), strict=True):
            (line,) = ax.plot(x, c["mean"], label=f"{model} (population mean)")
            ax.plot(x, c["best"], color=line.get_color(), alpha=0.35, linewidth=0.8)
    for ax, label in zip(axes, ("generations", "environment steps"), strict=True):
        ax.axhline(random_mean, color="grey", linestyle=":", linewidth=1, label="random policy")
        ax.axhline(GOAL, color="black", linestyle="--", linewidth=0.8, label=f"goal {GOAL:.0f}")
        ax.set_xlabel(label)
        ax.set_ylabel("return (faint: best copy)")
        ax.legend(fontsize=8)
    fig.suptitle("PyBullet AntBulletEnv-v0, whole-network CMA-ES")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _params(run_dir: Path) -> int:
    import torch

    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    return sum(v.numel() for k, v in saved["population"].items() if k != "positions" and v.is_floating_point())


def render(data: dict, args: argparse.Namespace) -> str:
    """The markdown page."""
    bench, rnd = data["throughput"], data["random"]
    flags = "" if args.test_episodes == 10 else f" --test-episodes {args.test_episodes}"
    flags += "" if args.models == ",".join(MODELS) else f" --models {args.models}"
    lines = [
        "# PyBullet Ant: the Cooperator vs AttentionNeuron vs a plain layered network",
        "",
        f"Regenerate: `python -m narla.analysis.ant --runs {args.runs} --out {args.out} --env-steps "
        f"{args.env_steps}{flags}` (add `--max-minutes M` to cap each model's training in one invocation; runs resume "
        "from their checkpoints, finished steps are skipped, and a larger `--env-steps` extends them). Measured on "
        "this project's 2-core CPU machine; PyBullet runs on the CPU only.",
        "",
        "Networks (`scenarios/ant_{cooperator,attention,layered,cooperator_slot}.yaml`): **cooperator** =",
        "AttentionNeuron's Ant network (28 sensory neurons with a tied LSTM memory, 32 latent neurons with fixed",
        "positional queries, a head of 32 rate neurons, 8 rate motor neurons) with keys modulated by",
        "relu6(k² + 2k + c(1 + |k|)), the context c one learned map of the queries shared by all sensory neurons",
        "(permutation invariant); **attention** = the same network unmodulated; both have keys and queries wide",
        "enough for equal parameter counts (within 1 %); **layered** = a plain 28-32-32-8 network of tanh rate",
        "neurons; **cooperator_slot** = the Cooperator with the authors' context map, one row of a Linear(M → S)",
        "per input position, which a shuffle moves onto another feature (not permutation invariant). All:",
        "whole-network CMA-ES (σ0 0.1), 16 members × 1 episode per generation, running observation normalisation,",
        "the task reward, trained to the same budget of environment steps (the last generation may overshoot it by",
        "up to 16 episodes). The authors ran 128 members × 16 rollouts per generation; AttentionNeuron 256 × 16 for",
        "12,000 generations.",
        "",
        "## Throughput (environment steps/s, measured one after the other in one invocation)",
        "",
        "| loop | steps/s | × bare gymnasium |",
        "|---|--:|--:|",
        f"| bare gymnasium, 1 copy, random actions, 1 process | {bench['bare']:,.0f} | 1.00 |",
    ]
    for key, label in (("inprocess", "narla, 16 copies in the training process, Cooperator acting"),
                       ("sharded", f"narla, 16 copies in {bench['num_workers']} worker processes, Cooperator acting")):
        lines.append(f"| {label} | {bench[key]:,.0f} | {bench[key] / bench['bare']:.2f} |")
    lines += [
        "",
        "The workers step their copies while the training process waits; the network's tick, the observation",
        "normalisation and the reward bookkeeping run between steps, one after the other, so two workers give",
        "less than twice the in-process rate at 16 copies.",
        "",
        f"## Results ({args.test_episodes} test episodes of the mean parameters; *shuffled*: a new feature order "
        "each episode)",
        "",
        "| model | params | generations | env steps | train wall (all invocations) | last-gen population mean | "
        "best population "
        "mean | test (plain) | test (shuffled) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        f"| random policy | 0 | — | {rnd['steps']:,} | — | — | — | {rnd['mean']:.1f} ± {rnd['std']:.1f} | — |",
    ]
    for model, r in data["models"].items():
        c = r["curve"]
        lines.append(
            f"| {model} | {r['params']:,} | {len(c['mean'])} | {c['steps'][-1]:,}"
            f"{'' if c['steps'][-1] >= args.env_steps else ' (short of the budget)'} | "
            f"{c['wall_s'] / 60:.1f} min | {c['mean'][-1]:.1f} | {max(c['mean']):.1f} | "
            f"{r['test']['plain']['mean']:.1f} ± {r['test']['plain']['std']:.1f} | "
            f"{r['test']['shuffled']['mean']:.1f} ± {r['test']['shuffled']['std']:.1f} |"
        )
    lines += ["", "![Ant curves](ant_curves.png)", "", "## Goals", ""]
    models = data["models"]
    if "cooperator" in models:
        coop = models["cooperator"]["test"]
        plain, shuffled = coop["plain"]["mean"], coop["shuffled"]["mean"]
        lines.append(f"- Cooperator test score ≥ {GOAL:.0f}: **{'met' if plain >= GOAL else 'not met'}** "
                     f"({plain:.1f}; random policy {rnd['mean']:.1f}).")
        if "attention" in models:
            base = models["attention"]["test"]["plain"]["mean"]
            steps = (models["cooperator"]["curve"]["steps"][-1], models["attention"]["curve"]["steps"][-1])
            lines.append(
                f"- Cooperator ≥ AttentionNeuron at equal parameters and environment steps: "
                f"**{'met' if plain >= base else 'not met'}** ({plain:.1f} vs {base:.1f}, after {steps[0]:,} vs "
                f"{steps[1]:,} environment steps)."
            )
        within = abs(shuffled - plain) <= 0.1 * abs(plain)
        lines.append(f"- Cooperator's shuffled score within 10 % of its plain score: "
                     f"**{'met' if within else 'not met'}** ({shuffled:.1f} vs {plain:.1f}).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/ant"), help="where the runs live (default runs/ant)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where ant.md and its figure go")
    parser.add_argument("--env-steps", type=int, default=4_000_000,
                        help="environment steps of training per model (default 4,000,000)")
    parser.add_argument("--max-minutes", type=float, help="cap each model's training in this invocation (resumes)")
    parser.add_argument("--no-train", action="store_true",
                        help="train nothing: test and report each model's run as it stands (its last checkpoint)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--test-episodes", type=int, default=10, help="test episodes per model (default 10)")
    parser.add_argument("--bench-seconds", type=float, default=20.0, help="seconds per throughput loop (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the network's work per tick is small; more threads only fight the Ant workers
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad:
        parser.error(f"--models: unknown {bad}; allowed: {', '.join(MODELS)}")
    if args.env_steps < 1 or args.test_episodes < 1:
        parser.error("--env-steps and --test-episodes must be >= 1")
    args.runs.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    scenario = "scenarios/ant_cooperator.yaml"
    bench = _read(args.runs / "throughput.json")
    if bench is None:
        from narla import scenario as scenarios

        bench = {
            "seconds": args.bench_seconds,
            "num_workers": scenarios.load(scenario).task.options.get("num_workers"),
            "bare": bare_gym_steps_per_s(args.bench_seconds),
            "inprocess": narla_steps_per_s(scenario, args.bench_seconds, asynchronous=False),
            "sharded": narla_steps_per_s(scenario, args.bench_seconds, asynchronous=True),
        }
        atomic_write(args.runs / "throughput.json", json.dumps(bench, indent=2) + "\n")
    print(f"throughput: bare {bench['bare']:,.0f}, narla in-process {bench['inprocess']:,.0f}, narla in "
          f"{bench['num_workers']} workers {bench['sharded']:,.0f} env steps/s", flush=True)
    rnd = cached_random_policy(args.runs, args.test_episodes, args.seed)
    print(f"random policy: {rnd['mean']:.1f} ± {rnd['std']:.1f}", flush=True)
    from narla import scenario as scenarios

    results = {}
    for model in models:
        run_dir = args.runs / model
        if args.no_train:
            summary = _read(run_dir / "summary.json")
            if summary is None:
                print(f"{model}: no run in {run_dir}; skipped", flush=True)
                continue
        else:
            summary = train(model, args.runs, args.env_steps, args.max_minutes, args.seed)
        num_envs = scenarios.load(f"scenarios/ant_{model}.yaml").task.num_envs
        results[model] = {
            "summary": summary,
            "curve": generation_curve(run_dir, num_envs),
            "test": test(run_dir, args.test_episodes),
            "params": _params(run_dir),
        }
        print(f"{model}: {summary['episodes'] // num_envs} generations, test "
              f"{results[model]['test']['plain']['mean']:.1f} (shuffled "
              f"{results[model]['test']['shuffled']['mean']:.1f})", flush=True)
    data = {"throughput": bench, "random": rnd, "models": results}
    plot({m: r["curve"] for m, r in results.items()}, rnd["mean"], args.out / "ant_curves.png")
    atomic_write(args.out / "ant.json", json.dumps(data, indent=2) + "\n")
    atomic_write(args.out / "ant.md", render(data, args))
    print(f"wrote {args.out / 'ant.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
