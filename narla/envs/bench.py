"""Steps/s of the PettingZoo views beside the engine's batched rollout, on NaRLA's 3-layer CartPole network."""

from __future__ import annotations

import time
from typing import Any

import torch

from narla.envs.aec import aec_env
from narla.envs.core import build_run
from narla.envs.parallel import parallel_env
from narla.rollout import collect

VIEWS = ("aec", "parallel")
POLICIES = ("own", "random")
PROPAGATION = {"aec": "sweep", "parallel": "delay"}

# NaRLA's 3-layer network (15 + 15 + 1 neurons, local connectivity) on CartPole with all rewards.
BENCH_SCENARIO: dict[str, Any] = {
    "name": "bench_pettingzoo_cartpole_3layer",
    "task": {"id": "cartpole", "num_envs": 1},
    "network": {"builder": "layered", "layers": 3, "width": 15, "connectivity": "local"},
    "neuron": {"hidden": [128, 128]},
    "readout": {"kind": "choice"},
    "rewards": ["task", "activity", "sparsity", "prediction", "trace"],
}


def _drive_aec(env, seconds: float, own: bool) -> tuple[int, float]:
    ticks, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset()
        last = env.possible_agents[-1]
        for agent in env.agent_iter():
            if env.terminations[agent] or env.truncations[agent]:
                env.step(None)
                continue
            env.step(env.policy_action() if own else env.action_space(agent).sample())
            ticks += agent == last
    return ticks, time.perf_counter() - start


def _drive_parallel(env, seconds: float, own: bool) -> tuple[int, float]:
    ticks, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset()
        while env.agents:
            actions = env.policy_actions() if own else {a: env.action_space(a).sample() for a in env.agents}
            env.step(actions)
            ticks += 1
    return ticks, time.perf_counter() - start


def _drive_engine(run, seconds: float) -> tuple[int, float]:
    ticks, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        rollout = collect(run.engine, run.task, run.scheme, sync_every=1)
        ticks += int(rollout.valid.sum())
    return ticks, time.perf_counter() - start


def bench_steps_per_second(
    view: str = "aec", seconds: float = 2.0, policy: str = "own", seed: int = 0, num_threads: int | None = None
) -> dict:
    """Task steps per second of a PettingZoo view and of the engine (``B = 1``, same propagation mode).

    Both play whole CartPole episodes with NaRLA's 3-layer network (31 neurons, all five rewards) for about
    ``seconds`` each. ``policy="own"`` drives the view with the network's own policies
    (:meth:`~narla.envs.NeuronAECEnv.policy_action` / :meth:`~narla.envs.NeuronParallelEnv.policy_actions`),
    ``"random"`` with samples of each agent's action space. ``num_threads`` (if given) sets torch's
    intra-op threads for the measurement (``B = 1`` gains nothing from more than one; on a shared machine
    extra threads only contend). Returns a flat dict of the numbers, with ``ratio`` = view steps/s over
    engine steps/s.
    """
    if view not in VIEWS:
        raise ValueError(f"view: unknown view {view!r}; allowed: {', '.join(VIEWS)}")
    if policy not in POLICIES:
        raise ValueError(f"policy: unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    scenario = dict(BENCH_SCENARIO, seed=seed)
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        env = aec_env(scenario) if view == "aec" else parallel_env(scenario)
        env.reset(seed=seed)
        drive = _drive_aec if view == "aec" else _drive_parallel
        view_ticks, view_time = drive(env, seconds, policy == "own")
        env.close()
        run = build_run(scenario, PROPAGATION[view])
        engine_ticks, engine_time = _drive_engine(run, seconds)
        run.task.close()
    finally:
        torch.set_num_threads(threads)
    neurons = len(env.possible_agents)
    view_rate, engine_rate = view_ticks / view_time, engine_ticks / engine_time
    return {
        "view": view,
        "propagation": PROPAGATION[view],
        "policy": policy,
        "num_neurons": neurons,
        "num_threads": num_threads if num_threads is not None else threads,
        "view_steps": view_ticks,
        "view_steps_per_s": round(view_rate, 1),
        "view_agent_steps_per_s": round(view_rate * neurons, 1),
        "engine_steps": engine_ticks,
        "engine_steps_per_s": round(engine_rate, 1),
        "engine_neuron_steps_per_s": round(engine_rate * neurons, 1),
        "ratio": round(view_rate / engine_rate, 3),
    }
