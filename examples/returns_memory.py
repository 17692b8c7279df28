"""What REINFORCE's advantages cost beside the rollout: peak memory and time, at several slice budgets.

A REINFORCE update turns the rollout's rewards ``[T, B, N]`` into per-neuron standardized returns
(:meth:`narla.learning.reinforce.Reinforce.advantages`). Each configuration runs in a fresh process, which
draws random rewards with episode boundaries, measures its peak resident memory before and after that call
(``ru_maxrss``) and times it. Prints the memory it added, as a multiple of the rewards' own size (one float32
``[T, B, N]`` result is 1.0), and the seconds, per :data:`narla.learning.returns.COLUMN_BUDGET`. Run:
``python examples/returns_memory.py`` (about a minute; ``--shape T,B,N``, default 500,64,4000).
"""

import argparse
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

import torch

import narla.learning.returns as returns
from narla.learning.reinforce import Reinforce


def measure(shape: tuple[int, int, int], budget: int) -> tuple[float, float]:
    """``(peak memory added / the rewards' bytes, seconds)`` of one advantages call, in this process."""
    steps, batch, neurons = shape
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(steps, batch, neurons, generator=g)
    done = torch.rand(steps, batch, generator=g) < 0.02
    done[-1] = True
    valid = torch.rand(steps, batch, generator=g) < 0.9
    returns.COLUMN_BUDGET = budget
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    learner = SimpleNamespace(gamma=0.99, normalize_returns=True)  # what Reinforce.advantages reads of its learner
    adv = Reinforce.advantages(learner, SimpleNamespace(rewards=rewards, done=done, valid=valid))
    seconds = time.perf_counter() - start
    added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # ru_maxrss is in KiB on Linux
    del adv
    return added / (rewards.numel() * 4), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="500,64,4000", help="T,B,N of the rewards (default 500,64,4000)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one measurement, in a fresh process
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.child is not None:
        print(*measure(shape, args.child))
        return
    size = shape[0] * shape[1] * shape[2] * 4 / 2**30
    print(f"rewards [T, B, N] = {list(shape)}: {size:.2f} GiB float32; default budget 2^"
          f"{returns.COLUMN_BUDGET.bit_length() - 1}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'COLUMN_BUDGET':>14}  {'peak added / rewards':>20}  {'seconds':>8}")
    for power in (23, 21, 19):
        out = subprocess.run([sys.executable, __file__, "--shape", args.shape, "--child", str(1 << power)],
                             capture_output=True, text=True, check=True).stdout.split()
        print(f"{'2^' + str(power):>14}  {float(out[0]):>20.2f}  {float(out[1]):>8.2f}")


if __name__ == "__main__":
    main()
