"""Counterfactual influence: what neuron i's action at one tick does to neuron j's reward over the next ticks.

For a branch tick ``t0``, ``1 + S`` copies start from the same state and draw the same random numbers
(``Engine.common_noise``), so they stay identical until ``t0``. At ``t0`` copy ``1 + k`` flips the action of source
neuron ``k`` (``Engine.clamp``, ``FLIP``); from then on the copies differ only by the consequences of that flip.
``I[i, j]`` is, averaged over branches, neuron j's reward summed over ``horizon`` ticks from ``t0`` in the copy
where i acted as its policy chose, minus the same sum in the copy where i's choice was flipped. Positive: i's
choice helps j (cooperation); negative: it hurts j (competition). ``task[i]`` is the same difference of the task
reward: how much i's choice at that tick carries the task.

Needs a torch-native task whose copies can be put in one state (``cartpole``, ``swingup``).
"""

from __future__ import annotations

import torch

from narla.engine import FLIP, FREE
from narla.rollout import finish_tick, start_carry
from narla.tasks.normalize import NormalizedTask
from narla.tasks.physics import PhysicsTask

LATE = 1 << 30


def _restart_identical(task) -> torch.Tensor:
    """Reset every copy to copy 0's start state; returns the observations ``[B, S]``."""
    physics = task.inner if isinstance(task, NormalizedTask) else task
    if not isinstance(physics, PhysicsTask):
        raise ValueError(f"influence needs a torch-native task (cartpole, swingup), got {type(physics).__name__}")
    task.reset()
    physics.set_state(physics.state[:1].expand_as(physics.state))
    obs = physics.observe()
    return task.normalizer.normalize(obs) if isinstance(task, NormalizedTask) else obs


def influence_matrix(run, sources: list[int], branch_ticks: tuple[int, ...] = (5, 15, 30), horizon: int = 10,
                     episodes: int = 4) -> dict:
    """``{"influence": [S, N], "task": [S], "sources": sources, "branches": int}`` (see the module docstring).

    ``run.task`` must hold ``len(sources) + 1`` copies. A branch whose episode has already ended at ``t0`` is
    skipped; ticks after a copy's episode ends count nothing.
    """
    engine, task = run.engine, run.task
    n, s, b = engine.num_neurons, len(sources), task.num_envs
    if b != s + 1:
        raise ValueError(f"influence over {s} source neurons needs {s + 1} copies, the task has {b}")
    if engine.whole_network:
        raise ValueError("influence acts on stage-wise populations; whole-network populations are not supported")
    flip = torch.full((n, b), FREE, dtype=torch.long, device=engine.device)
    flip[torch.as_tensor(sources, device=engine.device), torch.arange(1, b, device=engine.device)] = FLIP
    total = torch.zeros(s, n, dtype=torch.float64, device=engine.device)
    task_total = torch.zeros(s, dtype=torch.float64, device=engine.device)
    branches = 0
    engine.common_noise = True
    try:
        for _ in range(episodes):
            for t0 in branch_ticks:
                obs = _restart_identical(task)
                carry = start_carry(engine, b)
                alive = torch.ones(b, dtype=torch.bool, device=engine.device)
                gain = torch.zeros(b, n, dtype=torch.float64, device=engine.device)
                task_gain = torch.zeros(b, dtype=torch.float64, device=engine.device)
                started = True
                for t in range(t0 + horizon):
                    engine.clamp = flip if t == t0 else None
                    act, actions = engine.tick(obs, carry.prev, prev_action=carry.prev_action)
                    engine.clamp = None
                    if t == t0:
                        started = bool(alive[0])
                        if not started:
                            break
                    out, carry = finish_tick(engine, task, run.scheme, carry, act, actions, LATE, obs)
                    if t >= t0:
                        gain += (out.total * alive.unsqueeze(1)).double()
                        task_gain += (out.reward * alive).double()
                    alive = alive & ~out.done
                    obs = out.next_obs
                if started:
                    total += gain[:1] - gain[1:]
                    task_total += task_gain[:1] - task_gain[1:]
                    branches += 1
    finally:
        engine.common_noise = False
        engine.clamp = None
    scale = max(branches, 1)
    return {"influence": (total / scale).float().cpu(), "task": (task_total / scale).float().cpu(),
            "sources": list(sources), "branches": branches}
