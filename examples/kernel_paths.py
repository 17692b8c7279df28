"""Does a run depend on the machine it runs on? One seed trained under other kernels of this machine.

A run repeats bit for bit on the same kind of machine. Another processor may run other kernels: torch picks its
element-wise kernels by instruction set (AVX-512, AVX2 or generic), and MKL picks its matrix-product code by
processor. They round differently in the last bits, and training amplifies such differences. This script shows how
much, without a second machine: it trains one seed of a scenario in fresh processes, once with the defaults and once
per alternative setting (read at start-up, hence the processes), and prints the first episode whose return differs
from the default's, and each arm's mean return over its last 100 episodes.

Run: ``python examples/kernel_paths.py scenarios/table1/paper/all_L5.yaml --seed 2 --episodes 400`` (about a
minute).
"""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace

ARMS = {
    "default": {},
    "torch generic kernels (ATEN_CPU_CAPABILITY=default)": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL reproducible mode (MKL_CBWR=COMPATIBLE)": {"MKL_CBWR": "COMPATIBLE"},
}


def returns(scenario: str, seed: int, episodes: int) -> list[float]:
    """Train ``seed`` of ``scenario`` for ``episodes`` episodes (one torch thread, no early stop); its returns."""
    import torch

    from narla.scenario import load
    from narla.training import Trainer

    torch.set_num_threads(1)
    sc = load(scenario)
    sc = replace(sc, seed=seed, training=replace(sc.training, max_episodes=episodes, stop_when_solved=False))
    trainer = Trainer(sc, progress=False)
    trainer.train()
    return [float(r) for r in trainer.returns]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(returns(args.scenario, args.seed, args.episodes)))
        return
    runs = {}
    for name, env in ARMS.items():
        cmd = [sys.executable, __file__, args.scenario, "--seed", str(args.seed), "--episodes", str(args.episodes),
               "--child"]
        out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
        runs[name] = json.loads(out.strip().splitlines()[-1])
    base = runs["default"]
    print(f"{args.scenario}, seed {args.seed}, {args.episodes} episodes")
    for name, got in runs.items():
        shared = min(len(base), len(got))  # a scenario's time cap or step budget may end an arm early
        first = next((i + 1 for i in range(shared) if base[i] != got[i]), None)
        differs = f"same returns for {shared:,} episodes" if first is None else f"returns differ from episode {first:,}"
        print(f"  {name}: {differs}; mean of the last 100: {sum(got[-100:]) / len(got[-100:]):.1f}")


if __name__ == "__main__":
    main()
