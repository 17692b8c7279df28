"""PyBullet Ant by distillation: a PPO teacher, then DAgger into the Cooperator, AttentionNeuron and a layered net.

Regenerate ``docs/results/ant_distill.md`` (and ``ant_distill.png``, ``ant_distill.json``) with::

    python -m narla.analysis.ant_distill --runs runs/ant_distill --out docs/results

Steps, in order, each resumed or skipped when its result is already there:

1. **Random policy**: ``--test-episodes`` episodes of ``action_space.sample()``.
2. **Teacher**: a fully connected Gaussian policy trained by PPO (:mod:`narla.learning.ppo`) for
   ``--teacher-steps`` environment steps, ``B = 16`` copies in 2 worker processes (``RUNS/teacher``).
3. **Students**: each of ``scenarios/ant_{cooperator,attention,layered}.yaml``'s networks is distilled from that
   one teacher by DAgger (:mod:`narla.learning.distill`) for ``--iterations`` iterations of 1,000 ticks of the
   same 16 copies (``RUNS/MODEL``); every student gets the same teacher and the same environment steps.
4. **Controls and tuned students**: behaviour cloning (``--bc-iterations``, ``RUNS/MODEL_bc``) and narla's own
   distillation settings (:func:`tuned_config`, ``--tuned-models``, ``RUNS/MODEL_tuned``), each a labelled table.
   Their CMA-ES fine-tunes (``narla run scenarios/ant_MODEL_tuned_finetune.yaml``) are listed when they exist, and
   each is fine-tuned further by PPO (:mod:`narla.learning.student_ppo`, ``--ppo-models``, ``--ppo-steps``,
   ``RUNS/MODEL_tuned_finetune_ppo``).
5. **Test**: the teacher's mean action and each student play ``--test-episodes`` episodes, plainly and with a
   new feature order each episode (``narla eval --shuffle``; the teacher reads its inputs by position).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
from pathlib import Path

from narla.analysis.ant import GOAL, _params, _read, cached_random_policy
from narla.results import atomic_write

MODELS = ("cooperator", "attention", "layered")
PPO_STEPS = 1_000_000  # each PPO fine-tune's own environment steps
NUM_ENVS, NUM_WORKERS = 16, 2
TABLE_HEAD = ("| policy | params | env steps (teacher + own) | train wall | imitation loss (last iteration) "
              "| test (plain) | test (shuffled) |", "|---|--:|--:|--:|--:|--:|--:|")


def tuned_config():
    """narla's own distillation settings (not AttentionNeuron's route, a labelled row of its own): 21 iterations of
    behaviour cloning before DAgger's β decays, twice the training passes per iteration, the compiled tick."""
    from narla.learning.distill import DistillConfig

    return DistillConfig(iterations=60, warmup=20, epochs=16, compile=True)


def ppo_config():
    """The PPO fine-tune's settings (narla's own, a labelled row): the student's tick compiled."""
    from narla.learning.student_ppo import StudentPPOConfig

    return StudentPPOConfig(compile=True)


def train_teacher(runs: Path, env_steps: int, seed: int) -> dict:
    """Train (or resume) the PPO teacher in ``RUNS/teacher`` up to ``env_steps``; its saved state."""
    from narla.learning.ppo import train_teacher as ppo
    from narla.tasks.ant import make_ant

    task = make_ant(NUM_ENVS, num_workers=NUM_WORKERS)
    try:
        return ppo(task, runs / "teacher", env_steps, seed=seed)
    finally:
        task.close()


def test_teacher(runs: Path, episodes: int, seed: int) -> dict:
    """The teacher's deterministic (mean) action over ``episodes`` episodes, plain and shuffled (cached)."""
    import torch

    from narla.learning.ppo import load_teacher
    from narla.tasks.ant import make_ant
    from narla.tasks.robustness import ShuffledTask

    teacher, state = load_teacher(runs / "teacher")
    cached = _read(runs / "teacher" / "test.json")
    if cached is not None and cached.get("env_steps") == state["env_steps"] and cached.get("episodes") == episodes:
        return cached
    result = {"env_steps": state["env_steps"], "episodes": episodes}
    for kind, shuffle in (("plain", False), ("shuffled", True)):
        task = make_ant(episodes, num_workers=NUM_WORKERS)
        task.normalizer.load_state_dict(state["normalizer"])
        task.training = False
        play = ShuffledTask(task, shuffle, 0, seed=seed + 7)
        try:
            obs = play.reset(seed=seed + 100)
            total = torch.zeros(episodes, dtype=torch.float64)
            running = torch.ones(episodes, dtype=torch.bool)
            while running.any():
                with torch.no_grad():
                    action = teacher.mean(obs).clamp(-1.0, 1.0)
                obs, reward, terminated, truncated = play.step(action)
                total += reward.double() * running
                running &= ~(terminated | truncated)
        finally:
            play.close()
        returns = total.tolist()
        result[kind] = {"mean": statistics.fmean(returns), "std": statistics.pstdev(returns), "returns": returns}
    atomic_write(runs / "teacher" / "test.json", json.dumps(result, indent=2) + "\n")
    return result


def student_dir(runs: Path, model: str, cloning: bool = False, tuned: bool = False) -> Path:
    """Where :func:`train_student` keeps a student: ``RUNS/MODEL``, ``RUNS/MODEL_bc`` or ``RUNS/MODEL_tuned``."""
    return runs / (f"{model}_bc" if cloning else f"{model}_tuned" if tuned else model)


def student_run(model: str, seed: int):
    """``scenarios/ant_MODEL.yaml``'s network built without a learner on ``NUM_ENVS`` Ant copies in ``NUM_WORKERS``
    worker processes: the run every student of this page trains in (close its task when done)."""
    import dataclasses

    from narla import scenario as scenarios
    from narla.training import build

    scenario = scenarios.load(f"scenarios/ant_{model}.yaml", [f"seed={seed}"])
    options = {**scenario.task.options, "num_workers": NUM_WORKERS}
    scenario = dataclasses.replace(scenario, task=dataclasses.replace(scenario.task, num_envs=NUM_ENVS,
                                                                      options=options))
    return build(scenario, learner=False)


def train_student(model: str, runs: Path, iterations: int, seed: int, cloning: bool = False,
                  tuned: bool = False) -> dict:
    """Distil the teacher into ``scenarios/ant_MODEL.yaml``'s network in ``RUNS/MODEL`` (resumes); the DAgger state.

    ``cloning``: behaviour cloning instead, in ``RUNS/MODEL_bc``: the teacher acts at every tick (DAgger with
    β = 1 throughout), so the student learns only on the teacher's own states; the control that separates how well
    a network can fit the teacher from the states DAgger adds. ``tuned``: :func:`tuned_config` in
    ``RUNS/MODEL_tuned`` (``iterations`` is then the config's).
    """
    import torch

    from narla.learning.distill import CHECKPOINT, DistillConfig, distill
    from narla.learning.ppo import load_teacher

    out = student_dir(runs, model, cloning, tuned)
    config = DistillConfig(iterations=iterations, beta_decay=1.0 if cloning else DistillConfig.beta_decay)
    if tuned:
        config = tuned_config()
        iterations = config.iterations
    if (out / CHECKPOINT).is_file():
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        if state["iteration"] >= iterations:
            return state
    teacher, teacher_state = load_teacher(runs / "teacher")
    run = student_run(model, seed)
    try:
        return distill(run, teacher, teacher_state["normalizer"], out, config, seed=seed)
    finally:
        run.task.close()


def ppo_student(model: str, runs: Path, env_steps: int, seed: int) -> dict:
    """Fine-tune ``RUNS/MODEL_tuned_finetune``'s student by PPO in ``RUNS/MODEL_tuned_finetune_ppo`` (resumes) up to
    ``env_steps`` of its own, with the teacher's critic and return scaler to start from; the fine-tune's state."""
    import torch

    from narla.evaluate import load_model
    from narla.learning.ppo import load_teacher
    from narla.learning.student_ppo import CHECKPOINT, finetune

    out = runs / f"{model}_tuned_finetune_ppo"
    if (out / CHECKPOINT).is_file():
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        if state["env_steps"] >= env_steps:
            return state
    init = load_model(runs / f"{model}_tuned_finetune")
    teacher, teacher_state = load_teacher(runs / "teacher")
    run = student_run(model, seed)
    try:
        return finetune(run, init, teacher, teacher_state, out, env_steps, ppo_config(), seed=seed)
    finally:
        run.task.close()


def test_student(run_dir: Path, episodes: int, iteration: int) -> dict:
    """Plain and shuffled test scores of a distilled (or fine-tuned) student, cached per training progress
    (``iteration``: DAgger's iterations, or a fine-tune's environment steps) and number of episodes."""
    from narla.evaluate import evaluate

    cached = _read(run_dir / "test.json")
    if cached is not None and cached.get("iteration") == iteration and cached.get("episodes") == episodes:
        return cached
    result = {"iteration": iteration, "episodes": episodes}
    for kind, shuffle in (("plain", False), ("shuffled", True)):
        stats = evaluate(run_dir, episodes, num_envs=episodes, shuffle=shuffle)
        result[kind] = {"mean": stats["mean_return"], "std": stats["std_return"], "returns": stats["returns"]}
    atomic_write(run_dir / "test.json", json.dumps(result, indent=2) + "\n")
    return result


def plot(teacher: dict, students: dict[str, dict], random_mean: float, path: Path,
         tuned: dict[str, dict] | None = None) -> None:
    """The teacher's PPO curve and each student's DAgger curve against environment steps (students after the
    teacher's steps), and the students' imitation loss against iterations; ``tuned`` students dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    hist = [h for h in teacher["history"] if h["mean_return"] is not None]
    ax.plot([h["env_steps"] for h in hist], [h["mean_return"] for h in hist], color="black", linewidth=0.8,
            label="teacher (PPO, sampled actions)")
    base = teacher["env_steps"]
    colors = {}
    for kind, group, style in (("DAgger", students, "-"), ("tuned", tuned or {}, "--")):
        for model, s in group.items():
            pts = [h for h in s["history"] if h["mean_return"] is not None]
            (line,) = ax.plot([base + h["env_steps"] for h in pts], [h["mean_return"] for h in pts], marker=".",
                              linestyle=style, color=colors.get(model), label=f"{model} ({kind})")
            colors.setdefault(model, line.get_color())
            bx.plot([h["iteration"] for h in s["history"]], [h["loss"] for h in s["history"]], linestyle=style,
                    color=colors[model], label=f"{model} ({kind})")
    ax.axhline(random_mean, color="grey", linestyle=":", linewidth=1, label="random policy")
    ax.axhline(GOAL, color="black", linestyle="--", linewidth=0.8, label=f"goal {GOAL:.0f}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return of episodes ended")
    ax.legend(fontsize=8)
    bx.set_yscale("log")
    bx.set_xlabel("DAgger iteration")
    bx.set_ylabel("imitation loss (MSE)")
    bx.legend(fontsize=8)
    fig.suptitle("PyBullet AntBulletEnv-v0: PPO teacher, then DAgger into narla networks (dashed: tuned)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _score(test: dict, kind: str) -> str:
    return f"{test[kind]['mean']:,.1f} ± {test[kind]['std']:,.1f}"


def render(data: dict, args: argparse.Namespace) -> str:
    """The markdown page."""
    from narla.learning.distill import DistillConfig

    teacher, rnd, students = data["teacher"], data["random"], data["students"]
    cma = (_read(args.out / "ant.json") or {}).get("models", {}).get("cooperator")
    cmaes = "docs/results/ant.md" if cma is None else (
        f"docs/results/ant.md: the Cooperator tests at {cma['test']['plain']['mean']:,.1f} after "
        f"{cma['summary']['env_steps']:,} steps")
    cfg = DistillConfig()
    t_steps = teacher["env_steps"]
    lines = [
        "# PyBullet Ant by distillation: PPO teacher → DAgger into the Cooperator, AttentionNeuron, layered",
        "",
        f"Regenerate: `python -m narla.analysis.ant_distill --runs {args.runs} --out {args.out} --teacher-steps "
        f"{args.teacher_steps} --iterations {args.iterations} --bc-iterations {args.bc_iterations} --tuned-models "
        f"{shlex.quote(args.tuned_models)} --ppo-models {shlex.quote(args.ppo_models)} --ppo-steps {args.ppo_steps} "
        f"--test-episodes {args.test_episodes}` (resumes; "
        "finished steps are skipped). Measured on this project's 2-core CPU machine; PyBullet runs on the CPU.",
        "",
        f"Whole-network CMA-ES leaves these networks standing in place ({cmaes}). AttentionNeuron's authors "
        "report their Ant agent beside the fully connected "
        "teacher it learned from; this page takes that route. **Teacher**: a 28-256-256-8 ReLU Gaussian policy "
        "(separate 256-256 critic) trained by PPO (`narla.learning.ppo`), 16 copies in 2 worker processes, "
        "running observation normalisation. **Students** (the networks of `scenarios/ant_{cooperator,attention,"
        "layered}.yaml`, unchanged): DAgger (`narla.learning.distill`) from that one teacher, each iteration "
        f"{cfg.ticks:,} ticks of 16 copies from a reset with the teacher acting with probability "
        f"{cfg.beta_decay}^i, the student's memory running all along; the student is trained by truncated "
        f"backpropagation through time ({cfg.tbptt} ticks per Adam step, lr {cfg.lr} annealed to a tenth; "
        f"{cfg.epochs} passes per iteration, each over {cfg.streams_per_batch} of its last {cfg.buffer} streams) "
        "on the squared error to the "
        "teacher's clipped mean action, and reads the teacher's frozen observation statistics. The students act "
        "deterministically, as in ant.md.",
        "",
        *TABLE_HEAD,
        f"| random policy | 0 | — | — | — | {rnd['mean']:,.1f} ± {rnd['std']:,.1f} | — |",
        f"| teacher (PPO, mean action) | {teacher['params']:,} | {t_steps:,} | {teacher['wall_s'] / 60:.1f} min | — | "
        f"{_score(teacher['test'], 'plain')} | {_score(teacher['test'], 'shuffled')} |",
    ]
    for model, s in students.items():
        lines.append(_student_row(f"{model} (DAgger, {s['iterations']} iterations)", s, t_steps))
    cloned = data.get("cloned") or {}
    if cloned:
        lines += [
            "",
            "**Control: behaviour cloning.** The same students, each in a fresh run, trained the same way but with the "
            "teacher acting at every tick (β = 1 throughout): they learn only on the teacher's own states, so their "
            "imitation loss measures how closely each network can fit the teacher at all.",
            "",
            "| policy | params | env steps (teacher + own) | train wall | imitation loss (last iteration, teacher's "
            "states) | test (plain) | test (shuffled) |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for model, s in cloned.items():
            lines.append(_student_row(f"{model} (cloning, {s['iterations']} iterations)", s, t_steps))
    tuned = data.get("tuned") or {}
    if tuned:
        t_cfg = tuned_config()
        lines += [
            "",
            f"**narla's tuned distillation (differs from the route above).** The same networks, each in a fresh run, "
            f"distilled with our own settings: {t_cfg.warmup + 1} iterations of behaviour cloning (the teacher acts at "
            f"every tick; β = 1 for i ≤ {t_cfg.warmup}) before DAgger's β = {t_cfg.beta_decay}^(i − {t_cfg.warmup}) "
            f"decays, {t_cfg.iterations} "
            f"iterations in all, {t_cfg.epochs} training passes per iteration instead of {cfg.epochs}, the student's "
            "tick compiled by `torch.compile` (the same arithmetic, fused: about 1.5× faster passes on the "
            "Cooperator here).",
            "",
            *TABLE_HEAD,
        ]
        for model, s in tuned.items():
            lines.append(_student_row(f"{model} (tuned, {s['iterations']} iterations)", s, t_steps))
        for model, f in (data.get("finetuned") or {}).items():
            lines.append(
                f"| {model} (tuned, then CMA-ES: `scenarios/ant_{model}_tuned_finetune.yaml`) | {f['params']:,} | "
                f"{t_steps:,} + {tuned[model]['env_steps']:,} + {f['env_steps']:,} | {f['wall_s'] / 60:.1f} min | — | "
                f"{_score(f['test'], 'plain')} | {_score(f['test'], 'shuffled')} |"
            )
        if data.get("finetuned"):
            lines += [
                "",
                "The fine-tuned rows continue from the tuned students' parameters (and the teacher's observation "
                "statistics) by whole-network CMA-ES on the task reward (σ 0.02, 16 members, one episode each; "
                "`narla run scenarios/ant_MODEL_tuned_finetune.yaml --out RUNS/MODEL_tuned_finetune`, extended by "
                "`narla run --resume RUNS/MODEL_tuned_finetune --set training.max_env_steps=N`); their env "
                "steps add the teacher's, the distillation's and their own, and their wall time is their own, over all "
                "calls of `narla run` (`--resume`).",
            ]
        ppo = data.get("ppo") or {}
        if ppo:
            p_cfg = ppo_config()
            lines += [
                "",
                "**Then PPO (narla's own, differs from the paper's route).** Each CMA-ES fine-tune above, trained "
                "further by gradient: the student's deterministic action is the mean of a Gaussian policy (σ learned, "
                f"from {math.exp(p_cfg.init_log_std):.2f}), and PPO (`narla.learning.student_ppo`) trains it on the "
                f"task reward, {p_cfg.steps_per_update} ticks of 16 copies per update, {p_cfg.epochs} epochs that "
                "replay the window from the student's stored memory by truncated backpropagation through time "
                f"({p_cfg.tbptt} ticks per Adam step, lr {p_cfg.lr:g} annealed to 0), GAE(γ {p_cfg.gamma}, λ "
                f"{p_cfg.lam}), clip {p_cfg.clip}; the critic starts as the teacher's (it reads observations by "
                "position, a training aid only: the tested policy is the student alone, deterministic) and learns "
                f"alone for the first {p_cfg.critic_warmup} updates. Env steps add the teacher's, the distillation's, "
                "the CMA-ES fine-tune's and the PPO fine-tune's own; each row starts from the CMA-ES row above it.",
                "",
                *TABLE_HEAD,
            ]
            for model, f in ppo.items():
                before = data["finetuned"][model]
                lines.append(
                    f"| {model} (tuned, CMA-ES, then PPO) | {f['params']:,} | {t_steps:,} + "
                    f"{tuned[model]['env_steps']:,} + {before['env_steps']:,} + {f['env_steps']:,} | "
                    f"{f['wall_s'] / 60:.1f} min | — | {_score(f['test'], 'plain')} | {_score(f['test'], 'shuffled')} |"
                )
    lines += [
        "",
        f"{args.test_episodes} test episodes each (the students' and the teacher's deterministic actions; *shuffled*: "
        "a new feature order each episode). The teacher's steps are spent once and shared by every student. The "
        "imitation loss is the mean squared action error (actions in [−1, 1]) of the last iteration's training "
        "passes, on the states the DAgger mixture visited.",
        "",
        "![Ant distillation curves](ant_distill.png)",
        "",
        "## Goals (issue 11)",
        "",
    ]
    groups = (("DAgger as above", students), ("narla's tuned distillation", tuned),
              ("narla's tuned distillation, then CMA-ES", data.get("finetuned") or {}),
              ("narla's tuned distillation, CMA-ES, then PPO", data.get("ppo") or {}))
    for label, group in groups:
        lines += _goals(label, group, rnd)
    lines.append("")
    return "\n".join(lines)


def _total_wall(run_dir: Path) -> float:
    """A ``narla run``'s wall time over all its calls (``summary.json`` holds the last call's): the last episode's
    ``wall_clock`` in ``episodes.csv``."""
    import csv
    from collections import deque

    with open(run_dir / "episodes.csv", newline="") as f:
        last = deque(csv.DictReader(f), maxlen=1)
    return float(last[0]["wall_clock"]) if last else 0.0


def finetune_entry(run_dir: Path, test_episodes: int) -> dict | None:
    """A ``narla run`` fine-tune's page entry (steps, wall over all calls, status, parameters, test scores), or None
    when it has not run."""
    summary = _read(run_dir / "summary.json")
    if summary is None or not (run_dir / "model.pt").is_file():
        return None
    return {
        "env_steps": summary["env_steps"], "wall_s": _total_wall(run_dir), "status": summary["status"],
        "params": _params(run_dir), "test": test_student(run_dir, test_episodes, summary["env_steps"]),
    }


def _distilled(model: str, args: argparse.Namespace, iterations: int, cloning: bool = False,
               tuned: bool = False) -> dict:
    """Train (or resume) one student by :func:`train_student`, test it, and print its score: the page's entry."""
    s = train_student(model, args.runs, iterations, args.seed, cloning=cloning, tuned=tuned)
    run_dir = student_dir(args.runs, model, cloning, tuned)
    entry = {
        "iterations": s["iteration"], "env_steps": s["env_steps"], "wall_s": s["wall_s"], "history": s["history"],
        "params": _params(run_dir), "test": test_student(run_dir, args.test_episodes, s["iteration"]),
    }
    kind = "behaviour cloning" if cloning else "tuned" if tuned else "DAgger"
    print(f"{model} ({kind}): test {entry['test']['plain']['mean']:.1f} (shuffled "
          f"{entry['test']['shuffled']['mean']:.1f})", flush=True)
    return entry


def _student_row(label: str, s: dict, t_steps: int) -> str:
    """One distilled student's table row (``label``: the policy column)."""
    return (f"| {label} | {s['params']:,} | {t_steps:,} + {s['env_steps']:,} | {s['wall_s'] / 60:.1f} min | "
            f"{s['history'][-1]['loss']:.4f} | {_score(s['test'], 'plain')} | {_score(s['test'], 'shuffled')} |")


def _goals(label: str, students: dict, rnd: dict) -> list[str]:
    """Issue 11's three goals for the Cooperator of one group of students, each as met or not."""
    coop = students.get("cooperator")
    if coop is None:
        return []
    plain, shuffled = coop["test"]["plain"]["mean"], coop["test"]["shuffled"]["mean"]
    lines = [f"- {label}: Cooperator test score ≥ {GOAL:,.0f}: **{'met' if plain >= GOAL else 'not met'}** "
             f"({plain:,.1f}; random policy {rnd['mean']:,.1f})."]
    att = students.get("attention")
    if att is not None:
        other = att["test"]["plain"]["mean"]
        lines.append(f"- {label}: Cooperator ≥ AttentionNeuron at equal parameters ({coop['params']:,} vs "
                     f"{att['params']:,}) and equal environment steps: **{'met' if plain >= other else 'not met'}** "
                     f"({plain:,.1f} vs {other:,.1f}).")
    within = abs(shuffled - plain) <= 0.1 * abs(plain)
    lines.append(f"- {label}: Cooperator's shuffled score within 10 % of its plain score: "
                 f"**{'met' if within else 'not met'}** ({shuffled:,.1f} vs {plain:,.1f}).")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/ant_distill"), help="where the runs live")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where ant_distill.md goes")
    parser.add_argument("--teacher-steps", type=int, default=3_000_000, help="PPO environment steps (3,000,000)")
    parser.add_argument("--iterations", type=int, default=30, help="DAgger iterations per student (default 30)")
    parser.add_argument("--bc-iterations", type=int, default=10,
                        help="iterations of the behaviour-cloning control per student (teacher always acts; 0: none)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--tuned-models", default="cooperator,attention",
                        help="students also distilled with narla's tuned settings, in RUNS/MODEL_tuned "
                             "(comma-separated; empty: none)")
    parser.add_argument("--test-episodes", type=int, default=50, help="test episodes per policy (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppo-models", default="cooperator,attention",
                        help="CMA-ES fine-tunes (RUNS/MODEL_tuned_finetune) fine-tuned further by PPO, in "
                             "RUNS/MODEL_tuned_finetune_ppo (comma-separated; empty: none)")
    parser.add_argument("--ppo-steps", type=int, default=PPO_STEPS,
                        help=f"environment steps of each PPO fine-tune (default {PPO_STEPS:,})")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    models = [m for m in args.models.split(",") if m]
    tuned_models = [m for m in args.tuned_models.split(",") if m]
    ppo_models = [m for m in args.ppo_models.split(",") if m]
    bad = [m for m in ppo_models if m not in tuned_models]
    if bad:
        parser.error(f"--ppo-models: {bad} are not in --tuned-models ({args.tuned_models!r}); a PPO fine-tune starts "
                     "from a tuned student's CMA-ES fine-tune")
    for flag, chosen in (("--models", models), ("--tuned-models", tuned_models)):
        bad = [m for m in chosen if m not in MODELS]
        if bad:
            parser.error(f"{flag}: unknown {bad}; allowed: {', '.join(MODELS)}")
    if min(args.teacher_steps, args.iterations, args.test_episodes, args.ppo_steps) < 1 or args.bc_iterations < 0:
        parser.error("--teacher-steps, --iterations, --test-episodes and --ppo-steps must be >= 1, "
                     "--bc-iterations >= 0")
    args.runs.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rnd = cached_random_policy(args.runs, args.test_episodes, args.seed)
    print(f"random policy: {rnd['mean']:.1f} ± {rnd['std']:.1f}", flush=True)
    state = train_teacher(args.runs, args.teacher_steps, args.seed)
    teacher = {
        "env_steps": state["env_steps"], "wall_s": state["wall_s"], "history": state["history"],
        "params": sum(v.numel() for k, v in state["policy"].items() if k.startswith("actor") or k == "log_std"),
        "test": test_teacher(args.runs, args.test_episodes, args.seed),
    }
    print(f"teacher: {teacher['env_steps']:,} steps, test {teacher['test']['plain']['mean']:.1f}", flush=True)
    students = {m: _distilled(m, args, args.iterations) for m in models}
    cloned = {m: _distilled(m, args, args.bc_iterations, cloning=True) for m in models if args.bc_iterations}
    tuned = {m: _distilled(m, args, 0, tuned=True) for m in tuned_models}
    finetuned = {}
    for model in tuned_models:
        entry = finetune_entry(args.runs / f"{model}_tuned_finetune", args.test_episodes)
        if entry is None:
            continue  # not run: narla run scenarios/ant_MODEL_tuned_finetune.yaml --out RUNS/MODEL_tuned_finetune
        finetuned[model] = entry
        print(f"{model} (tuned + CMA-ES): test {finetuned[model]['test']['plain']['mean']:.1f}", flush=True)
    ppo = {}
    for model in ppo_models:
        if model not in finetuned:
            print(f"{model}: no CMA-ES fine-tune in {args.runs / (model + '_tuned_finetune')}; its PPO fine-tune is "
                  "skipped", flush=True)
            continue
        p = ppo_student(model, args.runs, args.ppo_steps, args.seed)
        run_dir = args.runs / f"{model}_tuned_finetune_ppo"
        ppo[model] = {
            "env_steps": p["env_steps"], "wall_s": p["wall_s"], "history": p["history"], "params": _params(run_dir),
            "test": test_student(run_dir, args.test_episodes, p["env_steps"]),
        }
        print(f"{model} (tuned + CMA-ES + PPO): test {ppo[model]['test']['plain']['mean']:.1f}", flush=True)
    data = {"random": rnd, "teacher": teacher, "students": students, "cloned": cloned, "tuned": tuned,
            "finetuned": finetuned, "ppo": ppo}
    plot(teacher, students, rnd["mean"], args.out / "ant_distill.png", tuned)
    atomic_write(args.out / "ant_distill.json", json.dumps(data, indent=2) + "\n")
    atomic_write(args.out / "ant_distill.md", render(data, args))
    print(f"wrote {args.out / 'ant_distill.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
