"""Torch-native CartPole: the physics of gymnasium's ``CartPole-v1`` as batched tensor ops."""

from __future__ import annotations

import math

import gymnasium as gym
import torch

from narla.tasks.base import SolveCriterion, Task

GRAVITY = 9.8  # m/s^2
MASS_CART = 1.0  # kg
MASS_POLE = 0.1  # kg
TOTAL_MASS = MASS_CART + MASS_POLE
HALF_LENGTH = 0.5  # m, half the pole's length
POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH
FORCE_MAG = 10.0  # N
TAU = 0.02  # s per step, Euler integration
X_THRESHOLD = 2.4  # m
THETA_THRESHOLD = 12 * 2 * math.pi / 360  # rad (12 degrees)
START_BOUND = 0.05  # every state variable starts uniform in [-0.05, 0.05]


class CartPole(Task):
    """``B`` copies of CartPole-v1 stepped together on ``device``.

    State ``[x (m), x_dot (m/s), theta (rad), theta_dot (rad/s)]`` is kept in float64 so trajectories match
    gymnasium's NumPy implementation; observations are returned as float32. Action: ``[B]`` with 0 = push
    left, 1 = push right. Reward 1.0 every step, including the one that terminates. ``truncated`` follows
    gymnasium's ``TimeLimit``: it is set when a copy reaches ``max_episode_steps``, even if it also terminated.
    Solved (the NaRLA paper's criterion): mean return of the last 100 episodes >= 300.
    """

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", max_episode_steps: int = 500) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.num_envs = num_envs
        self.obs_dim = 4
        self.action_space = gym.spaces.Discrete(2)
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        self.solve = SolveCriterion(window=100, threshold=300.0)
        self.generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, 4, dtype=torch.float64, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    def _sample_start(self) -> torch.Tensor:
        """Fresh start states ``[B, 4]`` (float64), uniform in ``[-0.05, 0.05]``."""
        u = torch.rand(self.num_envs, 4, generator=self.generator, dtype=torch.float64, device=self.device)
        return (2.0 * u - 1.0) * START_BOUND

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start every copy anew. Returns obs ``[B, 4]`` float32.

        ``seed`` reseeds the task's generator; without one the generator's stream goes on (as in gymnasium),
        so a run seeded once stays reproducible.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = self._sample_start()
        self.elapsed.zero_()
        return self.state.to(torch.float32)

    def set_state(self, state: torch.Tensor) -> None:
        """Overwrite the physical state ``[B, 4]``; step counters are left as they are."""
        if state.shape != (self.num_envs, 4):
            raise ValueError(f"state must have shape [{self.num_envs}, 4], got {list(state.shape)}")
        self.state = state.to(device=self.device, dtype=torch.float64).clone()

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every copy by ``TAU`` seconds; finished copies restart in the same call.

        Args:
            action: ``[B]`` integers in {0, 1}.

        Returns:
            ``(obs [B, 4] float32, reward [B] float32, terminated [B] bool, truncated [B] bool)``.
        """
        x, x_dot, theta, theta_dot = self.state.unbind(dim=1)
        force = torch.where(action.reshape(self.num_envs) == 1, FORCE_MAG, -FORCE_MAG).to(torch.float64)
        cos_t, sin_t = torch.cos(theta), torch.sin(theta)

        temp = (force + POLE_MASS_LENGTH * theta_dot.square() * sin_t) / TOTAL_MASS
        theta_acc = (GRAVITY * sin_t - cos_t * temp) / (
            HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos_t.square() / TOTAL_MASS)
        )
        x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos_t / TOTAL_MASS

        x = x + TAU * x_dot
        x_dot = x_dot + TAU * x_acc
        theta = theta + TAU * theta_dot
        theta_dot = theta_dot + TAU * theta_acc
        state = torch.stack((x, x_dot, theta, theta_dot), dim=1)

        terminated = (x.abs() > X_THRESHOLD) | (theta.abs() > THETA_THRESHOLD)
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        done = terminated | truncated

        self.state = torch.where(done.unsqueeze(1), self._sample_start(), state)
        self.elapsed = torch.where(done, torch.zeros_like(self.elapsed), self.elapsed)
        reward = torch.ones(self.num_envs, dtype=torch.float32, device=self.device)
        return self.state.to(torch.float32), reward, terminated, truncated
