"""Training with eager ticks against training whose collection replays its ticks as CUDA graphs, on a GPU.

Full training as ``narla bench`` measures it (:func:`narla.bench.training_run`: CartPole, all five rewards, one
REINFORCE update per batch) on the bench's NaRLA 5-layer network and its 10,000-neuron sparse one, in three arms:
- ``eager``: :func:`narla.rollout.collect` with ``graphs=False``; it drops the finished copies from its ticks once at
  most :data:`narla.rollout.COMPACT_FRACTION` of them still run;
- ``graph+drop``: collection replays each full-width tick as one CUDA graph (:func:`narla.capture.graph_tick`) until
  the batch is compacted as above, then ticks the copies left eagerly;
- ``graph``: every tick of the batch is replayed at full width; once the batch is compacted, the dropped copies'
  columns are zeroed after each replay (as a compacted tick leaves them).
``collect`` takes ``graph`` for batches of at most :data:`narla.rollout.GRAPH_WHOLE_BATCH` neuron-copies and
``graph+drop`` for larger ones (set per arm here); the row it takes is marked ``*``. (The committed output,
``docs/results/bench/gpu/cuda_graph_collect.txt``, was made at d6cc235, whose ``graph`` arm never compacted and
zeroed nothing: the same replays, without the two masking kernels a tick.)

Every arm starts from the same built run (same seed) and plays the same batches, in interleaved rounds: the arms'
rollouts are the same episodes bit for bit (checked here on every batch's valid ticks), so their times compare the
same work. Prints neuron-steps/s of each arm, its collection's and its update's share, and the ratio to eager.
Run: ``python examples/cuda_graph_collect.py`` (about two minutes on an H200; ``--device cpu`` runs the same
arms without graphs, a check of this script).
"""

import argparse
import sys
import time

import torch

import narla.rollout
from narla.bench import configs, training_run
from narla.rollout import collect

ARMS = {"eager": None, "graph+drop": 0, "graph": 1 << 62}  # arm -> GRAPH_WHOLE_BATCH (None: no graphs)
ROWS = {"narla-5layer": (1, 16, 64, 256), "sparse-10k": (64,)}
BATCHES = {1: 24, 16: 8, 64: 6, 256: 3}  # batches per arm and round, at each B


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def play(run, graphs: bool, whole: int | None, batches: int, device: torch.device) -> tuple:
    """``batches`` batches of ``run``: the valid ticks played, collection and update seconds, and the rollouts'
    valid actions (to check that the arms play the same episodes)."""
    played, collecting, updating, seen = 0, 0.0, 0.0, []
    if whole is not None:
        narla.rollout.GRAPH_WHOLE_BATCH = whole
    for _ in range(batches):
        sync(device)
        start = time.perf_counter()
        rollout = collect(run.engine, run.task, run.scheme, graphs=graphs)
        sync(device)
        middle = time.perf_counter()
        run.learner.update(rollout)
        sync(device)
        collecting += middle - start
        updating += time.perf_counter() - middle
        played += int(rollout.valid.sum())
        seen.append(rollout.actions[rollout.valid].cpu())
    return played, collecting, updating, seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="device of the runs (default cuda)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per row (default 2)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("cuda_graph_collect: needs a CUDA device; none is available here", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    default = narla.rollout.GRAPH_WHOLE_BATCH
    print(f"full training, eager ticks against CUDA-graph ticks in collection; torch {torch.__version__}, {name}")
    print(f"{'network':13s} {'neurons':>7s} {'B':>4s}  {'arm':10s} {'neuron-steps/s':>14s} {'collect':>8s} "
          f"{'update':>7s} {'vs eager':>8s}")
    for cfg in configs(False):
        if cfg.name not in ROWS:
            continue
        for b in ROWS[cfg.name]:
            runs = {arm: training_run(cfg, b, device) for arm in ARMS}
            n = runs["eager"].wiring.num_neurons
            for arm, whole in ARMS.items():  # warm-up: the first batch captures the graph
                play(runs[arm], whole is not None, whole, 1, device)
            totals = {arm: [0, 0.0, 0.0] for arm in ARMS}
            for _ in range(args.rounds):
                seen = {}
                for arm, whole in ARMS.items():
                    played, collecting, updating, seen[arm] = play(runs[arm], whole is not None, whole,
                                                                   BATCHES[b], device)
                    total = totals[arm]
                    total[0] += played
                    total[1] += collecting
                    total[2] += updating
                same = all(torch.equal(x, y) for arm in ARMS for x, y in zip(seen["eager"], seen[arm], strict=True))
                if not same:
                    print(f"cuda_graph_collect: {cfg.name} B={b}: the arms played different episodes",
                          file=sys.stderr)
                    return 1
            narla.rollout.GRAPH_WHOLE_BATCH = default
            eager = totals["eager"][0] * n / (totals["eager"][1] + totals["eager"][2])
            chosen = "graph" if n * b <= default else "graph+drop"
            for arm, (played, collecting, updating) in totals.items():
                rate = played * n / (collecting + updating)
                mark = "*" if arm == chosen and device.type == "cuda" else " "
                print(f"{cfg.name:13s} {n:7,d} {b:4d}  {arm + mark:11s} {rate:13,.0f} "
                      f"{collecting / (collecting + updating):8.0%} {updating / (collecting + updating):7.0%} "
                      f"{rate / eager:7.2f}x", flush=True)
            del runs
    return 0


if __name__ == "__main__":
    sys.exit(main())
