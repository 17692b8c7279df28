"""The AEC view: neurons act one at a time in topological order; the task steps after the last one.

This is the engine's ``sweep`` propagation seen as a PettingZoo :class:`~pettingzoo.AECEnv`:

- agents are the neurons, named after their graph nodes, in engine order (sorted by feedforward stage,
  i.e. topological order); one *cycle* of ``agent_iter`` is one tick of the network;
- an agent's observation is its feedforward inputs of *this* tick (the task's current observation for
  sensors, this tick's spikes for presynaptic neurons, which acted before it) followed, where the neuron
  has them, by its context inputs from the previous tick (see :mod:`narla.envs.core`). Observing an agent
  that has not had its turn yet shows the neurons still to act this tick as silent;
- when the last agent of the tick has acted (in the layered networks: the last motor neuron), the
  readout turns the motor neurons' actions into the task action, the task steps, and **every agent's
  reward for the tick is assigned at once** from the scenario's reward scheme; the agents collect it
  through ``last()`` at their next turn. ``infos[agent]`` then holds ``task_reward`` and
  ``reward_components`` (each term's weighted contribution);
- when the task's episode ends, every agent is terminated (or truncated, as the task says) together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pettingzoo import AECEnv

from narla.engine import Engine
from narla.envs.core import NetworkView, ScenarioLike, TickResult
from narla.rewards.scheme import RewardScheme
from narla.tasks.base import Task


class NeuronAECEnv(NetworkView, AECEnv):
    """A neuron network as an AEC environment (``sweep`` semantics); build it with :func:`aec_env`.

    Takes :class:`~narla.envs.core.NetworkView`'s arguments; the engine's policies are used only by
    :meth:`policy_action`.
    """

    metadata = {"name": "narla_neurons_aec_v0", "render_modes": ["ansi"], "is_parallelizable": True}
    propagation = "sweep"
    render_in_progress = True

    def __init__(
        self, task: Task, engine: Engine, scheme: RewardScheme, render_mode: str | None = None, episode: int = 0
    ) -> None:
        super().__init__(task, engine, scheme, render_mode, episode)
        self.rewards: dict[str, float] = {}
        self._cumulative_rewards: dict[str, float] = {}
        self.terminations: dict[str, bool] = {}
        self.truncations: dict[str, bool] = {}
        self.infos: dict[str, dict] = {}
        self.agent_selection = self.possible_agents[0]

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        """Start an episode; ``seed`` seeds the task (and the engine's sampling generator with ``seed + 1``)."""
        self.core.reset(seed)
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {agent: {} for agent in self.agents}
        self.agent_selection = self.agents[0]

    def observe(self, agent: str) -> np.ndarray:
        return self.core.observe(self.core.index[agent])

    def step(self, action: Any) -> None:
        """The selected agent fires (1) or stays silent (0), a categorical motor neuron picks an action, or a rate
        neuron gives its value (a ``Box`` of one float)."""
        agent = self.agent_selection
        if self.terminations.get(agent) or self.truncations.get(agent):
            self._was_dead_step(action)
            return
        self.core.require_running()
        i = self.core.index[agent]
        self.core.set_action(i, self.core.check_action(agent, action))
        self._cumulative_rewards[agent] = 0.0
        if i == self.core.num_neurons - 1:
            self._finish_tick(self.core.end_tick())
        else:
            self._clear_rewards()
        self._accumulate_rewards()
        self.agent_selection = self.agents[(i + 1) % len(self.agents)]

    def _finish_tick(self, result: TickResult) -> None:
        for i, agent in enumerate(self.agents):
            self.rewards[agent] = result.rewards[i]
            self.infos[agent] = result.info(i)
            self.terminations[agent] = result.terminated
            self.truncations[agent] = result.truncated

    def policy_action(self) -> Any:
        """The action the network's own policy takes for the selected agent on its current observation.

        The neurons of one topological stage are sampled together, once, from the engine's generator (as the
        engine samples them), so driving every agent with this reproduces the engine's batched rollout.
        """
        agent = self.agent_selection
        self.core.require_running()
        i = self.core.index[agent]
        if i not in self.core.policy_cache:
            start, end = self.core.stages[int(self.core.stage_of[i])]
            sampled = self.core.sample(start, end)
            self.core.policy_cache.update({start + k: a for k, a in enumerate(sampled.tolist())})
        return self.core.policy_action(i)


def aec_env(scenario: ScenarioLike, max_cycles: int | None = None, render_mode: str | None = None) -> NeuronAECEnv:
    """The AEC view of ``scenario`` (a :class:`~narla.scenario.Scenario`, its dict form or a YAML path).

    The run is built as :func:`narla.training.build` builds it, with one task copy and ``propagation:
    sweep``; ``max_cycles`` (ticks per episode) replaces ``task.max_episode_steps`` when given.
    """
    return NeuronAECEnv.from_scenario(scenario, max_cycles, render_mode)
