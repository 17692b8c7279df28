"""Readouts: how the motor neurons' outputs become the task's action.

- ``choice`` (NaRLA parity, discrete tasks): a single motor neuron chooses the action. With two
  actions it is a Bernoulli neuron whose spike is the action (firing = action 1); with more it is a
  categorical neuron with one logit per action.
- ``vote`` (discrete tasks): one motor group per action (group names ``"0"``..``"n-1"``); the action
  is the group with the most firing neurons (ties go to the lowest index).
- ``rate`` (continuous tasks, ``Box(low, high, (A,))``): one motor group per action dimension; the
  action is the group's firing rate mapped linearly onto ``[low, high]``.
- ``squash`` (continuous tasks): one motor group per action dimension ``d`` of ``M`` Bernoulli motor
  neurons. Each motor neuron fires with probability ``σ(AMTF(R, C))`` (its cooperation-modulated output
  squashed by the sigmoid); the group's signed vote ``v_d = mean_i (2 s_i − 1) ∈ [−1, 1]`` is squashed
  into the bounds by ``a_d = mid + half · tanh(κ v_d) / tanh(κ)`` with ``mid = (low + high)/2``,
  ``half = (high − low)/2``, ``κ = 2``. Unanimous firing (or silence) gives exactly ``high`` (``low``), a
  balanced group gives ``mid``, and the curve is steeper than ``rate`` near the middle. The policy stays
  stochastic through the motor spikes, so REINFORCE needs nothing new.
- ``value`` (rate motor neurons, outputs in ``[-1, 1]``): the motor neurons' values are the action. A
  ``Box`` task has one group per action dimension, whose mean value ``v_d`` maps linearly onto the bounds,
  ``a_d = low + (high − low)(v_d + 1)/2``. ``Discrete(2)`` has one group: action 1 when its mean value is
  positive. ``Discrete(n > 2)`` has one group per action: the group with the largest mean value wins.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch

from narla.wiring import Wiring

READOUTS = ("choice", "vote", "rate", "squash", "value")
SQUASH_GAIN = 2.0


class Readout:
    """Maps motor activity ``[N, B]`` to task actions ``[B]`` (discrete) or ``[B, A]`` (continuous)."""

    def __init__(self, kind: str, action_space: gym.Space, motor_per_group: int = 1) -> None:
        if kind not in READOUTS:
            raise ValueError(f"readout.kind: unknown readout {kind!r}; allowed: {', '.join(READOUTS)}")
        discrete = isinstance(action_space, gym.spaces.Discrete)
        if kind in ("choice", "vote") and not discrete:
            raise ValueError(f"readout.kind: {kind!r} needs a Discrete action space, the task has {action_space}")
        if kind in ("rate", "squash") and not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"readout.kind: {kind!r} needs a Box action space, the task has {action_space}")
        if motor_per_group < 1:
            raise ValueError(f"readout.motor_per_group: must be >= 1, got {motor_per_group}")
        self.kind = kind
        self.action_space = action_space
        self.motor_per_group = 1 if kind == "choice" else motor_per_group
        self.num_groups = 1 if kind == "choice" else (int(action_space.n) if discrete else int(action_space.shape[0]))
        if kind == "value" and discrete and action_space.n == 2:
            self.num_groups = 1
        self.out_dim = int(action_space.n) if kind == "choice" and action_space.n > 2 else 1
        self._motor_idx: torch.Tensor | None = None
        self._motor_group: torch.Tensor | None = None

    def motor_groups(self) -> list[str]:
        """The ``group`` attribute of each motor neuron a builder should create, in order."""
        if self.kind == "choice":
            return ["0"]
        return [str(g) for g in range(self.num_groups) for _ in range(self.motor_per_group)]

    def bind(self, wiring: Wiring) -> Readout:
        """Check the wiring's motor neurons fit this readout and cache their indices."""
        motor_idx = wiring.motor_idx
        groups = [wiring.group_names[int(g)] for g in wiring.group[motor_idx].tolist()]
        if self.kind == "choice" and len(groups) != 1:
            raise ValueError(f"readout 'choice' needs exactly one motor neuron, the network has {len(groups)}")
        allowed = {str(g) for g in range(self.num_groups)}
        bad = sorted(set(groups) - allowed)
        if bad:
            raise ValueError(
                f"readout {self.kind!r}: motor neuron groups must be action indices {sorted(allowed)}, found {bad}"
            )
        missing = sorted(allowed - set(groups))
        if missing:
            raise ValueError(f"readout {self.kind!r}: no motor neuron serves action(s) {missing}")
        self._motor_idx = motor_idx
        self._motor_group = torch.tensor([int(g) for g in groups], dtype=torch.long, device=motor_idx.device)
        if isinstance(self.action_space, gym.spaces.Box):
            self._low = torch.as_tensor(self.action_space.low, dtype=torch.float32, device=motor_idx.device)
            self._high = torch.as_tensor(self.action_space.high, dtype=torch.float32, device=motor_idx.device)
        return self

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        """``actions[N, B]`` (every neuron's chosen action) -> the task action for each copy."""
        if self._motor_idx is None:
            raise RuntimeError("Readout.bind(wiring) must be called before use")
        motor = actions[self._motor_idx]
        if self.kind == "choice":
            return motor[0].long()
        if self.kind == "value":
            return self._value(motor)
        spikes = (motor > 0).to(torch.float32)
        counts = torch.zeros(self.num_groups, spikes.shape[1], device=spikes.device)
        counts.index_add_(0, self._motor_group, spikes)
        if self.kind == "vote":
            return counts.argmax(0)
        low, high = self._low, self._high
        rate = (counts / self.motor_per_group).T
        if self.kind == "squash":
            vote = 2.0 * rate - 1.0
            squashed = torch.tanh(SQUASH_GAIN * vote) / math.tanh(SQUASH_GAIN)
            return (low + high) / 2 + (high - low) / 2 * squashed
        return low + (high - low) * rate

    def _value(self, motor: torch.Tensor) -> torch.Tensor:
        """Motor values ``[M, B]`` in ``[-1, 1]`` -> actions (see the module doc)."""
        sums = torch.zeros(self.num_groups, motor.shape[1], device=motor.device)
        mean = sums.index_add_(0, self._motor_group, motor.float()).T / self.motor_per_group  # [B, groups]
        if isinstance(self.action_space, gym.spaces.Box):
            return self._low + (self._high - self._low) * (mean.clamp(-1.0, 1.0) + 1.0) / 2
        if self.num_groups == 1:
            return (mean[:, 0] > 0).long()
        return mean.argmax(1)
