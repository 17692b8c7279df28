"""The ``narla`` command line: ``run`` (``--resume DIR``), ``eval``, ``record``, ``plot``, ``analyze``, ``bench``,
``sweep``, ``schema``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import sys
from pathlib import Path

from narla.allocator import hold_freed_memory
from narla.graph import GraphError
from narla.results import OutputError, output_file
from narla.rewards import RewardError
from narla.scenario import ScenarioError
from narla.tasks.ant import TaskUnavailable
from narla.training import ResultsExistError, TrainingError


def _run(args: argparse.Namespace) -> int:
    from narla import scenario as scenarios
    from narla.training import Trainer

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    if args.resume is not None:
        return _resume(args, overrides)
    if args.scenario is None:
        raise ScenarioError("narla run: give a scenario file, or --resume DIR to continue a run")
    scenario = scenarios.load(args.scenario, overrides)
    if args.imports:
        scenario = dataclasses.replace(scenario, imports=scenario.imports + list(args.imports))
    out = args.out
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{scenario.name}-s{scenario.seed}-{stamp}"
    summary = _train(Trainer(scenario, out, progress=not args.quiet), args.threads)
    print(json.dumps(summary, indent=2))
    print(f"results: {out}", file=sys.stderr)
    return 0


def _train(trainer, threads: int | None = None) -> dict:
    """Train, then release the task's worker processes and simulators, whatever happened.

    ``threads``: torch's intra-op threads in this process; None: 1 when the task steps its copies in worker
    processes (their simulators need the cores, and idle torch threads spinning beside them slowed two
    concurrent Ant runs here about tenfold), else torch's default.
    """
    import torch

    from narla.tasks.sharded import ShardedVectorEnv

    if threads is None and isinstance(getattr(trainer.run.task, "env", None), ShardedVectorEnv):
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return trainer.train()
    finally:
        trainer.run.task.close()


def _resume(args: argparse.Namespace, overrides: list[str]) -> int:
    from narla.training import resume

    if args.scenario is not None or args.out is not None:
        raise ScenarioError("narla run --resume DIR: the scenario and results directory are DIR's; drop SCENARIO/--out")
    if args.imports:
        raise ScenarioError("narla run --resume DIR: DIR's scenario.yaml records the modules it imports; drop --import")
    summary = _train(resume(args.resume, overrides, progress=not args.quiet), args.threads)
    print(json.dumps(summary, indent=2))
    print(f"results: {args.resume}", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _schema(args: argparse.Namespace) -> int:
    from narla.scenario import schema_json

    text = schema_json()
    if args.out:
        out = output_file(args.out, "--out")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written: {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


COMMANDS = [  # (subcommand, module with add_arguments and main, help)
    ("eval", "narla.evaluate", "replay a learned policy for N episodes (and optionally a video)"),
    ("record", "narla.record", "record episodes of a run's policy (spikes, rewards, observations) to .npz"),
    ("plot", "narla.plot", "PNG learning curves and a spike raster of a run, or the curves of a sweep"),
    ("analyze", "narla.study.analyze", "lesions, influence, alignment, information of a trained run"),
    ("bench", "narla.bench", "neuron-steps/s of the engine against a per-neuron reference loop"),
    ("sweep", "narla.sweep", "a grid of scenario keys x seeds in parallel worker processes"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="narla", description="Populations of neurons that are RL agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a scenario and write a results directory")
    run.add_argument("scenario", nargs="?", help="path to a scenario YAML file")
    run.add_argument(
        "--resume", type=Path, metavar="DIR", help="continue the run in DIR from its checkpoint.pt (--set extends it)"
    )
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. learning.lr=0.01")
    run.add_argument("--out", type=Path, help="results directory (default runs/NAME-sSEED-TIME)")
    run.add_argument("--device",
                     help="cpu, cuda or cuda:N (default: the scenario's device, else $NARLA_DEVICE, else cpu)")
    run.add_argument("--seed", type=int, help="random seed (overrides the scenario's)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="torch threads (default: 1 when the task steps its copies in worker processes, as Ant does; "
                          "else torch's default)")
    run.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                     help="import a module first (e.g. one that registers rewards); recorded in the run's scenario")
    run.set_defaults(func=_run)

    for name, module, text in COMMANDS:
        commands = importlib.import_module(module)  # each module has add_arguments(parser) and main(args)
        command = sub.add_parser(name, help=text)
        commands.add_arguments(command)
        command.set_defaults(func=commands.main)

    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files (for editors)")
    schema.add_argument("--out", help="write it to this file instead of stdout")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Like `python -m`, let scenarios name modules of the current directory by dotted path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        hold_freed_memory()  # every command: a bad NARLA_MALLOC is one message, before any work
    except ValueError as err:
        print(f"narla: error: {err}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ScenarioError, GraphError, RewardError, ResultsExistError, TrainingError, TaskUnavailable,
            OutputError) as err:
        print(f"narla: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("narla: interrupted; results written so far are kept", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
