"""Collecting a batch of episodes: ``B`` copies each play one episode, as ``[T, B, ...]`` tensors.

Collection is episode-synchronous (what REINFORCE needs): every copy starts an episode together;
a copy whose episode ends stays masked out (``valid`` is False) until the slowest copy finishes, so
a batch holds exactly ``B`` complete episodes. With ``B = 1`` this is NaRLA's one-episode update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from narla.context import action_features
from narla.engine import Engine
from narla.rewards.state import NetworkState
from narla.tasks.base import Task


@dataclass
class Rollout:
    """``B`` complete episodes padded to ``T`` ticks."""

    obs: torch.Tensor  # [T, B, obs_dim] observation each tick acted on
    actions: torch.Tensor  # [T, B, N] long, every neuron's choice
    first: torch.Tensor  # [T, B] bool, first tick of an episode
    valid: torch.Tensor  # [T, B] bool, the tick belongs to the copy's episode
    done: torch.Tensor  # [T, B] bool, the episode ended with this tick
    task_reward: torch.Tensor  # [T, B]
    rewards: torch.Tensor  # [T, B, N] each neuron's total reward, zero on invalid ticks
    components: dict[str, torch.Tensor]  # name -> [T, B, N], zero on invalid ticks
    prev_action: torch.Tensor | None = None  # [T, B, A] previous task action features (universal context)

    @property
    def spikes(self) -> torch.Tensor:
        """``[T, B, N]`` float spikes."""
        return (self.actions > 0).float()

    @property
    def num_episodes(self) -> int:
        return self.valid.shape[1]


def collect(
    engine: Engine,
    task: Task,
    scheme,
    episode: int = 0,
    sync_every: int = 16,
    on_sync: Callable[[torch.Tensor], None] | None = None,
) -> Rollout:
    """Play one episode in each of the task's ``B`` copies with the engine's current policies.

    ``scheme`` is a :class:`narla.rewards.RewardScheme` (``scheme(state) -> (total, components)``).
    The loop checks whether any copy is still running only every ``sync_every`` ticks, so there is no
    host sync inside a tick. ``on_sync(alive[B])`` (optional) is called at each of those checks, before it
    (:mod:`narla.runs` uses it to stop drawing random numbers for runs whose episodes have all ended).
    """
    b, s, n = task.num_envs, engine.num_sensors, engine.num_neurons
    device = engine.device
    obs = task.reset()
    engine.reset_memory(b)
    prev = torch.zeros(s + n, b, device=device)
    prev_spikes = torch.zeros(b, n, device=device)
    trace = torch.zeros(b, n, device=device)
    first = torch.ones(b, dtype=torch.bool, device=device)
    alive = torch.ones(b, dtype=torch.bool, device=device)
    use_action = engine.population.action_dim > 0
    prev_action = torch.zeros(b, engine.population.action_dim, device=device) if use_action else None
    prev_actions: list[torch.Tensor] = []
    rec: dict[str, list] = {k: [] for k in ("obs", "actions", "first", "valid", "done", "task_reward", "rewards")}
    comps: dict[str, list] = {name: [] for name in scheme.names}
    for t in range(task.max_episode_steps):
        act, actions = engine.tick(obs, prev, prev_action=prev_action) if use_action else engine.tick(obs, prev)
        task_action = engine.readout(actions)
        next_obs, reward, terminated, truncated = task.step(task_action)
        done = terminated | truncated
        spikes = act[s:].T
        trace = scheme.update_trace(trace, spikes, first)
        state = NetworkState(spikes, prev_spikes, trace, reward, done, first, engine.wiring, episode, engine.memory)
        total, parts = scheme(state)
        mask = alive.unsqueeze(1).float()
        rec["obs"].append(obs)
        rec["actions"].append(actions.T)
        rec["first"].append(first)
        rec["valid"].append(alive)
        rec["done"].append(done & alive)
        rec["task_reward"].append(reward * alive)
        rec["rewards"].append(total * mask)
        for name in comps:
            comps[name].append(parts[name] * mask)
        alive = alive & ~done
        engine.keep_memory(~done)
        if use_action:
            prev_actions.append(prev_action)
            feats = action_features(task_action, engine.readout.action_space)
            prev_action = feats * (~done).float().unsqueeze(1)
        prev, prev_spikes, first, obs = act, spikes, done, next_obs
        if (t + 1) % sync_every == 0:
            if on_sync is not None:
                on_sync(alive)
            if not bool(alive.any()):
                break
    stacked = {k: torch.stack(v) for k, v in rec.items()}
    return Rollout(
        components={k: torch.stack(v) for k, v in comps.items()},
        prev_action=torch.stack(prev_actions) if use_action else None,
        **stacked,
    )
