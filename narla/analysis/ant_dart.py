"""PyBullet Ant by cloning with a noisy teacher (DART): the Cooperator and AttentionNeuron learn to recover.

Regenerate ``docs/results/ant_dart.md`` (and ``ant_dart.json``) with::

    python -m narla.analysis.ant_dart --runs runs/ant_dart --teacher-runs runs/ant_distill --out docs/results

Why: a student cloned on the teacher's clean states fits them closely (``docs/results/ant_distill.md``) yet stands
in place in closed loop. Handed control in the middle of the teacher's gait, its action error doubles about every
three ticks: it learned to predict the teacher's next action from its memory of the gait, not how the teacher
reacts when the state drifts. DART (Laskey et al., 2017) lets the teacher drive with Gaussian noise on its executed
actions while the labels stay its clean actions, so the student sees drifted states with the teacher's corrections.

Steps, each resumed or skipped when its result is already there:

1. **Random policy** and **teacher**: as in :mod:`narla.analysis.ant_distill` (the teacher is that page's, in
   ``TEACHER_RUNS/teacher``; it is trained there if missing).
2. **Students**: each of ``--models`` is cloned from the teacher (the teacher acts at every tick, β = 1) for
   ``--iterations`` iterations of 1,000 ticks of 16 copies, with ``DistillConfig.action_noise`` σ from
   ``--noise`` (``RUNS/MODEL_dartσ``); ``--control-models`` are also cloned with σ = 0, the same settings
   otherwise (``RUNS/MODEL_dart0``).
3. **Fine-tunes**, listed when they exist: ``narla run scenarios/ant_MODEL_dart_finetune.yaml --out
   RUNS/MODEL_dartσ_finetune`` continues a student by whole-network CMA-ES on the task reward; the stages after
   it in :data:`FINETUNES` (``..._restart``: a fresh CMA-ES from the fine-tune's parameters; ``..._averaged``:
   then each member scored on 4 episodes) each start from the stage before. ``..._progress``
   (``scenarios/ant_MODEL_dart_progress.yaml``) runs CMA-ES from the DART student on a progress-weighted training
   reward, our own setting.
4. **Test**: ``--test-episodes`` episodes of each student's deterministic action, plainly and with a new feature
   order each episode.
5. **Travel**: ``--travel-episodes`` more episodes of every policy (random, teacher, students, fine-tunes), in one
   process, following the torso (:class:`narla.tasks.travel.TravelTask`): a return near 1,000 is what an ant
   that stands still scores, so the page says how far each policy actually walks.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from narla.analysis.ant import _params, _read, cached_random_policy
from narla.analysis.ant_distill import (
    MODELS,
    TABLE_HEAD,
    _goals,
    _score,
    _student_row,
    finetune_entry,
    student_run,
    test_student,
    test_teacher,
    train_teacher,
)
from narla.results import atomic_write

FINETUNES = {  # CMA-ES stages after cloning, in order; each starts from the previous stage's parameters
    "finetune": "then CMA-ES",
    "restart": "CMA-ES, then a CMA-ES restart",
    "averaged": "CMA-ES, a restart, then CMA-ES on 4-episode means",
}
SHAPED = "then CMA-ES on a progress-weighted reward (ours)"  # RUNS/MODEL_dartσ_progress, from the DART student
EPOCHS = 32  # training passes per iteration: cloning only ever sees the teacher's states, so it can fit them longer


def dart_config(iterations: int, noise: float):
    """The students' settings: behaviour cloning (β = 1) with noise ``noise`` on the teacher's executed action."""
    from narla.learning.distill import DistillConfig

    return DistillConfig(iterations=iterations, beta_decay=1.0, epochs=EPOCHS, compile=True, action_noise=noise)


def dart_dir(runs: Path, model: str, noise: float) -> Path:
    """``RUNS/MODEL_dartσ``: where one student lives."""
    return runs / f"{model}_dart{noise:g}"


def stage_dir(runs: Path, model: str, noise: float, stage: str) -> Path:
    """``RUNS/MODEL_dartσ_STAGE``: where a CMA-ES stage after the DART student lives (``progress``: the shaped one)."""
    return runs / f"{dart_dir(runs, model, noise).name}_{stage}"


def train_dart_student(model: str, runs: Path, teacher_runs: Path, iterations: int, noise: float, seed: int) -> dict:
    """Clone the teacher into ``scenarios/ant_MODEL.yaml``'s network with DART noise ``noise`` (resumes)."""
    import torch

    from narla.learning.distill import CHECKPOINT, distill
    from narla.learning.ppo import load_teacher

    out = dart_dir(runs, model, noise)
    if (out / CHECKPOINT).is_file():
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        if state["iteration"] >= iterations:
            return state
    teacher, teacher_state = load_teacher(teacher_runs / "teacher")
    run = student_run(model, seed)
    try:
        return distill(run, teacher, teacher_state["normalizer"], out, dart_config(iterations, noise), seed=seed)
    finally:
        run.task.close()


def travel(runs: Path, key: str, progress: int, episodes: int, play) -> dict:
    """``play(episodes)``'s torso travel along x (m per episode), kept in ``RUNS/travel.json`` under ``key`` and
    measured again only when the policy's training ``progress`` or ``episodes`` changed."""
    cache = _read(runs / "travel.json") or {}
    entry = cache.get(key)
    if entry is None or entry["progress"] != progress or len(entry["distances"]) != episodes:
        distances = play(episodes)
        entry = {"progress": progress, "distances": distances, "mean": statistics.fmean(distances),
                 "std": statistics.pstdev(distances)}
        cache[key] = entry
        atomic_write(runs / "travel.json", json.dumps(cache, indent=2) + "\n")
    print(f"travel of {key}: {entry['mean']:.2f} m", flush=True)
    return entry


def run_travel(run_dir: Path):
    """A narla run's policy, replayed by :func:`narla.evaluate.evaluate` with its torso followed."""
    from narla.evaluate import evaluate

    return lambda episodes: evaluate(run_dir, episodes, num_envs=episodes, distance=True)["distances"]


def baseline_travel(teacher_runs: Path | None, seed: int):
    """The teacher's mean action (``teacher_runs``), or uniformly random actions (None), on Ant copies in this
    process with the torso followed."""
    import torch

    from narla.learning.ppo import load_teacher
    from narla.tasks.ant import make_ant
    from narla.tasks.travel import TravelTask

    def play(episodes: int) -> list[float]:
        teacher = None
        task = TravelTask(make_ant(episodes, asynchronous=False))
        if teacher_runs is not None:
            teacher, state = load_teacher(teacher_runs / "teacher")
            task.inner.normalizer.load_state_dict(state["normalizer"])
        task.inner.training = False
        generator = torch.Generator().manual_seed(seed)
        try:
            obs = task.reset(seed=seed + 200)
            running = torch.ones(episodes, dtype=torch.bool)
            while running.any():
                with torch.no_grad():
                    action = (teacher.mean(obs) if teacher is not None
                              else torch.rand(episodes, 8, generator=generator) * 2 - 1).clamp(-1.0, 1.0)
                obs, _, terminated, truncated = task.step(action)
                running &= ~(terminated | truncated)
            return task.distances()
        finally:
            task.close()

    return play


def _student(model: str, noise: float, args: argparse.Namespace) -> dict:
    s = train_dart_student(model, args.runs, args.teacher_runs, args.iterations, noise, args.seed)
    run_dir = dart_dir(args.runs, model, noise)
    entry = {
        "noise": noise, "iterations": s["iteration"], "env_steps": s["env_steps"], "wall_s": s["wall_s"],
        "history": s["history"], "params": _params(run_dir),
        "test": test_student(run_dir, args.test_episodes, s["iteration"]),
    }
    print(f"{model} (DART σ {noise:g}): test {entry['test']['plain']['mean']:.1f} (shuffled "
          f"{entry['test']['shuffled']['mean']:.1f})", flush=True)
    return entry


def render(data: dict, args: argparse.Namespace) -> str:
    """The markdown page."""
    teacher, rnd = data["teacher"], data["random"]
    cfg = dart_config(args.iterations, args.noise)
    t_steps = teacher["env_steps"]
    lines = [
        "# PyBullet Ant by cloning a noisy teacher (DART): the Cooperator and AttentionNeuron",
        "",
        f"Regenerate: `python -m narla.analysis.ant_dart --runs {args.runs} --teacher-runs {args.teacher_runs} "
        f"--out {args.out} --models {shlex.quote(args.models)} --control-models {shlex.quote(args.control_models)} "
        f"--noise {args.noise:g} --iterations {args.iterations} --test-episodes {args.test_episodes} "
        f"--travel-episodes {args.travel_episodes}` (resumes; "
        "finished steps are skipped). Measured on this project's 2-core CPU machine; PyBullet runs on the CPU.",
        "",
        "The teacher is `docs/results/ant_distill.md`'s PPO policy (28-256-256-8, trained once and shared). Cloned on "
        "the teacher's clean states, the Cooperator fits them closely yet stands in place in closed loop (the control "
        "row). In a diagnostic outside this page, handed control after 300 ticks of the teacher's gait, a cloned "
        "Cooperator's action error doubled about every three ticks. Here the "
        f"teacher drives every tick with Gaussian noise (σ {args.noise:g}, actions in [−1, 1], clipped) on the action "
        "it executes, while the label stays its clean mean action (DART; `DistillConfig.action_noise`, "
        "`narla.learning.distill`), so the student also sees drifted states, labelled with the teacher's "
        f"corrections. Otherwise as ant_distill.md's cloning control: {cfg.iterations} iterations of {cfg.ticks:,} "
        f"ticks of 16 copies, truncated backpropagation through time ({cfg.tbptt} ticks per Adam step, lr {cfg.lr} "
        f"annealed to a tenth), {cfg.epochs} passes per iteration over {cfg.streams_per_batch} of the last "
        f"{cfg.buffer} streams, the student's tick compiled. The networks are `scenarios/ant_{{cooperator,"
        "attention,layered}.yaml`, unchanged; the students act deterministically. This is narla's own route: "
        "AttentionNeuron's authors cloned their Ant agent from clean teacher episodes (with noise on the previous "
        "action it reads).",
        "",
        *TABLE_HEAD,
        f"| random policy | 0 | — | — | — | {rnd['mean']:,.1f} ± {rnd['std']:,.1f} | — |",
        f"| teacher (PPO, mean action) | {teacher['params']:,} | {t_steps:,} | {teacher['wall_s'] / 60:.1f} min | — | "
        f"{_score(teacher['test'], 'plain')} | {_score(teacher['test'], 'shuffled')} |",
    ]
    for key in ("students", "controls"):
        for model, s in data[key].items():
            label = f"{model} (DART σ {s['noise']:g})" if s["noise"] else f"{model} (control: cloning, σ 0)"
            lines.append(_student_row(f"{label}, {s['iterations']} iterations", s, t_steps))
    finetuned = data.get("finetuned") or {}
    for model, stages in finetuned.items():
        steps = f"{t_steps:,} + {data['students'][model]['env_steps']:,}"
        for stage, f in stages.items():
            steps += f" + {f['env_steps']:,}"
            lines.append(
                f"| {model} (DART, {FINETUNES[stage]}: `scenarios/ant_{model}_dart_{stage}.yaml`) | {f['params']:,} | "
                f"{steps} | {f['wall_s'] / 60:.1f} min | — | {_score(f['test'], 'plain')} | "
                f"{_score(f['test'], 'shuffled')} |")
    for model, f in (data.get("shaped") or {}).items():
        lines.append(
            f"| {model} (DART, {SHAPED}: `scenarios/ant_{model}_dart_progress.yaml`) | {f['params']:,} | "
            f"{t_steps:,} + {data['students'][model]['env_steps']:,} + {f['env_steps']:,} | "
            f"{f['wall_s'] / 60:.1f} min | — | {_score(f['test'], 'plain')} | {_score(f['test'], 'shuffled')} |")
    lines += [
        "",
        f"{args.test_episodes} test episodes each (deterministic actions; *shuffled*: a new feature order each "
        "episode; the teacher reads its inputs by position). The imitation loss is the mean squared error to the "
        "teacher's clean action over the last iteration's training passes, on the noisy teacher's states. The "
        "teacher's environment steps are spent once, for every student here and on ant_distill.md. Wall times are "
        "of a shared machine: the fine-tune ran beside the later students, and the process that trained them ran its "
        "second and later students eager once `torch.compile` reached its recompile limit (since fixed: a compiled "
        "`Student` resets the compiler), so walls are not comparable.",
        *([
            "",
            "The fine-tune continues from the DART student's parameters (and the teacher's observation statistics) "
            "by whole-network CMA-ES on the task reward (σ 0.02, 16 members, one episode each), as ant_distill.md's "
            "fine-tunes do. The restart starts a new CMA-ES from the fine-tune's mean parameters, with σ back at "
            "0.02 (the fine-tune's had shrunk to 0.013 under noisy one-episode fitness) and 32 members, as an IPOP "
            "restart doubles its population. The averaged stage starts again from the restart's mean (σ 0.02, 16 "
            "members) and scores each member on the mean of 4 episodes, as the restarted policy scores about 980 on "
            "most episodes and far less on some. Env steps add the teacher's, the cloning's and each stage's in "
            "turn; a wall time is the stage's own (over all of its calls).",
        ] if finetuned else []),
        *([
            "",
            "The progress-weighted row is our own setting, not the paper's protocol: CMA-ES from the DART student "
            "(σ 0.02, 16 members, two episodes each) on a shaped training reward, the task's plus 5 times its "
            "progress term (`task.options.progress_bonus: 5`), so that walking pays more than standing; its test "
            "scores are of the task's own reward.",
        ] if data.get("shaped") else []),
        *_walk_table(data, args),
        "",
        "## Goals (issue 11)",
        "",
        *_goals(f"DART σ {args.noise:g}", data["students"], rnd),
        *[goal for stage, label in FINETUNES.items()
          for goal in _goals(f"DART σ {args.noise:g}, {label}",
                             {m: st[stage] for m, st in finetuned.items() if stage in st}, rnd)],
        *_goals(f"DART σ {args.noise:g}, {SHAPED}", data.get("shaped") or {}, rnd),
        "",
    ]
    return "\n".join(lines)


def _walk_table(data: dict, args: argparse.Namespace) -> list[str]:
    """The torso's travel along x per policy (when measured): whether a score comes from walking."""
    rows = [("random policy", data["random"]), ("teacher (PPO, mean action)", data["teacher"])]
    for key in ("students", "controls"):
        for model, s in data[key].items():
            rows.append((f"{model} (DART σ {s['noise']:g})" if s["noise"] else f"{model} (control: cloning, σ 0)", s))
    for model, stages in (data.get("finetuned") or {}).items():
        rows += [(f"{model} (DART, {FINETUNES[stage]})", f) for stage, f in stages.items()]
    rows += [(f"{model} (DART, {SHAPED})", f) for model, f in (data.get("shaped") or {}).items()]
    rows = [(label, e) for label, e in rows if "travel" in e]
    if not rows:
        return []
    n = len(rows[0][1]["travel"]["distances"])
    return [
        "",
        "## Does it walk?",
        "",
        "Not every policy that scores well here walks. "
        "A return near 1,000 is what an ant scores by standing still for the 1,000 ticks: the "
        "reward is an alive bonus of 1 per tick plus progress towards a target 1 km ahead along x (about 60 per "
        "metre), less energy and joint-limit costs. So each policy also played "
        f"{n} episodes (`--travel-episodes`, in one process, deterministic actions; a narla policy replays the "
        "start states of its first test episodes) with its torso followed (`narla eval --distance`, "
        "`narla.tasks.travel`): how far it moved along x by the end of the episode.",
        "",
        "| policy | torso travel along x (m) | min – max (m) |",
        "|---|--:|--:|",
        *[f"| {label} | {e['travel']['mean']:.2f} ± {e['travel']['std']:.2f} | {min(e['travel']['distances']):.2f} "
          f"– {max(e['travel']['distances']):.2f} |" for label, e in rows],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/ant_dart"), help="where the students live")
    parser.add_argument("--teacher-runs", type=Path, default=Path("runs/ant_distill"),
                        help="where the PPO teacher lives (RUNS/teacher; trained there when missing)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where ant_dart.md goes")
    parser.add_argument("--teacher-steps", type=int, default=3_000_000,
                        help="PPO environment steps when the teacher must be trained (3,000,000)")
    parser.add_argument("--models", default="cooperator,attention", help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--control-models", default="cooperator",
                        help="students also cloned without noise (σ 0), the control (comma-separated; empty: none)")
    parser.add_argument("--noise", type=float, default=0.5, help="DART: sd of the executed action's noise (0.5)")
    parser.add_argument("--iterations", type=int, default=10, help="iterations per student (default 10)")
    parser.add_argument("--test-episodes", type=int, default=50, help="test episodes per policy (default 50)")
    parser.add_argument("--travel-episodes", type=int, default=10,
                        help="episodes per policy that follow the torso, to say how far it walks (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    models = [m for m in args.models.split(",") if m]
    controls = [m for m in args.control_models.split(",") if m]
    for flag, chosen in (("--models", models), ("--control-models", controls)):
        bad = [m for m in chosen if m not in MODELS]
        if bad:
            parser.error(f"{flag}: unknown {bad}; allowed: {', '.join(MODELS)}")
    if min(args.teacher_steps, args.iterations, args.test_episodes, args.travel_episodes) < 1 or args.noise <= 0:
        parser.error("--teacher-steps, --iterations, --test-episodes and --travel-episodes must be >= 1, --noise > 0")
    args.runs.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rnd = cached_random_policy(args.runs, args.test_episodes, args.seed)
    print(f"random policy: {rnd['mean']:.1f} ± {rnd['std']:.1f}", flush=True)
    state = train_teacher(args.teacher_runs, args.teacher_steps, args.seed)
    teacher = {
        "env_steps": state["env_steps"], "wall_s": state["wall_s"],
        "params": sum(v.numel() for k, v in state["policy"].items() if k.startswith("actor") or k == "log_std"),
        "test": test_teacher(args.teacher_runs, args.test_episodes, args.seed),
    }
    print(f"teacher: {teacher['env_steps']:,} steps, test {teacher['test']['plain']['mean']:.1f}", flush=True)
    students = {m: _student(m, args.noise, args) for m in models}
    control = {m: _student(m, 0.0, args) for m in controls}
    finetuned: dict[str, dict] = {}
    for model in models:
        for stage in FINETUNES:
            entry = finetune_entry(stage_dir(args.runs, model, args.noise, stage), args.test_episodes)
            if entry is None:
                break  # not run: narla run scenarios/ant_MODEL_dart_STAGE.yaml --out RUNS/MODEL_dartσ_STAGE
            finetuned.setdefault(model, {})[stage] = entry
            print(f"{model} (DART, {FINETUNES[stage]}): test {entry['test']['plain']['mean']:.1f}", flush=True)
    shaped = {}
    for model in models:
        entry = finetune_entry(stage_dir(args.runs, model, args.noise, "progress"), args.test_episodes)
        if entry is not None:  # else not run: narla run scenarios/ant_MODEL_dart_progress.yaml --out ...
            shaped[model] = entry
            print(f"{model} (DART, {SHAPED}): test {entry['test']['plain']['mean']:.1f}", flush=True)
    n = args.travel_episodes
    rnd = {**rnd, "travel": travel(args.runs, "random", 0, n, baseline_travel(None, args.seed))}
    teacher["travel"] = travel(args.runs, "teacher", teacher["env_steps"], n,
                               baseline_travel(args.teacher_runs, args.seed))
    for group in (students, control):
        for model, s in group.items():
            run_dir = dart_dir(args.runs, model, s["noise"])
            s["travel"] = travel(args.runs, run_dir.name, s["iterations"], n, run_travel(run_dir))
    for model, stages in finetuned.items():
        for stage, f in stages.items():
            run_dir = stage_dir(args.runs, model, args.noise, stage)
            f["travel"] = travel(args.runs, run_dir.name, f["env_steps"], n, run_travel(run_dir))
    for model, f in shaped.items():
        run_dir = stage_dir(args.runs, model, args.noise, "progress")
        f["travel"] = travel(args.runs, run_dir.name, f["env_steps"], n, run_travel(run_dir))
    data = {"random": rnd, "teacher": teacher, "students": students, "controls": control, "finetuned": finetuned,
            "shaped": shaped}
    atomic_write(args.out / "ant_dart.json", json.dumps(data, indent=2) + "\n")
    atomic_write(args.out / "ant_dart.md", render(data, args))
    print(f"wrote {args.out / 'ant_dart.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
