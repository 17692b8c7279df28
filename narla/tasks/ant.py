"""PyBullet Ant (``AntBulletEnv-v0`` from ``pybullet-envs-gymnasium``) as a batched task."""

from __future__ import annotations

import importlib.util

import torch

from narla.tasks.gym_vector import GymVectorTask

ANT_ENV_ID = "pybullet_envs_gymnasium:AntBulletEnv-v0"


class TaskUnavailable(RuntimeError):
    """A task's optional dependencies are not installed."""


def make_ant(
    num_envs: int,
    device: str | torch.device = "cpu",
    asynchronous: bool = True,
    normalize_obs: bool = True,
    num_workers: int | None = None,
    max_episode_steps: int | None = None,
) -> GymVectorTask:
    """``B`` copies of PyBullet Ant: observation ``[B, 28]``, action ``Box(-1, 1, (8,))``, 1,000 steps per episode.

    By default the copies are split over worker processes (``num_workers``, default one per CPU core, each
    stepping its share of the copies) and observations are normalized with running statistics (see
    :class:`GymVectorTask`);
    ``max_episode_steps`` shortens (or lengthens) the 1,000-step episodes.

    Raises:
        TaskUnavailable: ``pybullet`` or ``pybullet_envs_gymnasium`` is not installed.
    """
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
    )
