"""The Parallel view: all neurons act at once on the previous tick's presynaptic activity.

This is the engine's ``delay`` propagation (a one-tick synaptic delay) seen as a PettingZoo
:class:`~pettingzoo.ParallelEnv`:

- agents are the neurons, named after their graph nodes (engine order);
- an agent's observation is its feedforward inputs — the task's current observation for sensors, the
  *previous* tick's spikes for presynaptic neurons (zeros on an episode's first tick) — followed, where
  the neuron has them, by its context inputs from the previous tick (see :mod:`narla.envs.core`);
- ``step(actions)`` takes every live agent's action, reads the task action out of the motor neurons, steps
  the task and returns each agent's reward from the scenario's reward scheme; ``infos[agent]`` holds
  ``task_reward`` and ``reward_components`` (each term's weighted contribution);
- when the task's episode ends every agent is terminated (or truncated) together and ``agents`` empties.
  Tasks reset themselves, so the observations returned with that last step repeat the last tick's inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import logger, spaces
from pettingzoo import ParallelEnv

from narla.engine import Engine
from narla.envs.core import NetworkCore, ScenarioLike, build_run
from narla.rewards.scheme import RewardScheme
from narla.tasks.base import Task


class NeuronParallelEnv(ParallelEnv):
    """A neuron network as a Parallel environment (``delay`` semantics); build it with :func:`parallel_env`.

    Args:
        task: a task with ``num_envs == 1``.
        engine: the network (wiring, population, readout) with ``propagation="delay"``; its policies are
            used only by :meth:`policy_actions`.
        scheme: the reward scheme that gives each agent its reward.
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns the network's activity as text).
        episode: the episode index the reward scheme's phases start counting from.
    """

    metadata = {"name": "narla_neurons_parallel_v0", "render_modes": ["ansi"]}

    def __init__(
        self, task: Task, engine: Engine, scheme: RewardScheme, render_mode: str | None = None, episode: int = 0
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: {render_mode!r} is not supported; allowed: None, 'ansi'")
        self.render_mode = render_mode
        self.core = NetworkCore(task, engine, scheme, "delay", episode)
        self.possible_agents = list(self.core.names)
        self.observation_spaces = self.core.observation_spaces
        self.action_spaces = self.core.action_spaces
        self.agents: list[str] = []
        self.owns_task = False
        self._policy: dict[str, int] | None = None

    @classmethod
    def from_run(cls, run, render_mode: str | None = None) -> NeuronParallelEnv:
        """The view of a :class:`narla.training.Run` built with ``num_envs=1`` and ``propagation="delay"``."""
        return cls(run.task, run.engine, run.scheme, render_mode)

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[agent]

    def _observations(self) -> dict[str, np.ndarray]:
        return dict(zip(self.possible_agents, self.core.observe_all(), strict=True))

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode; ``seed`` seeds the task (and the engine's sampling generator with ``seed + 1``)."""
        self.core.reset(seed)
        self.agents = list(self.possible_agents)
        self._policy = None
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One tick: every live agent acts at once. Returns observations, rewards, terminations, truncations, infos."""
        self.core.require_running()
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(
                f"actions: every live agent acts each tick; missing {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            )
        unknown = [agent for agent in actions if agent not in self.core.index]
        if unknown:
            raise ValueError(f"actions: unknown agent(s) {', '.join(map(repr, unknown[:5]))}")
        for agent in self.agents:
            self.core.set_action(self.core.index[agent], self.core.check_action(agent, actions[agent]))
        result = self.core.end_tick()
        agents = self.agents
        observations = self._observations()
        rewards = dict(zip(agents, result.rewards, strict=True))
        terminations = dict.fromkeys(agents, result.terminated)
        truncations = dict.fromkeys(agents, result.truncated)
        infos = {
            agent: {
                "task_reward": result.task_reward,
                "reward_components": {name: values[i] for name, values in result.components.items()},
            }
            for i, agent in enumerate(agents)
        }
        if result.terminated or result.truncated:
            self.agents = []
        self._policy = None
        return observations, rewards, terminations, truncations, infos

    def policy_actions(self) -> dict[str, int]:
        """The actions the network's own policies take this tick, on the agents' current observations.

        All neurons are sampled in one draw from the engine's generator (as the engine's ``delay`` tick
        samples them), so driving the view with these reproduces the engine's batched rollout.
        """
        self.core.require_running()
        if self._policy is None:
            sampled = self.core.sample(0, self.core.num_neurons)
            self._policy = {agent: int(a) for agent, a in zip(self.possible_agents, sampled, strict=True)}
        return dict(self._policy)

    @property
    def task_observation(self) -> np.ndarray:
        """The task observation the current (or, after the episode's end, the last) tick acts on."""
        return self.core.task_obs

    def render(self) -> str | None:
        if self.render_mode is None:
            logger.warn("render() was called without a render_mode; build the view with render_mode='ansi'")
            return None
        return self.core.render_text(in_progress=False)

    def close(self) -> None:
        if self.owns_task:
            self.core.task.close()


def parallel_env(
    scenario: ScenarioLike, max_cycles: int | None = None, render_mode: str | None = None
) -> NeuronParallelEnv:
    """The Parallel view of ``scenario`` (a :class:`~narla.scenario.Scenario`, its dict form or a YAML path).

    The run is built as :func:`narla.training.build` builds it, with one task copy and ``propagation:
    delay``; ``max_cycles`` (ticks per episode) replaces ``task.max_episode_steps`` when given.
    """
    run = build_run(scenario, "delay", max_cycles)
    env = NeuronParallelEnv.from_run(run, render_mode)
    env.owns_task = True
    return env
