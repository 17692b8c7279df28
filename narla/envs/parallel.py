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
from pettingzoo import ParallelEnv

from narla.envs.core import NetworkView, ScenarioLike


class NeuronParallelEnv(NetworkView, ParallelEnv):
    """A neuron network as a Parallel environment (``delay`` semantics); build it with :func:`parallel_env`.

    Takes :class:`~narla.envs.core.NetworkView`'s arguments; the engine's policies are used only by
    :meth:`policy_actions`.
    """

    metadata = {"name": "narla_neurons_parallel_v0", "render_modes": ["ansi"]}
    propagation = "delay"
    render_in_progress = False
    _policy: dict[str, Any] | None = None  # the policies' actions this tick, once sampled

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
        self.core.set_all_actions([self.core.check_action(agent, actions[agent]) for agent in self.possible_agents])
        result = self.core.end_tick()
        agents = self.agents
        observations = self._observations()
        rewards = dict(zip(agents, result.rewards, strict=True))
        terminations = dict.fromkeys(agents, result.terminated)
        truncations = dict.fromkeys(agents, result.truncated)
        infos = {agent: result.info(i) for i, agent in enumerate(agents)}
        if result.terminated or result.truncated:
            self.agents = []
        self._policy = None
        return observations, rewards, terminations, truncations, infos

    def policy_actions(self) -> dict[str, Any]:
        """The actions the network's own policies take this tick, on the agents' current observations.

        All neurons are sampled in one draw from the engine's generator (as the engine's ``delay`` tick
        samples them), so driving the view with these reproduces the engine's batched rollout.
        """
        self.core.require_running()
        if self._policy is None:
            self.core.policy_cache = dict(enumerate(self.core.sample(0, self.core.num_neurons).tolist()))
            self._policy = {agent: self.core.policy_action(i) for i, agent in enumerate(self.possible_agents)}
        return dict(self._policy)


def parallel_env(
    scenario: ScenarioLike, max_cycles: int | None = None, render_mode: str | None = None
) -> NeuronParallelEnv:
    """The Parallel view of ``scenario`` (a :class:`~narla.scenario.Scenario`, its dict form or a YAML path).

    The run is built as :func:`narla.training.build` builds it, with one task copy and ``propagation:
    delay``; ``max_cycles`` (ticks per episode) replaces ``task.max_episode_steps`` when given.
    """
    return NeuronParallelEnv.from_scenario(scenario, max_cycles, render_mode)
