"""Does keeping acting's last hidden layer pay? Full training batches with and without it, interleaved.

On the NaRLA 5-layer network (2×128 policies by default, all five rewards, REINFORCE) at several B, batches
alternate between collecting with ``keep_hidden=True`` (the update then does not compute the 128 × 128 layer again,
:mod:`narla.hidden`) and without; their order alternates too. ``narla.hidden.MIN_COPIES`` and ``MIN_INPUTS`` are
lowered to 1 here, so that the narrow batches and policies the library leaves alone are measured as well. Prints,
per B, the median collection, update and batch times of each and the ratio of the batch medians. Run:
``python examples/keep_hidden.py`` (about 2 minutes; ``--seconds`` per B and arm, default 8; ``--hidden H`` for
2×H policies).
"""

import argparse
import statistics
import time

import torch

import narla.hidden
from narla.bench import REWARDS, configs
from narla.rollout import collect
from narla.scenario import from_dict
from narla.training import build


def batch_times(batch: int, seconds: float, hidden: int = 128) -> dict[bool, list[tuple[float, float]]]:
    """``{keep: [(collect s, update s), ...]}`` of interleaved batches, about ``seconds`` of each arm (2×``hidden``
    policies)."""
    cfg = next(c for c in configs(False) if c.name == "narla-5layer")
    scenario = {"name": "keep_hidden", "seed": 0, "task": {"id": "cartpole", "num_envs": batch},
                "network": cfg.network, "neuron": {"hidden": [hidden, hidden], "activation": "leaky_relu"},
                "rewards": REWARDS, "learning": {"rule": "reinforce", "lr": 0.001}}
    run = build(from_dict(scenario))
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    spent = {True: 0.0, False: 0.0}
    rounds = 0
    while min(spent.values()) < seconds or rounds < 4:
        for keep in (rounds % 2 == 0, rounds % 2 == 1):
            begin = time.perf_counter()
            rollout = collect(run.engine, run.task, run.scheme, keep_hidden=keep)
            if keep and rollout.hidden is None:
                raise RuntimeError("nothing was kept: this machine's products give no column floor")
            middle = time.perf_counter()
            run.learner.update(rollout)
            end = time.perf_counter()
            if rounds >= 2:  # the first two rounds warm up
                times[keep].append((middle - begin, end - middle))
                spent[keep] += end - begin
        rounds += 1
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16,32,64,128,256", help="values of B")
    parser.add_argument("--seconds", type=float, default=8.0, help="time per B and arm")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units per layer of the 2-layer policies")
    args = parser.parse_args()
    torch.set_num_threads(1)
    narla.hidden.MIN_COPIES = narla.hidden.MIN_INPUTS = 1
    print(f"NaRLA 5-layer network, 2x{args.hidden} policies, all five rewards, REINFORCE; median ms per batch, "
          "1 thread")
    print(f"{'B':>4}  {'batches':>7}  {'collect':>15}  {'update':>15}  {'batch':>15}  kept/re-evaluated")
    print(f"{'':>4}  {'':>7}  {'re-eval / kept':>15}  {'re-eval / kept':>15}  {'re-eval / kept':>15}")
    for batch in (int(b) for b in args.batches.split(",")):
        times = batch_times(batch, args.seconds, args.hidden)
        med = {keep: [1e3 * statistics.median(t[i] for t in times[keep]) for i in (0, 1)]
               + [1e3 * statistics.median(sum(t) for t in times[keep])] for keep in (False, True)}
        cells = [f"{med[False][i]:7.1f} / {med[True][i]:5.1f}" for i in range(3)]
        print(f"{batch:>4}  {len(times[True]):>7}  {cells[0]:>15}  {cells[1]:>15}  {cells[2]:>15}  "
              f"{med[True][2] / med[False][2]:.3f}")


if __name__ == "__main__":
    main()
