"""What both PettingZoo views share: one ``B = 1`` copy of a neuron network, ticked by outside actions.

:class:`NetworkCore` holds the engine objects a :class:`narla.training.Run` builds (task, wiring, readout,
population, reward scheme) and keeps the activity of one network the way :mod:`narla.rollout` does:

- the *activity vector* ``[S + N]`` of the tick in progress (sensors, then spikes in engine order) and of
  the previous tick (zeros at an episode's start);
- the per-neuron activity trace, the previous tick's spikes and the ``first`` flag that build the
  :class:`~narla.rewards.state.NetworkState` handed to the run's :class:`~narla.rewards.RewardScheme`.

:class:`NetworkView` is the mixin both views build on: their core, agents, spaces, ``render`` and
``close``.

An agent's observation is what its synapses carry, as the population reads it: its feedforward inputs
(padded to the network's largest fan-in ``F``, padding zero), then, for a neuron that has context edges,
its graph context inputs (padded to ``Fc``), which always read the previous tick, then, when the
scenario feeds the previous task action as universal context (``context.universal_action``), those
``A`` action features (zeros on an episode's first tick). Which tick the feedforward inputs read depends
on the propagation mode: ``sweep`` (this tick's presynaptic spikes; the AEC view) or ``delay`` (the
previous tick's; the Parallel view). Sensors always carry the task's current observation. Fixed
per-neuron constants (a positional encoding, pooling maps) are part of the policy, not the observation.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from gymnasium import logger, spaces

from narla.engine import Engine
from narla.rewards.scheme import RewardScheme
from narla.rollout import finish_tick, start_carry
from narla.scenario import Scenario, ScenarioError, from_dict, load
from narla.tasks.base import Task

ScenarioLike = Scenario | dict | str | Path
_WHOLE_NETWORK = (
    "network.builder: the attention_neuron and cooperator networks act layer after layer within a tick (each "
    "latent neuron reads this tick's keys), so only the AEC view plays them; use narla.envs.aec_env"
)


def build_run(scenario: ScenarioLike, propagation: str, max_cycles: int | None = None):
    """A ``B = 1`` :class:`narla.training.Run` of ``scenario`` with ``propagation`` forced, without a learner.

    The agents act with the population's own parameters (an evolution strategy's mean: ES scenarios are
    accepted, their rate neurons deterministic).

    ``scenario`` is a :class:`Scenario`, its plain-data form, or the path of a YAML file. ``max_cycles``
    (if given) replaces ``task.max_episode_steps``: the task truncates after that many ticks.
    """
    from narla.training import build

    if isinstance(scenario, (str, Path)):
        scenario = load(scenario)
    elif isinstance(scenario, dict):
        scenario = from_dict(scenario)
    elif not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, a dict or a YAML path, got {type(scenario).__name__}")
    if max_cycles is not None and (isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 1):
        raise ValueError(f"max_cycles must be an int >= 1, got {max_cycles!r}")
    task = replace(scenario.task, num_envs=1)
    if max_cycles is not None:
        task = replace(task, max_episode_steps=max_cycles)
    run = build(replace(scenario, propagation=propagation, task=task), learner=False)
    if run.engine.whole_network and propagation != "sweep":
        raise ScenarioError(_WHOLE_NETWORK)
    return run


@dataclass
class TickResult:
    """What one finished tick gives every agent."""

    rewards: list[float]  # per neuron, engine order
    components: dict[str, list[float]]  # reward component -> per neuron
    task_reward: float
    terminated: bool
    truncated: bool

    def info(self, i: int) -> dict[str, Any]:
        """Neuron ``i``'s info: the task reward and each reward component's contribution."""
        return {
            "task_reward": self.task_reward,
            "reward_components": {name: values[i] for name, values in self.components.items()},
        }


class NetworkCore:
    """One network copy driven one tick at a time, on the engine's own tick (see the module docstring).

    The activity lives in the engine's tensors (``act[S + N, 1]`` of the tick in progress, the :class:`Carry` of
    the tick before); observations are :meth:`Engine.stage_inputs`, the policies' actions :meth:`Engine.choose`,
    an agent's action enters through :meth:`Engine.commit` and a tick ends in :func:`narla.rollout.finish_tick`,
    exactly the pieces :meth:`Engine.tick` and :func:`narla.rollout.collect` are made of.
    """

    whole_network = False

    def __init__(self, task: Task, engine: Engine, scheme: RewardScheme, propagation: str, episode: int = 0) -> None:
        if task.num_envs != 1:
            raise ValueError(f"task.num_envs: a PettingZoo view plays one copy (num_envs=1), got {task.num_envs}")
        if engine.propagation != propagation:
            other = "parallel_env" if propagation == "sweep" else "aec_env"
            raise ValueError(
                f"propagation: this view plays {propagation!r} semantics but the engine was built with "
                f"{engine.propagation!r}; build the engine with propagation={propagation!r} or use narla.envs.{other}"
            )
        if engine.whole_network != self.whole_network:
            raise ValueError(
                "a whole-network population (attention_neuron / cooperator) needs narla.envs.whole.WholeNetworkCore"
                if engine.whole_network else "WholeNetworkCore plays attention_neuron / cooperator networks only"
            )
        self.task, self.engine, self.scheme = task, engine, scheme
        self.wiring = wiring = engine.wiring
        self.propagation = propagation
        self.episode = episode
        self.num_sensors, self.num_neurons = wiring.num_sensors, wiring.num_neurons
        self.names = [str(n) for n in wiring.neuron_names]
        if len(set(self.names)) != len(self.names):
            raise ValueError("graph: neuron names must stay distinct as strings (they name the agents)")
        self.index = {name: i for i, name in enumerate(self.names)}
        self.ff_idx = wiring.ff_idx.cpu().numpy()
        self.ff_mask = wiring.ff_mask.cpu().numpy()
        self.ctx_idx = wiring.ctx_idx.cpu().numpy()
        self.ctx_mask = wiring.ctx_mask.cpu().numpy()
        self.has_context = self.ctx_mask.sum(1) > 0
        self.action_dim = int(getattr(engine.population, "action_dim", 0))
        self.motor = wiring.motor.cpu().numpy()
        self.layer = wiring.layer.cpu().numpy()
        rate = engine.rate.cpu().numpy() if engine.rate is not None else np.zeros(self.num_neurons, dtype=bool)
        self.rate = rate
        self.stages = list(wiring.stages)  # the groups of neurons whose policies act together (one draw each)
        self.stage_of = np.zeros(self.num_neurons, dtype=np.int64)
        for k, (start, end) in enumerate(self.stages):
            self.stage_of[start:end] = k
        self.observation_spaces = {name: self._observation_space(i) for i, name in enumerate(self.names)}
        self.action_spaces = {name: self._action_space(i) for i, name in enumerate(self.names)}
        self.ready = False
        self.done = False
        self.tick_count = 0
        self.episode_return = 0.0
        self.task_action: np.ndarray | None = None

    # -- spaces --------------------------------------------------------------------------------
    def _rate_bound(self) -> float:
        """Rate values lie in [-1, 1] when deterministic (ES), anywhere when Gaussian (policy gradients)."""
        return np.inf if self.engine.explore else 1.0

    def _input_bounds(self, idx: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sensors are unbounded, spikes lie in [0, 1], rate values in their bounds, padding is exactly 0."""
        real = mask > 0
        sensor = real & (idx < self.num_sensors)
        neuron = np.clip(idx - self.num_sensors, 0, None)
        rate = real & ~sensor & self.rate[neuron]
        bound = self._rate_bound()
        low = np.where(sensor, -np.inf, np.where(rate, -bound, 0.0))
        high = np.where(sensor, np.inf, np.where(rate, bound, np.where(real, 1.0, 0.0)))
        return low, high

    def _action_feature_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """One-hot features of a Discrete task action lie in [0, 1]; a Box action's in its bounds."""
        space = self.engine.readout.action_space
        if isinstance(space, spaces.Box):
            return space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
        return np.zeros(self.action_dim), np.ones(self.action_dim)

    def _observation_space(self, i: int) -> spaces.Box:
        parts = [self._input_bounds(self.ff_idx[i], self.ff_mask[i])]
        if self.has_context[i]:
            parts.append(self._input_bounds(self.ctx_idx[i], self.ctx_mask[i]))
        if self.action_dim:
            parts.append(self._action_feature_bounds())
        low = np.concatenate([p[0] for p in parts]).astype(np.float32)
        high = np.concatenate([p[1] for p in parts]).astype(np.float32)
        return spaces.Box(low, high, dtype=np.float32)

    def _action_space(self, i: int) -> spaces.Space:
        """Discrete(2) (silent / fire) for a spiking neuron, one choice per action for a categorical motor neuron,
        a ``Box`` of one value for a rate neuron."""
        if self.rate[i]:
            bound = self._rate_bound()
            return spaces.Box(-bound, bound, (1,), dtype=np.float32)
        out_dim = self.engine.population.out_dim
        return spaces.Discrete(out_dim if self.motor[i] and out_dim > 1 else 2)

    # -- episode -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start an episode: the task reset under ``seed``; the engine's sampling generator seeded with ``seed + 1``.

        That pairing is :func:`narla.training.build`'s for scenario seed ``seed``. Without a seed both
        random streams go on where they are.
        """
        if seed is not None:
            if self.engine.generator is not None:
                self.engine.generator.manual_seed(seed + 1)
        obs = self.task.reset(seed=seed)
        self.carry = start_carry(self.engine, 1)
        self.last_actions = np.zeros(self.num_neurons)
        self.tick_count = 0
        self.episode_return = 0.0
        self.task_action = None
        self.done = False
        self.ready = True
        self._begin_tick(obs)

    def _begin_tick(self, obs: torch.Tensor) -> None:
        self.task_obs = obs.detach().to("cpu", torch.float32).numpy()[0].copy()
        self.obs = obs
        self.act = self.engine.begin_tick(obs)
        self.actions = self.engine.new_actions(1)
        self.acted = np.zeros(self.num_neurons, dtype=bool)
        self.policy_cache: dict[int, Any] = {}

    def require_running(self) -> None:
        if not self.ready:
            raise RuntimeError("reset() must be called before step()")
        if self.done:
            raise RuntimeError("the episode has ended; call reset() to start a new one")

    # -- observations --------------------------------------------------------------------------
    def _observations(self, start: int, end: int) -> np.ndarray:
        """Neurons ``start:end``'s observations ``[n, dim]`` (float32), context columns kept for every neuron."""
        x, c = self.engine.stage_inputs(self.act, self.carry.prev, start, end)
        parts = [x[:, :, 0], c[:, :, 0]]
        if self.action_dim:
            parts.append(self.carry.prev_action.expand(end - start, -1))
        return torch.cat(parts, 1).to("cpu", torch.float32).numpy()

    def _trim(self, i: int, row: np.ndarray) -> np.ndarray:
        """Drop the context columns of a neuron that has no context edges (its space has none)."""
        if self.has_context[i]:
            return row
        fan = self.ff_idx.shape[1]
        return np.concatenate([row[:fan], row[fan + self.ctx_idx.shape[1] :]])

    def observe(self, i: int) -> np.ndarray:
        """Neuron ``i``'s observation (float32, matching its observation space)."""
        return self._trim(i, self._observations(i, i + 1)[0])

    def observe_all(self) -> list[np.ndarray]:
        """Every neuron's observation at once (the Parallel view's path)."""
        rows = self._observations(0, self.num_neurons)
        return [self._trim(i, rows[i]) for i in range(self.num_neurons)]

    # -- the network's own policies ------------------------------------------------------------
    def sample(self, start: int, end: int) -> np.ndarray:
        """Neurons ``start:end``'s actions from their own policies on their current inputs.

        The logits and the draws are the engine's own (:meth:`Engine.stage_logits`, :meth:`Engine.choose`, one
        call per stage, from the engine's generator), so a view driven this way reproduces
        :func:`narla.rollout.collect` for the same generator state.
        """
        logits = self.engine.stage_logits(self.act, self.carry.prev, start, end, self.carry.prev_action)
        return self.engine.choose(logits, start, end).cpu().numpy()[:, 0]

    def policy_action(self, i: int) -> Any:
        """Neuron ``i``'s own action in its action space: an int, or a ``float32[1]`` array for a rate neuron."""
        value = self.policy_cache[i]
        return np.array([value], dtype=np.float32) if self.rate[i] else int(value)

    # -- acting --------------------------------------------------------------------------------
    def check_action(self, name: str, action: Any) -> float:
        """``action`` as a number, or a ``ValueError`` naming the agent and its action space."""
        i = self.index[name]
        if isinstance(action, torch.Tensor):
            action = action.detach().cpu().numpy()
        space = self.action_spaces[name]
        if self.rate[i]:
            action = np.asarray(action, dtype=np.float32).reshape(-1)
        if not space.contains(action):
            raise ValueError(f"action for agent {name!r}: {action!r} is not in its action space {space}")
        return float(action[0]) if self.rate[i] else int(action)

    def set_action(self, i: int, action: float) -> None:
        """Neuron ``i`` acts (:meth:`Engine.commit`): its choice and its activity enter this tick."""
        chosen = torch.tensor([[action]], dtype=self.actions.dtype, device=self.engine.device)
        self.engine.commit(self.act, self.actions, chosen, i, i + 1)
        self.acted[i] = True

    def set_all_actions(self, actions: list[float]) -> None:
        """Every neuron acts at once (the Parallel view): one :meth:`Engine.commit` for the whole network."""
        chosen = torch.tensor(actions, dtype=self.actions.dtype, device=self.engine.device).unsqueeze(1)
        self.engine.commit(self.act, self.actions, chosen, 0, self.num_neurons)
        self.acted[:] = True

    def end_tick(self) -> TickResult:
        """Every neuron has acted: :func:`narla.rollout.finish_tick` steps the task and scores the tick."""
        before = self.carry
        out, self.carry = finish_tick(self.engine, self.task, self.scheme, before, self.act, self.actions, self.episode,
                                      self.obs)
        result = TickResult(
            rewards=out.total[0].tolist(),
            components={name: value[0].tolist() for name, value in out.parts.items()},
            task_reward=float(out.reward[0]),
            terminated=bool(out.terminated[0]),
            truncated=bool(out.truncated[0]),
        )
        self.task_action = out.task_action[0].cpu().numpy()
        self.last_actions = self.actions[:, 0].cpu().numpy()
        self.tick_count += 1
        self.episode_return += result.task_reward
        if result.terminated or result.truncated:
            # The task has already restarted the copy; the agents observe its terminal state: the sensors read
            # the task's final observation, presynaptic neurons show the activity of the tick just played.
            self.done = True
            self.episode += 1
            final = self.task.final_observation()
            if final is None:
                self.carry = before  # a task that cannot tell: the agents keep observing the last tick they acted on
            else:
                self.task_obs = final.detach().to("cpu", torch.float32).numpy()[0].copy()
                self.act = self.act.clone()
                self.act[: self.num_sensors] = self.engine.sensors(final)
        else:
            self._begin_tick(out.next_obs)
        return result

    # -- rendering -----------------------------------------------------------------------------
    def _cell(self, i: int, action: float) -> str:
        """One neuron's mark: ``#`` fired, ``.`` silent; a rate neuron ``+`` / ``-`` / ``0`` by its value's sign."""
        if self.rate[i]:
            return "+" if action > 0.05 else "-" if action < -0.05 else "0"
        return "#" if action > 0 else "."

    def render_text(self, in_progress: bool) -> str:
        """The network's activity as text: a header, the sensors, one row per layer (``#`` fired, ``.`` silent).

        ``in_progress``: draw the tick being played, ``?`` marking neurons still to act (the AEC view);
        otherwise the last finished tick, i.e. the spikes the neurons observe now (the Parallel view).
        """
        if not self.ready:
            return "narla network: not reset yet\n"
        if in_progress and not self.done:
            actions, shown = self.actions[:, 0].cpu().numpy(), self.acted
        else:
            actions, shown = self.last_actions, np.ones(self.num_neurons, dtype=bool)
        status = "ended" if self.done else "running"
        episode = self.episode - int(self.done)
        lines = [f"episode {episode}  tick {self.tick_count}  return {self.episode_return:g}  ({status})"]
        sensed = self.act[: self.num_sensors, 0].tolist()
        sensors = "  ".join(f"{name}={sensed[k]:+.3f}" for k, name in enumerate(self.wiring.sensor_names))
        lines.append(f"sensors  {sensors}")
        for layer in sorted(set(self.layer.tolist())):
            members = np.flatnonzero(self.layer == layer)
            cells = "".join(self._cell(i, actions[i]) if shown[i] else "?" for i in members)
            fired = int(sum(actions[i] > 0 for i in members if shown[i]))
            role = "motor" if self.motor[members].all() else "hidden"
            lines.append(f"L{layer:<2} {role:<6} {cells}  {fired}/{len(members)} firing")
        motors = [
            f"{self.names[i]}={actions[i]:+.2f}" if self.rate[i] else f"{self.names[i]}={int(actions[i])}"
            for i in np.flatnonzero(self.motor)
            if shown[i]
        ]
        if motors:
            lines.append("motor    " + textwrap.shorten("  ".join(motors), 200))
        if self.task_action is not None:
            lines.append(f"last task action {np.array2string(self.task_action, precision=3)}")
        return "\n".join(lines) + "\n"


View = TypeVar("View", bound="NetworkView")


class NetworkView:
    """What both PettingZoo views share, mixed in before their PettingZoo base class.

    A view sets ``propagation`` (the semantics its :class:`NetworkCore` plays) and ``render_in_progress``
    (whether ``render()`` draws the tick being played or the last finished one).

    Args:
        task: a task with ``num_envs == 1``.
        engine: the network (wiring, population, readout), built with the view's ``propagation``.
        scheme: the reward scheme that gives each agent its reward.
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns the network's activity as text).
        episode: the episode index the reward scheme's phases start counting from.
    """

    metadata: dict[str, Any]
    propagation: str
    render_in_progress: bool

    def __init__(
        self, task: Task, engine: Engine, scheme: RewardScheme, render_mode: str | None = None, episode: int = 0
    ) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: {render_mode!r} is not supported; allowed: None, 'ansi'")
        self.render_mode = render_mode
        if engine.whole_network:
            from narla.envs.whole import WholeNetworkCore

            if self.propagation != "sweep":
                raise ValueError(_WHOLE_NETWORK)
            self.core = WholeNetworkCore(task, engine, scheme, self.propagation, episode)
        else:
            self.core = NetworkCore(task, engine, scheme, self.propagation, episode)
        self.possible_agents = list(self.core.names)
        self.observation_spaces = self.core.observation_spaces
        self.action_spaces = self.core.action_spaces
        self.agents: list[str] = []
        self.owns_task = False

    @classmethod
    def from_run(cls: type[View], run, render_mode: str | None = None) -> View:
        """The view of a :class:`narla.training.Run` built with ``num_envs=1`` and this view's propagation."""
        return cls(run.task, run.engine, run.scheme, render_mode)

    @classmethod
    def from_scenario(
        cls: type[View], scenario: ScenarioLike, max_cycles: int | None = None, render_mode: str | None = None
    ) -> View:
        """The view of ``scenario`` built as :func:`build_run` builds it; the view owns (and closes) the task."""
        view = cls.from_run(build_run(scenario, cls.propagation, max_cycles), render_mode)
        view.owns_task = True
        return view

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[agent]

    @property
    def task_observation(self) -> np.ndarray:
        """The task observation the current (or, after the episode's end, the last) tick acts on."""
        return self.core.task_obs

    def render(self) -> str | None:
        if self.render_mode is None:
            logger.warn("render() was called without a render_mode; build the view with render_mode='ansi'")
            return None
        return self.core.render_text(in_progress=self.render_in_progress)

    def close(self) -> None:
        if self.owns_task:
            self.core.task.close()
