"""PyBullet Ant (``AntBulletEnv-v0`` from ``pybullet-envs-gymnasium``) as a batched task."""

from __future__ import annotations

import functools
import importlib.util

import gymnasium as gym
import torch

from narla.tasks.gym_vector import GymVectorTask

ANT_ENV_ID = "pybullet_envs_gymnasium:AntBulletEnv-v0"


class TaskUnavailable(RuntimeError):
    """A task's optional dependencies are not installed."""


class ProgressBonus(gym.Wrapper):
    """A shaped training reward: the environment's reward plus ``weight`` times its progress term.

    ``AntBulletEnv``'s reward sums an alive bonus (1 per tick upright), progress (the change of the distance to a
    target 1 km ahead along x, per 0.0165 s control step: about 60 per metre), and energy, joint-limit and foot
    collision costs. Standing still earns about 980 in 1,000 ticks, so a search on that reward from a slow, costly
    gait settles into a stance; weighting progress makes walking pay. Replays and tests score the environment's
    own reward (:func:`narla.evaluate.in_process_options` drops the option).
    """

    def __init__(self, env: gym.Env, weight: float) -> None:
        super().__init__(env)
        self.weight = weight

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        progress = float(self.env.unwrapped.rewards[1])
        return obs, reward + self.weight * progress, terminated, truncated, info


def make_ant(
    num_envs: int,
    device: str | torch.device = "cpu",
    asynchronous: bool = True,
    normalize_obs: bool = True,
    num_workers: int | None = None,
    max_episode_steps: int | None = None,
    progress_bonus: float = 0.0,
) -> GymVectorTask:
    """``B`` copies of PyBullet Ant: observation ``[B, 28]``, action ``Box(-1, 1, (8,))``, 1,000 steps per episode.

    By default the copies are split over worker processes (``num_workers``, default one per CPU core, each
    stepping its share of the copies) and observations are normalized with running statistics (see
    :class:`GymVectorTask`);
    ``max_episode_steps`` shortens (or lengthens) the 1,000-step episodes; ``progress_bonus`` w > 0 trains on the
    shaped reward of :class:`ProgressBonus` (the reward plus w times its progress term).

    Raises:
        TaskUnavailable: ``pybullet`` or ``pybullet_envs_gymnasium`` is not installed.
    """
    if isinstance(progress_bonus, bool) or not (isinstance(progress_bonus, int | float) and progress_bonus >= 0):
        raise ValueError(f"task.options.progress_bonus: must be a number >= 0, got {progress_bonus!r}")
    missing = [name for name in ("pybullet", "pybullet_envs_gymnasium") if importlib.util.find_spec(name) is None]
    if missing:
        raise TaskUnavailable(
            f"the 'ant' task needs {' and '.join(missing)}; install them with: pip install 'narla[ant]'"
        )
    return GymVectorTask(
        ANT_ENV_ID,
        num_envs,
        device=device,
        asynchronous=asynchronous,
        num_workers=num_workers,
        normalize_obs=normalize_obs,
        env_kwargs={} if max_episode_steps is None else {"max_episode_steps": max_episode_steps},
        wrapper=functools.partial(ProgressBonus, weight=float(progress_bonus)) if progress_bonus else None,
    )
