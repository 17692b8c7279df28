"""``narla sweep``: a grid of scenario keys x seeds, one results directory per trial, run in worker processes.

.. code-block:: console

    narla sweep scenarios/cartpole_1layer.yaml --grid learning.lr=0.001,0.003 --seeds 0-4 --out runs/lr --workers 2

Layout of ``--out``: ``SCENARIO_STEM/[KEY=VALUE,...]/seedN/`` (a ``narla run`` results directory per trial),
plus ``trials.csv`` (one row per trial) and ``sweep.csv`` (one row per grid cell: scenario x grid values).
Every cell's scenario is loaded and its rewards resolved before any trial starts (:func:`check_trials`): a bad field
or an unknown reward is one error. A trial that raises later (its network or task cannot be built, its training
stops) is recorded with ``status: "failed: ..."`` in its ``summary.json`` and the tables; the others go on.
A trial whose ``summary.json`` holds a non-failed status is finished and skipped on a re-run (delete its
directory to run it again); an unfinished or failed trial starts over in its directory.
Unsolved trials count as the episode cap in the ``solved_at`` statistics, as the NaRLA paper counts them.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import signal
import statistics
import sys
import threading
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from tqdm.auto import tqdm

from narla.results import atomic_write, output_dir
from narla.scenario import ScenarioError, parse_override

TRIAL_FIELDS = ["cell", "scenario", "seed", "status", "solved_at", "episodes", "cap", "final_mean_return",
                "wall_time_s", "dir"]
CELL_FIELDS = ["cell", "trials", "solved", "failed", "solved_at_mean", "solved_at_median", "solved_at_min",
               "solved_at_max", "solved_only_mean", "cap", "final_return_mean", "wall_time_s", "errors"]


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: a scenario file, its grid values (``--set`` style) and a seed."""

    scenario: str
    grid: tuple[tuple[str, Any], ...]
    seed: int
    out: str
    overrides: tuple[str, ...] = field(default=())

    @property
    def cell(self) -> str:
        """The grid cell's label: scenario stem plus its grid values (seeds of one cell aggregate)."""
        values = " ".join(f"{k}={_fmt(v)}" for k, v in self.grid)
        return f"{Path(self.scenario).stem} {values}".strip()

    @property
    def dir(self) -> Path:
        """This trial's results directory."""
        path = Path(self.out) / Path(self.scenario).stem
        if self.grid:
            path = path / _safe(",".join(f"{k}={_fmt(v)}" for k, v in self.grid))
        return path / f"seed{self.seed}"


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(
        "\n...").strip()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,2,7-8"`` -> ``[0, 2, 7, 8]``."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ScenarioError(f"--seeds {text!r}: expected integers and ranges, e.g. 0-4 or 0,2,5-7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ScenarioError(f"--seeds {text!r}: range {part.strip()} is empty")
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["learning.lr=0.001,0.003"]`` -> ``{"learning.lr": [0.001, 0.003]}`` (each value parsed as YAML)."""
    grid: dict[str, list[Any]] = {}
    for text in items:
        if "=" not in text:
            raise ScenarioError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. learning.lr=0.001,0.003")
        key, raw = text.split("=", 1)
        parse_override(f"{key}=0")
        values = [yaml.safe_load(v) for v in raw.split(",")]
        if not raw or key in grid:
            raise ScenarioError(f"--grid {text!r}: give each key once with at least one value")
        grid[key] = values
    return grid


def make_trials(
    scenarios: Sequence[str | Path], grid: dict[str, list[Any]], seeds: Sequence[int], out: str | Path,
    overrides: Sequence[str] = (),
) -> list[Trial]:
    """The full product scenarios x grid values x seeds."""
    for path in scenarios:
        if not Path(path).is_file():
            raise ScenarioError(f"scenario file {str(path)!r} does not exist")
    stems = [Path(p).stem for p in scenarios]
    if len(set(stems)) != len(stems):
        raise ScenarioError("sweep: two scenario files share a name; their results directories would collide")
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    return [
        Trial(str(path), tuple(zip(keys, combo, strict=True)), seed, str(out), tuple(overrides))
        for path in scenarios
        for combo in combos
        for seed in seeds
    ]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_finished(trial: Trial) -> bool:
    """A trial is finished when its ``summary.json`` exists with a status that is neither ``failed: ...`` nor
    ``paused`` (a batch stopped by its time cap, continued by the next sweep from its checkpoint)."""
    summary = _read_json(trial.dir / "summary.json")
    if summary is None:
        return False
    status = str(summary.get("status", "failed"))
    return not status.startswith("failed") and status != "paused"


BATCH_CHECKPOINT = "batch_checkpoint.pt"


def _write_failure(trial: Trial, error: str) -> None:
    path = trial.dir / "summary.json"
    summary = _read_json(path)
    if summary is not None and str(summary.get("status", "")).startswith("failed"):
        return
    trial.dir.mkdir(parents=True, exist_ok=True)
    summary = {"seed": trial.seed, "status": f"failed: {error}", "episodes": 0, "solved_at": None}
    atomic_write(path, json.dumps(summary, indent=2) + "\n")


def check_trials(trials: Sequence[Trial], rewards: bool = True) -> None:
    """Load the scenario of each grid cell that has unfinished trials once (its trials differ only in seed) and,
    with ``rewards``, import its modules and resolve its rewards, before any trial starts: a bad field or an unknown
    reward is one error naming the cell, not a failure of every trial. The networks and tasks are built by the
    trials themselves. (``rewards`` False: where the trials run elsewhere, on a Ray cluster whose modules this
    machine may not have.)"""
    from narla import scenario as scenarios
    from narla.imports import import_all
    from narla.rewards.scheme import RewardScheme

    seen = set()
    for trial in trials:
        key = (trial.scenario, *_overrides(trial, seed=False))  # grid values may be lists: their text is the key
        if key in seen or is_finished(trial):
            continue
        seen.add(key)
        try:
            scenario = scenarios.load(trial.scenario, _overrides(trial))
            if rewards:
                import_all(scenario.imports)
                RewardScheme.from_config(scenario.rewards, None)
        except ValueError as err:  # ScenarioError, RewardError
            raise ScenarioError(f"{trial.cell}: {err}") from None
        except Exception as err:  # a user module or a reward failing as it loads: said the same way
            raise ScenarioError(f"{trial.cell}: {type(err).__name__}: {err}") from None


def _overrides(trial: Trial, seed: bool = True) -> list[str]:
    """``trial``'s overrides of its scenario file: ``--set``, then its grid values, then (``seed``) its seed."""
    return list(trial.overrides) + [f"{k}={_fmt(v)}" for k, v in trial.grid] + ([f"seed={trial.seed}"] if seed else [])


def run_trial(trial: Trial) -> dict:
    """Train one trial into its directory (in a worker process); errors are recorded, never raised."""
    from narla import scenario as scenarios
    from narla.training import Trainer

    (trial.dir / "error.txt").unlink(missing_ok=True)
    try:
        scenario = scenarios.load(trial.scenario, _overrides(trial))
        Trainer(scenario, trial.dir, progress=False, overwrite=True).train()  # an unfinished trial starts over
    except Exception as err:  # a failing trial must not stop the sweep
        _write_failure(trial, f"{type(err).__name__}: {err}")
        (trial.dir / "error.txt").write_text(traceback.format_exc())
    return load_record(trial)


def run_cell(trials: Sequence[Trial]) -> list[dict]:
    """Train the seeds of one grid cell as one batch (:class:`narla.runs.RunsTrainer`), in a worker process.

    The batch checkpoints itself (``BATCH_CHECKPOINT`` in the cell's directory), so a batch paused by its time cap
    or killed continues on the next sweep, its seeds where they were and any other unfinished seed (one that failed,
    say) from the start; a checkpoint this batch cannot continue (seeds outside the cell's unfinished ones, another
    scenario or checkpoint format) is dropped, and those runs start over.
    """
    from narla import scenario as scenarios
    from narla.runs import RunsTrainer

    try:
        loaded = []
        for trial in trials:
            (trial.dir / "error.txt").unlink(missing_ok=True)
            loaded.append(scenarios.load(trial.scenario, _overrides(trial)))
        checkpoint = trials[0].dir.parent / BATCH_CHECKPOINT
        trainer = RunsTrainer(loaded, [t.dir for t in trials], checkpoint=checkpoint)
        if checkpoint.is_file() and not trainer.can_resume():
            checkpoint.unlink()
        trainer.train()
    except Exception as err:  # a failing cell must not stop the sweep
        for trial in trials:
            if not is_finished(trial):
                _write_failure(trial, f"{type(err).__name__}: {err}")
                trial.dir.mkdir(parents=True, exist_ok=True)
                (trial.dir / "error.txt").write_text(traceback.format_exc())
    return [load_record(t) for t in trials]


class Job(NamedTuple):
    """Trials a worker runs together: one cell's seeds as a batch (:func:`run_cell`), or one lone trial."""

    trials: list[Trial]
    batched: bool


def plan_jobs(trials: Sequence[Trial], batch_seeds: bool = True) -> list[Job]:
    """Group the trials into jobs: the unfinished seeds of one cell form one batched job when they can train as a
    batch (:func:`narla.runs.batchable`), even a single seed, since a batch checkpoints itself and so a time cap
    pauses it instead of ending it; otherwise (or without ``batch_seeds``) each trial is its own job."""
    from narla import scenario as scenarios
    from narla.runs import batchable

    if not batch_seeds:
        return [Job([t], False) for t in trials]
    groups: dict[tuple, list[Trial]] = {}
    for t in trials:
        groups.setdefault((t.scenario, *_overrides(t, seed=False)), []).append(t)  # grid values may be lists
    jobs: list[Job] = []
    for group in groups.values():
        t = group[0]
        try:
            ok = batchable(scenarios.load(t.scenario, _overrides(t, seed=False))) is None
        except ScenarioError:
            ok = False  # the trial itself reports the error
        jobs.extend([Job(group, True)] if ok else [Job([x], False) for x in group])
    return jobs


def _run_job(job: Job) -> list[dict]:
    """A batch of a cell's seeds, or a lone trial (see :func:`plan_jobs`)."""
    return run_cell(job.trials) if job.batched else [run_trial(job.trials[0])]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def load_record(trial: Trial) -> dict:
    """The trial's row for ``trials.csv``, read from its results directory."""
    summary = _read_json(trial.dir / "summary.json") or {"status": "missing"}
    cap = None
    scenario_file = trial.dir / "scenario.yaml"
    if scenario_file.is_file():
        cap = (yaml.safe_load(scenario_file.read_text()) or {}).get("training", {}).get("max_episodes")
    return {
        "cell": trial.cell,
        "scenario": Path(trial.scenario).stem,
        "seed": trial.seed,
        "status": summary.get("status"),
        "solved_at": summary.get("solved_at"),
        "episodes": summary.get("episodes"),
        "cap": cap,
        "final_mean_return": summary.get("final_mean_return"),
        "wall_time_s": summary.get("wall_time_s"),
        "dir": str(trial.dir),
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the running trials now (their directories have no summary, so a re-run starts them over)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public API before Python 3.14
        if process.is_alive():
            process.terminate()


def run_sweep(
    trials: Sequence[Trial], workers: int | None = None, progress: bool = True, batch_seeds: bool = True,
    backend: str = "local", address: str | None = None,
) -> list[dict]:
    """Run the unfinished trials in ``workers`` processes (default: one per core); records of all trials.

    ``batch_seeds`` (default): the unfinished seeds of a cell train as one batch in one process
    (:mod:`narla.runs`), where the scenario allows it; otherwise every trial runs on its own.
    ``backend="ray"`` runs the same jobs as Ray tasks (:func:`_run_ray`) on the cluster at ``address`` (default: a
    local Ray limited to ``workers`` CPUs); results directories, failure records and skipping are the same.

    Interrupted (Ctrl-C, or SIGTERM to this process), the sweep stops its workers too: finished trials are
    kept, running ones start over on the next run.
    """
    workers = workers or len(os.sched_getaffinity(0))
    todo = [t for t in trials if not is_finished(t)]
    bar = tqdm(total=len(trials), initial=len(trials) - len(todo), unit="trial", disable=not progress,
               dynamic_ncols=True, desc="sweep")
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    try:
        jobs = plan_jobs(todo, batch_seeds)
        if backend == "ray":
            _run_ray(jobs, workers, bar, address)
        elif backend == "local":
            _run_pool(jobs, workers, bar)
        else:
            raise ScenarioError(f"--backend: {backend!r} is not allowed; allowed: local, ray")
    finally:
        bar.close()
        if on_main:
            signal.signal(signal.SIGTERM, previous)
    return [load_record(t) for t in trials]


def _run_pool(jobs: Sequence[Job], workers: int, bar: tqdm) -> None:
    failed = 0
    if jobs:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(_run_job, job): job for job in jobs}
            try:
                for future in as_completed(futures):
                    try:
                        records = future.result()
                    except Exception as err:  # the worker itself died (killed, out of memory)
                        for trial in futures[future].trials:
                            _write_failure(trial, f"{type(err).__name__}: {err}")
                        records = [load_record(t) for t in futures[future].trials]
                    for record in records:
                        failed += str(record["status"]).startswith("failed")
                        bar.update(1)
                        bar.set_postfix(failed=failed, last=f"{record['cell']} s{record['seed']}: {record['status']}")
            except BaseException:
                _terminate_workers(pool)  # before shutdown, which forgets the worker processes
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def _run_ray(jobs: Sequence[Job], workers: int, bar: tqdm, address: str | None) -> None:
    """The jobs as Ray tasks (one CPU each). Without ``address``, a local Ray instance limited to ``workers`` CPUs is
    started and stopped here; with one, the cluster there runs them (every node must see the sweep directory)."""
    try:
        import ray
    except ImportError as err:
        raise ScenarioError("--backend ray needs Ray: pip install 'narla[ray]'") from err
    if not jobs:
        return
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_job)
        pending = {task.remote(job): job for job in jobs}
        failed = 0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                records = ray.get(done[0])
            except Exception as err:  # the task itself died (worker killed, out of memory)
                for trial in job.trials:
                    _write_failure(trial, f"{type(err).__name__}: {err}")
                records = [load_record(t) for t in job.trials]
            for record in records:
                failed += str(record["status"]).startswith("failed")
                bar.update(1)
                bar.set_postfix(failed=failed, last=f"{record['cell']} s{record['seed']}: {record['status']}")
    finally:
        if started:
            ray.shutdown()


def _ray_job(job: Job) -> list[dict]:
    _worker_init()
    return _run_job(job)


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "min": None, "max": None}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "min": min(values),
            "max": max(values)}


def aggregate(records: Sequence[dict]) -> list[dict]:
    """One row per cell: solved_at statistics over its non-failed seeds (an unsolved seed counts as its cap,
    ``training.max_episodes``), the mean over the solved seeds alone, the cap, and the final return."""
    cells: dict[str, list[dict]] = {}
    for r in records:
        cells.setdefault(r["cell"], []).append(r)
    rows = []
    for cell, rs in cells.items():
        ok = [r for r in rs if r["status"] not in (None, "missing") and not str(r["status"]).startswith("failed")]
        bad = [r for r in rs if r not in ok]
        solved = [r["solved_at"] if r["solved_at"] is not None else (r["cap"] or r["episodes"]) for r in ok]
        returns = [r["final_mean_return"] for r in ok if r["final_mean_return"] is not None]
        s = _stats([float(v) for v in solved])
        only = [float(r["solved_at"]) for r in ok if r["solved_at"] is not None]
        caps = [r["cap"] for r in ok if r["cap"] is not None]
        rows.append({
            "cell": cell,
            "trials": len(rs),
            "solved": sum(r["solved_at"] is not None for r in ok),
            "failed": len(bad),
            "solved_at_mean": s["mean"],
            "solved_at_median": s["median"],
            "solved_at_min": s["min"],
            "solved_at_max": s["max"],
            "solved_only_mean": statistics.fmean(only) if only else None,
            "cap": max(caps) if caps else None,
            "final_return_mean": statistics.fmean(returns) if returns else None,
            "wall_time_s": round(sum(r["wall_time_s"] or 0.0 for r in ok), 1),
            "errors": "; ".join(f"seed {r['seed']}: {r['status']}" for r in bad),
        })
    return rows


def _write_csv(path: Path, rows: Sequence[dict], fieldnames: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_tables(out: str | Path, records: Sequence[dict]) -> list[dict]:
    """Write ``trials.csv`` and ``sweep.csv`` under ``out``; returns the cell rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = aggregate(records)
    _write_csv(out / "trials.csv", records, TRIAL_FIELDS)
    _write_csv(out / "sweep.csv", cells, CELL_FIELDS)
    return cells


def format_table(cells: Sequence[dict]) -> str:
    """A plain-text table of the cells: episodes to solve over all trials (an unsolved trial counts as its cap, so
    such a cell's numbers are censored, i.e. lower bounds, and are marked), over the solved trials only, and the
    final mean return."""
    def num(v: Any) -> str:
        return "-" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"

    header = ["cell", "solved", "to solve: mean", "median", "min", "max", "solved only: mean", "final return"]
    body = []
    for c in cells:
        solved = f"{c['solved']}/{c['trials']}" + (f" ({c['failed']} failed)" if c["failed"] else "")
        cap = f"cap {c['cap']:,}" if c.get("cap") else "the cap"
        if c["solved"] == 0 and c["solved_at_mean"] is not None:
            stats = [f"not solved ({cap})", "-", "-", "-"]
        else:
            censored = c["solved"] < c["trials"] - c["failed"]
            mark = "≥ " if censored else ""
            stats = [mark + num(c["solved_at_mean"]), mark + num(c["solved_at_median"]), num(c["solved_at_min"]),
                     mark + num(c["solved_at_max"])]
        body.append([c["cell"], solved, *stats, num(c.get("solved_only_mean")), num(c["final_return_mean"])])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True)))

    note = ("episodes to solve: an unsolved trial counts as its cap (training.max_episodes), so '≥' marks a "
            "censored cell whose true mean is higher; 'solved only' averages the solved trials alone")
    return "\n".join([*(line(row) for row in [header, *body]), note])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``narla sweep`` options."""
    parser.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a scenario key and its values, e.g. learning.lr=0.001,0.003 (repeatable: product)")
    parser.add_argument("--seeds", default="0", help="seeds, e.g. 0-4 or 0,3,7 (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="sweep directory (one results directory per trial)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: a process pool on this machine (default); ray: Ray tasks (needs narla[ray])")
    parser.add_argument("--address", default=None,
                        help="with --backend ray: the Ray cluster (default: a local one of --workers CPUs)")
    add_trial_options(parser)


def add_trial_options(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--set``, ``--quiet``: the options of every command that runs trials with :func:`run_sweep`."""
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field in every trial, e.g. training.max_episodes=2000")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--separate-seeds", action="store_true",
                        help="run every seed in its own process (default: the seeds of a cell train as one batch)")


def check_trial_options(args: argparse.Namespace) -> None:
    """Reject a bad ``--workers`` or ``--set`` before any trial starts (one :class:`ScenarioError`)."""
    if args.workers is not None and args.workers < 1:
        raise ScenarioError(f"--workers: must be >= 1, got {args.workers}")
    for text in args.set:
        parse_override(text)


def main(args: argparse.Namespace) -> int:
    """Run the sweep, write ``trials.csv`` / ``sweep.csv`` and print the table; 1 if any trial failed."""
    check_trial_options(args)
    trials = make_trials(args.scenarios, parse_grid(args.grid), parse_seeds(args.seeds), output_dir(args.out, "--out"),
                         args.set)
    check_trials(trials, rewards=not (args.backend == "ray" and args.address))
    records = run_sweep(trials, args.workers, progress=not args.quiet, batch_seeds=not args.separate_seeds,
                        backend=args.backend, address=args.address)
    cells = write_tables(args.out, records)
    print(format_table(cells))
    print(f"results: {args.out}/sweep.csv", flush=True)
    for cell in cells:  # why, in one line a cell, even under --quiet (each trial's error.txt has the traceback)
        if cell["failed"]:
            print(f"sweep: {cell['cell']}: {cell['failed']} failed: {cell['errors']}", file=sys.stderr)
    return 1 if any(c["failed"] for c in cells) else 0
