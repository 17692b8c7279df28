"""Our full training and acting rates against the public NaRLA's, measured in the same hour on this machine.

Issue 14 sets two ratios against the public implementation (github.com/Multi-Agent-Networks/NaRLA, develop era):
full training of the 5-layer network (2×128 policies, B = 64) at least 200× its rate, and acting at B = 256 at
least 1,000×. A machine shared with others drifts by tens of percent within an hour, so the two sides are timed
alternately, in rounds: the public code in a child process (its own interpreter and packages), then ours through
:func:`narla.bench.bench_config`, the rows ``narla bench`` prints.

The public side runs its ``main.py`` loop unchanged: per step ``network.act`` → ``environment.step`` →
``network.distribute_to_layers`` (task reward), ``network.record`` at the episode's end and ``network.learn`` once per
episode (B = 1), with its defaults (policy-gradient neurons, 15 per layer, one output neuron). Its rate counts whole
episodes after a warm-up, as ``env steps × neurons / wall time``.

Run (about ``rounds × (public seconds + 40)`` seconds)::

    python examples/vs_public_narla.py --narla-path /path/to/NaRLA --python /path/to/its/venv/bin/python

``--narla-path`` is a checkout of the public code (its ``narla`` package at the top); ``--python`` an interpreter
with its requirements (torch, gymnasium, pandas, tyro, prettyprinter, dacite). The newest fully consistent version
of the develop branch we could assemble trains on the task reward only; a few imports needed guarding to load
without its authors' private packages (``caml_core``), which changes none of its computation.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time


def public_rate(narla_path: str, layers: int, warmup: float, seconds: float, seed: int) -> dict:
    """Time the public NaRLA's training loop (run inside its own interpreter, ``--worker``)."""
    sys.path.insert(0, narla_path)
    import narla  # the public package, from narla_path

    settings = narla.settings.Settings()
    settings.multi_agent_network_settings.number_of_layers = layers
    settings.trial_settings.random_seed = seed
    narla.settings.reproducibility(seed)
    narla.experiment_settings = settings
    env = narla.environments.GymEnvironment(name=settings.environment_settings.environment,
                                            render=settings.environment_settings.render)
    env.reset()
    network = narla.multi_agent_network.MultiAgentNetwork(
        observation_size=env.observation_size,
        number_of_actions=env.action_space.number_of_actions,
        network_settings=settings.multi_agent_network_settings,
    )
    neurons = sum(layer.number_of_neurons for layer in network.layers)
    saved = narla.history.saved_data

    def episode(number: int) -> int:
        observation = env.reset()
        steps = 0
        while True:
            action = network.act(observation)
            observation, reward, terminated = env.step(action)
            steps += 1
            paid = {narla.rewards.RewardTypes.TASK_REWARD: reward, saved.TERMINATED: terminated}
            network.distribute_to_layers(**paid)
            if terminated:
                network.record(**{saved.EPISODE_REWARD: env.episode_reward, saved.EPISODE_COUNT: number})
                break
        network.learn()
        if number % settings.trial_settings.save_every:
            narla.io.save_history_as_data_frame(name="results", history=network.history)
        return steps

    number, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < warmup:
        number += 1
        episode(number)
    steps, episodes, begin, cpu = 0, 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - begin < seconds:
        number += 1
        episodes += 1
        steps += episode(number)
    wall = time.perf_counter() - begin
    return {"neurons": neurons, "episodes": episodes, "env_steps": steps, "seconds": round(wall, 2),
            "cores": round((time.process_time() - cpu) / wall, 2),
            "neuron_steps_per_s": round(steps * neurons / wall, 1)}


def ours(seconds: float) -> dict:
    """``narla bench``'s narla-5layer rows at B = 64 (training) and 256 (acting), with the matmul limit."""
    import torch

    from narla.bench import bench_config, configs, matmul_flops

    cfg = next(c for c in configs(False) if c.name == "narla-5layer")
    cfg = dataclasses.replace(cfg, batches=(64, 256), reference_batches=(64,))
    device = torch.device("cpu")
    rows = {row["B"]: row for row in bench_config(cfg, device, seconds, 3, matmul=lambda: matmul_flops(device))}
    return {"train_64": rows[64]["training_neuron_steps_per_s"],
            "of_limit_64": rows[64]["training_fraction_of_limit"],
            "matmul_gflops": rows[64]["training_matmul_flops"] / 1e9,
            "act_256": rows[256]["engine_neuron_steps_per_s"]}


def stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--narla-path", required=True, help="a checkout of the public NaRLA (its narla/ at the top)")
    parser.add_argument("--python", default=sys.executable, help="an interpreter with the public NaRLA's packages")
    parser.add_argument("--layers", type=int, default=5, help="the public network's layers (default 5: 61 neurons)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, both sides (default 2)")
    parser.add_argument("--seconds", type=float, default=60.0, help="public timing per round, after warm-up (s)")
    parser.add_argument("--warmup", type=float, default=10.0, help="public warm-up per round (s)")
    parser.add_argument("--bench-seconds", type=float, default=3.0, help="our timing per row (as narla bench)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1 (got {args.rounds})")
    if not os.path.isdir(os.path.join(args.narla_path, "narla")):
        parser.error(f"--narla-path {args.narla_path!r} has no narla/ package; give the public checkout's root")

    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(public_rate(args.narla_path, args.layers, args.warmup, args.seconds, args.seed)))
        return 0

    import torch

    from narla.results import machine

    torch.set_num_threads(args.threads)
    worker = [args.python, os.path.abspath(__file__), "--worker", "--narla-path", args.narla_path,
              "--layers", str(args.layers), "--threads", str(args.threads), "--seconds", str(args.seconds),
              "--warmup", str(args.warmup), "--seed", str(args.seed)]
    m = machine("cpu")
    print(f"# {datetime.date.today()} {m['cpu']} ({m['cpu_capability']} kernels), {m['cpus']} CPUs, "
          f"{args.threads} threads both sides")
    print("round  public at  public neuron-steps/s  narla at  train B=64  of limit  matmul GF/s  train/public"
          "  act B=256  act/public")
    for k in range(args.rounds):
        at_public = stamp()
        done = subprocess.run(worker, capture_output=True, text=True, cwd=args.narla_path)
        if done.returncode != 0:
            print(f"vs_public_narla: the public NaRLA failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        public = json.loads(done.stdout.strip().splitlines()[-1])
        at_ours = stamp()
        mine = ours(args.bench_seconds)
        rate = public["neuron_steps_per_s"]
        print(f"{k + 1:5d}  {at_public:>9s}  {rate:21,.0f}  {at_ours:>8s}  {mine['train_64']:10,.0f}"
              f"  {mine['of_limit_64']:8.1%}  {mine['matmul_gflops']:11.1f}  {mine['train_64'] / rate:11.0f}x"
              f"  {mine['act_256']:9,.0f}  {mine['act_256'] / rate:9.0f}x", flush=True)
    print(f"public: {public['neurons']} neurons, B = 1 (one episode per update), task reward, "
          f"about {public['cores']} cores busy; narla: narla bench's narla-5layer rows (all five rewards, REINFORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
