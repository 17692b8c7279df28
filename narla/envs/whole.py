"""The AEC view's core for AttentionNeuron and the Cooperator: every sensory, latent, head and motor neuron an agent.

These networks act layer after layer within one tick (:class:`narla.neurons.attention_neuron.AttentionNeuronPopulation`:
:meth:`~AttentionNeuronPopulation.sense`, :meth:`~AttentionNeuronPopulation.attend`,
:meth:`~AttentionNeuronPopulation.layer`), and the view plays those same functions one agent at a time:

- **sensory neuron** ``sense{i}``: observes ``[o_i, previous task action features]`` (what its cell reads; its
  memory is its own state, updated from that observation whatever it does) and acts with its key, a ``Box(d)``
  (``[0, 6]`` per component under the Cooperator's relu6 modulation, unbounded otherwise);
- **latent neuron** ``latent{j}``: observes every sensory neuron's key of this tick (``S·d``, zeros for those still
  to act) and the raw features (``S``, its attention values), and acts with its code value, a ``Box(1)`` in
  ``[-1, 1]``;
- **head and motor neurons**: observe the layer before's values of this tick and act with their value, a
  ``Box(1)`` in ``[-1, 1]``; the motor neurons' values are the task action (readout ``value``).

A neuron's activity (what the reward scheme sees) is its value; for a sensory neuron, the root mean square of
its key. The tick ends in :func:`narla.rollout.finish_tick`, as in :func:`narla.rollout.collect`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from narla.envs.core import NetworkCore
from narla.neurons.attention_neuron import key_activity


class WholeNetworkCore(NetworkCore):
    """One copy of an attention_neuron / cooperator network driven one agent at a time (see the module doc)."""

    whole_network = True

    def __init__(self, task, engine, scheme, propagation: str, episode: int = 0) -> None:
        pop = engine.population
        self.pop = pop
        self.s, self.m, self.d = pop.num_sensory, pop.num_latent, pop.msg_dim
        sizes = [self.s, *pop.layer_sizes]  # sensory, latent, head layers..., motor
        bounds = np.cumsum([0, *sizes])
        self.layers = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        super().__init__(task, engine, scheme, propagation, episode)
        self.rate = np.ones(self.num_neurons, dtype=bool)  # every neuron's activity is a value
        self.layer_of = np.repeat(np.arange(len(sizes)), sizes)
        self.stages, self.stage_of = self.layers, self.layer_of  # a layer's agents act on one computation

    # -- spaces --------------------------------------------------------------------------------
    def _key_bounds(self) -> tuple[float, float]:
        return (0.0, 6.0) if self.pop.modulation == "cooperation_relu6" else (-np.inf, np.inf)

    def _observation_space(self, i: int) -> spaces.Box:
        layer = int(np.searchsorted([b for _, b in self.layers], i, side="right"))
        if layer == 0:
            low, high = self._action_feature_bounds()
            return spaces.Box(np.r_[-np.inf, low].astype(np.float32), np.r_[np.inf, high].astype(np.float32))
        if layer == 1:
            k_low, k_high = self._key_bounds()
            low = np.r_[np.full(self.s * self.d, k_low), np.full(self.s, -np.inf)].astype(np.float32)
            high = np.r_[np.full(self.s * self.d, k_high), np.full(self.s, np.inf)].astype(np.float32)
            return spaces.Box(low, high)
        start, end = self.layers[layer - 1]
        return spaces.Box(-1.0, 1.0, (end - start,), dtype=np.float32)

    def _action_space(self, i: int) -> spaces.Box:
        if i < self.s:
            low, high = self._key_bounds()
            return spaces.Box(low, high, (self.d,), dtype=np.float32)
        return spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    # -- a tick --------------------------------------------------------------------------------
    @torch.no_grad()
    def _begin_tick(self, obs: torch.Tensor) -> None:
        self.task_obs = obs.detach().to("cpu", torch.float32).numpy()[0].copy()
        self.obs = obs
        self.act = self.engine.begin_tick(obs)
        self.sensed = self.act[: self.num_sensors].T  # [1, S] in the sensory neurons' order
        if self.engine.memory is None:
            self.engine.reset_memory(1)
        self.policy_keys, self.next_memory = self.pop.sense(self.sensed, self.engine.memory, self.carry.prev_action)
        self.keys = torch.zeros_like(self.policy_keys)  # [1, S, d], filled as the sensory agents act
        self.values = torch.zeros(self.num_neurons, 1, device=self.engine.device)
        self.actions = self.values
        self.acted = np.zeros(self.num_neurons, dtype=bool)
        self.policy_cache: dict[int, Any] = {}

    def _layer_input(self, layer: int) -> torch.Tensor:
        """What layer ``layer`` (>= 2) reads: the layer before's values of this tick, ``[1, n]``."""
        start, end = self.layers[layer - 1]
        return self.values[start:end].T

    def observe(self, i: int) -> np.ndarray:
        layer = int(self.layer_of[i])
        if layer == 0:
            parts = [self.sensed[0, i : i + 1]]
            if self.carry.prev_action is not None:
                parts.append(self.carry.prev_action[0])
            out = torch.cat(parts)
        elif layer == 1:
            out = torch.cat([self.keys.reshape(-1), self.sensed[0]])
        else:
            out = self._layer_input(layer)[0]
        return out.to("cpu", torch.float32).numpy()

    def observe_all(self) -> list[np.ndarray]:
        return [self.observe(i) for i in range(self.num_neurons)]

    @torch.no_grad()
    def sample(self, start: int, end: int) -> np.ndarray:
        """Neurons ``start:end`` (one layer) from the population's own functions on their current observations."""
        layer = int(self.layer_of[start])
        if layer == 0:
            return self.policy_keys[0, start:end].cpu().numpy()
        if layer == 1:
            code = self.pop.attend(self.keys, self.sensed)
            return code[0, start - self.s : end - self.s].cpu().numpy()
        out = self.pop.layer(layer - 2, self._layer_input(layer))
        first = self.layers[layer][0]
        return out[0, start - first : end - first].cpu().numpy()

    def policy_action(self, i: int) -> np.ndarray:
        return np.asarray(self.policy_cache[i], dtype=np.float32).reshape(-1)

    def check_action(self, name: str, action: Any) -> np.ndarray:
        if isinstance(action, torch.Tensor):
            action = action.detach().cpu().numpy()
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        space = self.action_spaces[name]
        if not space.contains(action):
            raise ValueError(f"action for agent {name!r}: {action!r} is not in its action space {space}")
        return action

    def set_action(self, i: int, action: np.ndarray) -> None:
        value = torch.as_tensor(action, dtype=torch.float32, device=self.engine.device)
        if i < self.s:
            self.keys[0, i] = value
            self.values[i, 0] = key_activity(value.unsqueeze(0))[0]
        else:
            self.values[i, 0] = value[0]
        self.act[self.num_sensors + i] = self.values[i]
        self.acted[i] = True

    def end_tick(self):
        self.engine.memory = self.next_memory
        return super().end_tick()
