"""``narla bench``: neuron-steps/s of the batched engine against the per-neuron reference loop, and of full training.

The first measurement is the *acting path* of rollout collection, the same work on both sides:
- engine: ``Engine.tick`` over ``B`` copies at once, the readout, and one step of the torch-native
  ``CartPole`` holding the ``B`` copies;
- reference: :class:`narla.reference.ReferenceNetwork` (one ``nn.Module`` per neuron, the weights copied from
  the engine's population) stepping ``B`` separate ``CartPole(num_envs=1)`` one copy at a time, one neuron at
  a time, as the public NaRLA implementation does.

Both run under ``torch.inference_mode`` in the same process, with the same policies; their timing is
interleaved in rounds so that a change in machine load hits both alike. The reference always runs on the CPU
(its fastest device).

The second is *full training*, what a user's run does: :func:`narla.rollout.collect` (acting, the task and all
five rewards) and one REINFORCE update per batch of ``B`` episodes, through :func:`narla.training.build`, the
Trainer's own parts. Its neuron-steps count the ticks of the episodes played. Beside it stands the machine's
limit for that network: the fp32 matmul rate divided by the FLOPs of a neuron-step of training, taken as four forward
passes of the neuron's MLP (acting, re-evaluation, and a backward pass of about two). The training runs in ``--rounds``
parts, with the matmul rate measured before each part and after the last, and the limit takes their mean: on a shared
machine whose speed drifts within a row, the fraction then compares the training with the machine of those seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import torch

from narla.engine import Engine
from narla.memory import update_column_bytes
from narla.neurons import Population
from narla.readout import Readout
from narla.reference import ReferenceNetwork
from narla.results import machine
from narla.scenario import DEVICE_PATTERN
from narla.tasks.cartpole import CartPole
from narla.wiring import compile_graph

if TYPE_CHECKING:
    from narla.training import Run

MEASURED = "acting path: tick + readout + CartPole step (no rewards, no learning)"
TRAINING = "full training: collect (tick, CartPole, all five rewards) + one REINFORCE update per batch"
REWARDS = ["task", "activity", "sparsity", "prediction", "trace"]
ACTIVATION_BUDGET = 2 << 30  # bytes of hidden activations one chunk of a training update may hold


@dataclass
class Config:
    """One network (a scenario's ``network`` section, on CartPole) to measure at several batch sizes ``B``."""

    name: str
    network: dict
    hidden: tuple[int, ...]
    batches: tuple[int, ...]
    reference_batches: tuple[int, ...]  # B at which the reference is measured; other B reuse the smallest

    def graph(self) -> nx.DiGraph:
        from narla.training import build_graph

        task = CartPole(1)
        return build_graph(self.network, task.obs_dim, Readout("choice", task.action_space).motor_groups())


def configs(quick: bool) -> list[Config]:
    """NaRLA's 3- and 5-layer networks and a >= 10,000-neuron network (tiny stand-ins with ``quick``)."""
    if quick:
        return [
            Config("tiny-2layer", {"builder": "layered", "layers": 2, "width": 3}, (16, 16), (1, 4), (1, 4)),
            Config("sparse-200", {"builder": "random_sparse", "n_neurons": 200, "fan_in": 4, "layers": 3}, (16, 16),
                   (1, 4), (1,)),
        ]
    narla = {"builder": "layered", "width": 15, "connectivity": "local"}
    return [
        Config("narla-3layer", {**narla, "layers": 3}, (128, 128), (1, 64, 256), (1, 64)),
        Config("narla-5layer", {**narla, "layers": 5}, (128, 128), (1, 64, 256), (1, 64)),
        Config("sparse-10k", {"builder": "random_sparse", "n_neurons": 10_000, "fan_in": 8, "layers": 4}, (128, 128),
               (1, 64), (1,)),
    ]


def matmul_flops(device: torch.device, size: int = 2048, seconds: float = 1.0) -> float:
    """The machine's fp32 rate on one large matrix product (FLOP/s): the ceiling of any dense neuron update."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * size**3 * count / (time.perf_counter() - start)


def weights_per_neuron(population: torch.nn.Module, neurons: int) -> float:
    """Multiply-adds of one neuron's forward pass: its MLP's weights (padded inputs included)."""
    return sum(p.numel() for name, p in population.named_parameters() if "weights" in name) / neurons


def training_run(cfg: Config, batch: int, device: torch.device, seed: int = 0) -> Run:
    """The run :func:`training_rate` trains: ``cfg``'s network on CartPole with ``batch`` copies, all five rewards
    and REINFORCE, built by :func:`narla.training.build` as a user's scenario would be."""
    from narla.scenario import from_dict
    from narla.training import build

    scenario = {
        "name": f"bench_{cfg.name}", "seed": seed, "device": str(device),
        "task": {"id": "cartpole", "num_envs": batch}, "network": cfg.network,
        "neuron": {"hidden": list(cfg.hidden), "activation": "leaky_relu"}, "rewards": REWARDS,
        "learning": {"rule": "reinforce", "lr": 0.001},
    }
    return build(from_dict(scenario))


def training_rate(cfg: Config, batch: int, device: torch.device, seconds: float, seed: int = 0,
                  run: Run | None = None, matmul: Callable[[], float] | None = None, rounds: int = 1) -> dict:
    """Full training (see the module doc) for about ``seconds``, in whole batches after one warm-up batch.

    The batches run in ``rounds`` parts of about ``seconds / rounds``; with ``matmul`` (a call of
    :func:`matmul_flops`) the machine's rate is measured before each part and after the last, outside the timed
    training, and the row gives their mean (``training_matmul_flops``) and range.

    Where a batch's hidden activations could pass :data:`ACTIVATION_BUDGET` (every copy running for the task's whole
    episode), the update re-evaluates in windows of at most that budget's valid columns (``learning.chunk_columns``),
    as a user would bound it on a network this size; a batch within one window keeps the last hidden layer.
    ``run``: one :func:`training_run` built for ``cfg`` on ``device``, trained here on a new task of ``batch``
    copies and handed back as it came (its parameters, its generator's state, an empty optimizer state), so that a
    caller measuring several batch sizes builds a large network once (10^6 neurons take a minute) and each row still
    starts from the built network.
    """
    if run is None:
        return _training_rate(cfg, training_run(cfg, batch, device, seed), batch, device, seconds, matmul, rounds)
    from narla.tasks import make_task

    params = {k: v.clone() for k, v in run.engine.population.state_dict().items()}
    generator = run.engine.generator.get_state()
    task = make_task("cartpole", batch, device=device)
    task.reset(seed=seed)
    try:
        return _training_rate(cfg, dataclasses.replace(run, task=task), batch, device, seconds, matmul, rounds)
    finally:
        run.engine.population.load_state_dict(params)
        run.engine.generator.set_state(generator)
        run.learner.optimizer.state.clear()


def training_chunk_columns(engine: Engine, batch: int, ticks: int) -> int | None:
    """The ``learning.chunk_columns`` the training rows set for ``batch`` copies over episodes of at most ``ticks``:
    None where the activations an update keeps for its backward pass (:func:`narla.memory.update_column_bytes` per
    tick and copy) stay within :data:`ACTIVATION_BUDGET` for a whole batch, else as many columns as fit it (at least
    one), as a user would bound an update on a network this size."""
    per_column = update_column_bytes(engine)
    if ACTIVATION_BUDGET // (per_column * batch) >= ticks:
        return None
    return max(1, ACTIVATION_BUDGET // per_column)


def _training_rate(cfg: Config, run: Run, batch: int, device: torch.device, seconds: float,
                   matmul: Callable[[], float] | None, rounds: int) -> dict:
    """:func:`training_rate` of ``run``, whose task holds ``batch`` copies."""
    from narla.rollout import collect
    from narla.training import collect_options

    n = run.wiring.num_neurons
    run.learner.chunk_columns = training_chunk_columns(run.engine, batch, run.task.max_episode_steps)
    options = collect_options(run)  # as the Trainer collects (its rewards unrecorded where a batch's are too large)

    def one_batch() -> torch.Tensor:
        rollout = collect(run.engine, run.task, run.scheme, **options)
        run.learner.update(rollout)
        return rollout.valid.sum()

    one_batch()
    _sync(device)
    played, flops, elapsed = [], [], 0.0
    for _ in range(max(rounds, 1)):
        if matmul is not None:
            flops.append(matmul())
        start, count = time.perf_counter(), len(played)
        while len(played) == count or time.perf_counter() - start < seconds / max(rounds, 1):
            played.append(one_batch())
        _sync(device)
        elapsed += time.perf_counter() - start
    steps = int(torch.stack(played).sum())
    row = {
        "training_env_steps": steps,
        "training_batches": len(played),
        "training_seconds": round(elapsed, 3),
        "training_neuron_steps_per_s": round(steps * n / elapsed, 1),
        "training_chunk_columns": run.learner.chunk_columns,
        "weights_per_neuron": weights_per_neuron(run.engine.population, n),
    }
    if matmul is not None:
        flops.append(matmul())
        row.update(training_matmul_flops=round(sum(flops) / len(flops)),
                   training_matmul_flops_range=[round(min(flops)), round(max(flops))])
    return row


class EngineLoop:
    """``B`` copies acting together: one engine tick, the readout, one batched task step. ``tick``: what plays the
    engine's tick (default ``engine.tick``; a :class:`narla.capture.GraphTick` replays it as a CUDA graph)."""

    def __init__(self, engine: Engine, batch: int, seed: int,
                 tick: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.engine = engine
        self.tick = engine.tick if tick is None else tick
        self.batch = batch
        self.task = CartPole(batch, device=engine.device)
        self.obs = self.task.reset(seed=seed)
        self.prev = torch.zeros(engine.num_sensors + engine.num_neurons, batch, device=engine.device)

    def step(self) -> None:
        act, actions = self.tick(self.obs, self.prev)
        self.obs, _, terminated, truncated = self.task.step(self.engine.readout(actions))
        self.prev = act * (~(terminated | truncated)).float()


class ReferenceLoop:
    """``B`` copies, each its own ``CartPole(num_envs=1)``, stepped one after another by the reference network."""

    def __init__(self, network: ReferenceNetwork, readout: Readout, batch: int, seed: int) -> None:
        self.network = network
        self.readout = readout
        self.batch = batch
        self.generator = torch.Generator().manual_seed(seed)
        self.tasks = [CartPole(1) for _ in range(batch)]
        self.obs = [task.reset(seed=seed + k)[0] for k, task in enumerate(self.tasks)]
        self.prev = [torch.zeros(network.num_sensors + network.num_neurons) for _ in range(batch)]

    def step(self) -> None:
        for k, task in enumerate(self.tasks):
            act, actions = self.network.act(self.obs[k], self.prev[k], self.generator)
            obs, _, terminated, truncated = task.step(self.readout(actions.unsqueeze(1)))
            self.obs[k] = obs[0]
            self.prev[k] = act * (~(terminated | truncated)).float()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(loops: dict[str, EngineLoop | ReferenceLoop], seconds: float, rounds: int) -> dict[str, tuple[int, float]]:
    """Interleaved timing: ``rounds`` rounds of about ``seconds / rounds`` per loop, each loop stepping at least once.

    Returns ``{name: (env_steps, elapsed_s)}`` where ``env_steps`` counts every copy's steps.
    """
    devices = {
        name: getattr(getattr(loop, "engine", None), "device", torch.device("cpu")) for name, loop in loops.items()
    }
    for name, loop in loops.items():
        loop.step()
        _sync(devices[name])
    totals = {name: [0, 0.0] for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            n = 0
            while n == 0 or time.perf_counter() - start < seconds / rounds:
                loop.step()
                n += 1
            _sync(devices[name])
            totals[name][0] += n * loop.batch
            totals[name][1] += time.perf_counter() - start
    return {name: (steps, elapsed) for name, (steps, elapsed) in totals.items()}


def acting_engine(cfg: Config, device: torch.device, seed: int = 0) -> Engine:
    """``cfg``'s network on CartPole as the acting rows run it: leaky-ReLU policies, the choice readout, seeded."""
    torch.manual_seed(seed)
    readout = Readout("choice", CartPole(1).action_space)
    wiring = compile_graph(cfg.graph(), device)
    population = Population(wiring, out_dim=readout.out_dim, hidden=cfg.hidden, activation="leaky_relu").to(device)
    return Engine(wiring, population, readout, "sweep", torch.Generator(device=device).manual_seed(seed))


def bench_config(
    cfg: Config, device: torch.device, seconds: float, rounds: int, seed: int = 0,
    matmul: Callable[[], float] | None = None,
) -> list[dict]:
    """Rows (one per ``B``) for one network; with ``matmul`` (a call of :func:`matmul_flops`), full training too,
    each training row beside the matmul rate measured around its ``rounds`` parts (:func:`training_rate`), so that
    a machine whose speed drifts over a long bench still gives each row's fraction of the limit from its own
    seconds."""
    engine = acting_engine(cfg, device, seed)
    wiring, population = engine.wiring, engine.population
    reference = ReferenceNetwork.from_population(population, wiring)
    ref_readout = Readout("choice", engine.readout.action_space).bind(wiring.to("cpu"))
    n = wiring.num_neurons
    policy = "x".join(str(h) for h in cfg.hidden) + " leaky_relu"
    rows, ref_rate = [], {}
    with torch.inference_mode():
        for b in cfg.batches:
            loops: dict[str, EngineLoop | ReferenceLoop] = {"engine": EngineLoop(engine, b, seed)}
            if b in cfg.reference_batches:
                loops["reference"] = ReferenceLoop(reference, ref_readout, b, seed)
            result = measure(loops, seconds, rounds)
            if "reference" in result:
                ref_rate[b] = result["reference"]
            ref_b = b if b in ref_rate else min(ref_rate)
            e_steps, e_time = result["engine"]
            r_steps, r_time = ref_rate[ref_b]
            engine_rate, reference_rate = e_steps / e_time, r_steps / r_time
            rows.append(
                {
                    "network": cfg.name,
                    "neurons": n,
                    "stages": len(wiring.stages),
                    "policy": policy,
                    "B": b,
                    "device": str(device),
                    "engine_env_steps": e_steps,
                    "engine_seconds": round(e_time, 3),
                    "engine_env_steps_per_s": round(engine_rate, 2),
                    "engine_neuron_steps_per_s": round(engine_rate * n, 1),
                    "reference_B": ref_b,
                    "reference_env_steps": r_steps,
                    "reference_seconds": round(r_time, 3),
                    "reference_env_steps_per_s": round(reference_rate, 2),
                    "reference_neuron_steps_per_s": round(reference_rate * n, 1),
                    "ratio": round(engine_rate / reference_rate, 2),
                    "measured": MEASURED,
                }
            )
    if matmul is not None:
        for row in rows:
            train = training_rate(cfg, row["B"], device, seconds, seed, matmul=matmul, rounds=rounds)
            limit = train["training_matmul_flops"] / (4 * 2 * train["weights_per_neuron"])
            row.update(train, training_limit_neuron_steps_per_s=round(limit, 1),
                       training_fraction_of_limit=round(train["training_neuron_steps_per_s"] / limit, 4),
                       training_measured=TRAINING)
    return rows


def machine_info(device: torch.device) -> str:
    m = machine(device)
    gpu = f" ({m['gpu']})" if "gpu" in m else ""
    return (
        f"torch {m['torch']}, device {device}{gpu}, threads {m['threads']}, {m['cpus']} CPUs ({m['cpu']}, "
        f"{m['cpu_capability']} kernels), python {m['python']}"
    )


def format_table(rows: list[dict], info: str) -> str:
    """A readable table of the rows; a ``*`` marks a ratio against the reference measured at a smaller B."""
    head = [
        "network",
        "neurons",
        "policy",
        "B",
        "engine env/s",
        "engine neuron-steps/s",
        "ref env/s",
        "ref neuron-steps/s",
        "engine/ref",
    ]
    training = any("training_neuron_steps_per_s" in r for r in rows)
    if training:
        head += ["train neuron-steps/s", "train limit", "of limit"]
    body = []
    for r in rows:
        mark = "" if r["reference_B"] == r["B"] else "*"
        line = [
            r["network"],
            str(r["neurons"]),
            r["policy"],
            str(r["B"]),
            f"{r['engine_env_steps_per_s']:,.1f}",
            f"{r['engine_neuron_steps_per_s']:,.0f}",
            f"{r['reference_env_steps_per_s']:,.2f}",
            f"{r['reference_neuron_steps_per_s']:,.0f}",
            f"{r['ratio']:,.1f}x{mark}",
        ]
        if training:
            line += [
                f"{r['training_neuron_steps_per_s']:,.0f}",
                f"{r['training_limit_neuron_steps_per_s']:,.0f}",
                f"{100 * r['training_fraction_of_limit']:.1f} %",
            ]
        body.append(line)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        f"narla bench: {MEASURED}",
        "engine = all neurons and copies batched; ref = one nn.Module per neuron, one neuron and one copy at a time",
        info,
        "",
        "  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True))),
    ]
    for line in body:
        lines.append(
            "  ".join(x.ljust(w) if i < 3 else x.rjust(w) for i, (x, w) in enumerate(zip(line, widths, strict=True)))
        )
    if any(r["reference_B"] != r["B"] for r in rows):
        lines.append(
            "* reference not measured at this B: its rate at B=1 stands in (it steps copies one after another, "
            "so its rate does not depend on B)"
        )
    if training:
        lines.append(f"train = {TRAINING}; limit = matmul FLOP/s / (4 forward passes x 2 x MLP weights per neuron)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="device of the engine: cpu (default), cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list instead of a table")
    parser.add_argument(
        "--seconds", type=float, default=None, help="timing budget per measurement (default 3; 0.1 with --quick)"
    )
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved engine/reference timing rounds, and the parts each training row runs in, "
                        "with the matmul rate measured around them (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny networks and budgets (a smoke test)")
    parser.add_argument("--only", action="append", metavar="NAME", help="only networks whose name contains NAME")
    parser.add_argument(
        "--views",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the PettingZoo AEC and Parallel views against the engine (default: on, off with --quick)",
    )
    parser.add_argument(
        "--training",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time full training (acting, all five rewards, REINFORCE updates) beside the machine's limit",
    )
    parser.add_argument("--scaling", action="store_true",
                        help="throughput and peak memory against N (random sparse networks, 2 policies, B = 1/64/256)")
    parser.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")], metavar="N,N,...",
                        help="--scaling: network sizes (default 100,1000,10000,100000)")
    parser.add_argument("--policies", type=lambda text: text.split(","), metavar="P,P,...",
                        help="--scaling: policies among 2x16, 2x128 (default both)")
    parser.add_argument("--batches", type=lambda text: [int(x) for x in text.split(",")], metavar="B,B,...",
                        help="--scaling: batch sizes (default 1,64,256; measured smallest first)")
    parser.add_argument("--out", default="runs/bench-scaling", help="--scaling: where the table, JSON and plot go")
    parser.add_argument("--build-only", action="store_true",
                        help="--scaling: only build each network and report the time of each part (build.md)")
    parser.add_argument("--max-tick-s", type=float, default=0.5,
                        help="--scaling: skip configurations whose acting tick is estimated to take longer (s)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="--scaling: seconds allowed to each network size and policy")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: robust on a shared machine; 0 = torch's default)",
    )


def argument_error(args: argparse.Namespace) -> str | None:
    """What is wrong with ``narla bench``'s arguments, in one line; None when nothing is."""
    if not re.fullmatch(DEVICE_PATTERN, args.device):
        return f"--device {args.device!r}: not a device; allowed: cpu, cuda, cuda:N"
    if args.threads < 0:
        return f"--threads: must be >= 0 (0: torch's default), got {args.threads}"
    if args.seconds is not None and not args.seconds > 0:
        return f"--seconds: must be > 0, got {args.seconds}"
    if args.rounds < 1:
        return f"--rounds: must be >= 1, got {args.rounds}"
    scaling_only = {"--sizes": args.sizes, "--policies": args.policies, "--batches": args.batches,
                    "--build-only": args.build_only or None}
    given = [flag for flag, value in scaling_only.items() if value is not None]
    if given and not args.scaling:
        return f"{', '.join(given)}: only with --scaling"
    return None


def main(args: argparse.Namespace) -> int:
    error = argument_error(args)
    if error is not None:
        print(f"narla bench: error: {error}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"narla bench: error: --device {args.device} requested but CUDA is not available here; use cpu",
            file=sys.stderr,
        )
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seconds = args.seconds if args.seconds is not None else (0.1 if args.quick else 3.0)
    chosen = [c for c in configs(args.quick) if not args.only or any(s in c.name for s in args.only)]
    if not chosen:
        names = ", ".join(c.name for c in configs(args.quick))
        print(f"narla bench: error: --only {args.only} matches no network; networks: {names}", file=sys.stderr)
        return 2
    matmul = functools.partial(matmul_flops, device, size=512 if args.quick else 2048, seconds=min(seconds, 1.0))
    if args.scaling:
        from narla import bench_scaling

        return bench_scaling.main(args, matmul() if args.training else matmul_flops(device))
    rows = []
    for cfg in chosen:
        rows.extend(bench_config(cfg, device, seconds, args.rounds, matmul=matmul if args.training else None))
    views = []
    if args.views if args.views is not None else not args.quick:
        from narla.envs import bench_steps_per_second

        views = [bench_steps_per_second(view, seconds=seconds) for view in ("aec", "parallel")]
    if args.json:
        print(json.dumps(rows + [dict(v, kind="pettingzoo_view") for v in views], indent=2))
    else:
        info = machine_info(device)
        rates = [f / 1e9 for r in rows for f in r.get("training_matmul_flops_range", [])]
        if rates:
            info += (f"; fp32 matmul {min(rates):,.1f}-{max(rates):,.1f} GFLOP/s (measured around each round of "
                     "training; each row's limit takes its own readings' mean)")
        print(format_table(rows, info))
        if views:
            print()
            print(format_views(views))
    return 0


def format_views(views: list[dict]) -> str:
    """The PettingZoo views' task steps/s beside the engine's (B = 1, same network and propagation mode)."""
    lines = [
        "PettingZoo views vs engine: NaRLA 3-layer CartPole network, all five rewards, B = 1, own policies",
        f"{'view':<10}{'propagation':<13}{'view steps/s':>14}{'engine steps/s':>16}{'view/engine':>13}",
    ]
    for v in views:
        lines.append(
            f"{v['view']:<10}{v['propagation']:<13}{v['view_steps_per_s']:>14,.1f}"
            f"{v['engine_steps_per_s']:>16,.1f}{v['ratio']:>12.2f}x"
        )
    return "\n".join(lines)
