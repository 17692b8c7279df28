"""Torch-native cart-pole swing-up (the version used by AttentionNeuron and the Cooperator)."""

from __future__ import annotations

import math
from types import ModuleType

import gymnasium as gym
import numpy as np
import torch

from narla.tasks.physics import PhysicsTask, torch_cos, torch_sin
from narla.tasks.render import cartpole_frame

GRAVITY = 9.82  # m/s^2
MASS_CART = 0.5  # kg
MASS_POLE = 0.5  # kg
TOTAL_MASS = MASS_CART + MASS_POLE
POLE_LENGTH = 0.6  # m
FORCE_MAG = 10.0  # N per unit of action
FRICTION = 0.1  # cart friction coefficient b
DT = 0.01  # s per step
X_THRESHOLD = 2.4  # m
STARTS = ("simple", "harder")


class CartPoleSwingUp(PhysicsTask):
    """``B`` copies of cart-pole swing-up stepped together on ``device``.

    State ``[x (m), x_dot (m/s), theta (rad), theta_dot (rad/s)]`` with ``theta = 0`` upright, kept in float64.
    Observation ``[x, x_dot, cos theta, sin theta, theta_dot]`` (float32). Action ``[B, 1]`` in ``[-1, 1]``
    (clipped), force = 10 * action newtons. Reward ``((cos theta + 1) / 2) * cos((x / 2.4) (pi / 2))`` on the
    state after the step. A copy terminates when ``|x| > 2.4`` and is truncated at ``max_episode_steps``.

    Start distributions: ``"simple"`` = Normal(mean [0, 0, pi, 0], sd 0.2); ``"harder"`` = uniform
    ``x in +-2.4, x_dot in +-10, theta in pi +- pi/2, theta_dot in +-10``.

    ``solve`` is None: the papers report fitness curves (e.g. "fitness 600"), not a windowed solve threshold.
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        start: str = "simple",
        max_episode_steps: int = 1000,
    ) -> None:
        if start not in STARTS:
            raise ValueError(f"start must be one of {list(STARTS)}, got {start!r}")
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        super().__init__(num_envs, device, max_episode_steps, obs_dim=5, action_space=action_space, solve=None)
        self.start = start
        self._start_centre = torch.tensor([0.0, 0.0, math.pi, 0.0], dtype=torch.float64, device=self.device)
        self._start_half_width = torch.tensor(
            [X_THRESHOLD, 10.0, math.pi / 2, 10.0], dtype=torch.float64, device=self.device
        )

    render_fps = 1.0 / DT

    def render(self) -> np.ndarray:
        """Copy 0 as an RGB frame ``[240, 480, 3]``. In these equations a positive ``theta`` leans the pole to the
        left (a push to the right raises ``theta``), so it is drawn at ``-theta`` in the picture's convention."""
        x, _, theta, _ = self.state[0].tolist()
        return cartpole_frame(x, -theta, POLE_LENGTH, X_THRESHOLD)

    def _sample_start(self) -> torch.Tensor:
        """Fresh start states ``[B, 4]`` (float64) from the chosen start distribution."""
        shape = (self.num_envs, 4)
        if self.start == "simple":
            noise = torch.randn(shape, generator=self.generator, dtype=torch.float64, device=self.device)
            return self._start_centre + 0.2 * noise
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64, device=self.device)
        return self._start_centre + self._start_half_width * (2.0 * u - 1.0)

    def _observe(self) -> torch.Tensor:
        """Observation ``[B, 5]`` float32 of the current state."""
        return _observation(self.state, torch).to(torch.float32)

    numpy_on_cpu = True  # step's arithmetic on NumPy views on the CPU (see step); False: torch's ops everywhere

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every copy by ``DT`` seconds; finished copies restart in the same call.

        On the CPU the arithmetic, the step count and the restarts run on NumPy arrays (:attr:`numpy_on_cpu`,
        :meth:`~narla.tasks.physics.PhysicsTask._advance_numpy`): the same float64 operations in the same order,
        with every cosine and sine and the restarts' draw still torch's, so the same bits (tested). A torch call on a
        ``[B]`` vector costs a few microseconds: the torch step makes 72 calls, the NumPy one 23 (most of them
        conversions to and from NumPy, which cost less).

        Args:
            action: ``[B, 1]`` (or ``[B]``) floats; values outside ``[-1, 1]`` are clipped.

        Returns:
            ``(obs [B, 5] float32, reward [B] float32, terminated [B] bool, truncated [B] bool)``.
        """
        on_numpy = self.numpy_on_cpu and self.device.type == "cpu"
        xp = np if on_numpy else torch
        if on_numpy:
            force = FORCE_MAG * np.clip(action.numpy().reshape(self.num_envs).astype(np.float64), -1.0, 1.0)
            state = self.state.numpy()
        else:
            force = FORCE_MAG * action.reshape(self.num_envs).to(torch.float64).clamp(-1.0, 1.0)
            state = self.state
        x, x_dot, theta, theta_dot = state[:, 0], state[:, 1], state[:, 2], state[:, 3]
        s, c = torch_sin(theta), torch_cos(theta)
        mpl = MASS_POLE * POLE_LENGTH

        x_acc = (
            -2 * mpl * (theta_dot * theta_dot) * s + 3 * MASS_POLE * GRAVITY * s * c + 4 * force - 4 * FRICTION * x_dot
        ) / (4 * TOTAL_MASS - 3 * MASS_POLE * (c * c))
        theta_acc = (
            -3 * mpl * (theta_dot * theta_dot) * s * c + 6 * TOTAL_MASS * GRAVITY * s
            + 6 * (force - FRICTION * x_dot) * c
        ) / (4 * POLE_LENGTH * TOTAL_MASS - 3 * mpl * (c * c))

        x = x + x_dot * DT
        theta = theta + theta_dot * DT
        x_dot = x_dot + x_acc * DT
        theta_dot = theta_dot + theta_acc * DT
        state = xp.stack((x, x_dot, theta, theta_dot), 1)

        reward = (torch_cos(theta) + 1.0) / 2.0 * torch_cos((x / X_THRESHOLD) * (math.pi / 2))
        terminated = abs(x) > X_THRESHOLD
        if not on_numpy:
            truncated = self._advance(state, terminated)
            return self._observe(), reward.to(torch.float32), terminated, truncated
        truncated = self._advance_numpy(state, terminated)
        obs = torch.from_numpy(_observation(self.state.numpy(), np).astype(np.float32))
        reward = torch.from_numpy(reward.astype(np.float32))
        return obs, reward, torch.from_numpy(terminated), torch.from_numpy(truncated)


def _observation(state: torch.Tensor | np.ndarray, xp: ModuleType) -> torch.Tensor | np.ndarray:
    """``[x, x_dot, cos theta, sin theta, theta_dot]`` ``[B, 5]`` of float64 states ``[B, 4]``, a tensor or a NumPy
    array (``xp``: torch or numpy), with torch's cosine and sine either way."""
    x, x_dot, theta, theta_dot = state[:, 0], state[:, 1], state[:, 2], state[:, 3]
    return xp.stack((x, x_dot, torch_cos(theta), torch_sin(theta), theta_dot), 1)
