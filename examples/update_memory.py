"""One training batch of a large network: the resident memory of each phase, and its time.

Builds the scaling sweep's network (``narla bench --scaling``: random sparse, fan-in 16, 2×16 policies, CartPole,
all five rewards, REINFORCE) of ``--neurons`` neurons with ``--batch`` copies, sets ``learning.chunk_columns`` as
the sweep's training rows do (:func:`narla.bench.training_chunk_columns`, a 2 GiB window of activations), then
collects one batch and updates once, as the Trainer does (:func:`narla.training.collect_options`). A thread samples
the process's resident memory every 50 ms and prints the highest reading of each phase: the build, the collection,
the update's advantages (:class:`narla.learning.reinforce.WindowAdvantages`, where the batch records no per-tick
rewards) and its windows. Run: ``python examples/update_memory.py --neurons 10000 --batch 256`` (about a minute
here; 100,000 neurons take about 15).
"""

import argparse
import threading
import time

import torch

import narla.learning.reinforce as reinforce
from narla.bench import Config, training_chunk_columns, training_run
from narla.bench_scaling import network
from narla.rollout import collect
from narla.training import collect_options


def resident_gib() -> float:
    """The process's resident memory now (GiB; Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    phase, peaks = ["build"], {}

    def sample() -> None:
        while True:
            peaks[phase[0]] = max(peaks.get(phase[0], 0.0), resident_gib())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    cfg = Config(f"sparse-{args.neurons}", network(args.neurons), (16, 16), (args.batch,), ())
    run = training_run(cfg, args.batch, torch.device("cpu"))
    run.learner.chunk_columns = training_chunk_columns(run.engine, args.batch, run.task.max_episode_steps)
    options = collect_options(run)

    advantages = reinforce.WindowAdvantages.__init__

    def timed_advantages(self, *a) -> None:  # the update's first pass, then its windows
        phase[0] = "advantages"
        advantages(self, *a)
        phase[0] = "windows"

    reinforce.WindowAdvantages.__init__ = timed_advantages
    phase[0] = "collect"
    start = time.perf_counter()
    rollout = collect(run.engine, run.task, run.scheme, **options)
    collected = time.perf_counter()
    phase[0] = "update"
    run.learner.update(rollout)
    updated = time.perf_counter()
    time.sleep(0.1)
    print(f"{args.neurons:,} neurons, B = {args.batch}: chunk_columns {run.learner.chunk_columns}, "
          f"rewards recorded: {options['record_rewards']}; {rollout.valid.shape[0]} ticks, "
          f"{int(rollout.valid.sum()):,} valid columns")
    print(f"collect {collected - start:.1f} s, update {updated - collected:.1f} s")
    print("resident peak per phase (GiB): " + ", ".join(f"{k} {v:.2f}" for k, v in peaks.items()))


if __name__ == "__main__":
    main()
