"""Build any task by its id: ``make_task("cartpole", 64)``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from narla.tasks.ant import make_ant
from narla.tasks.base import Task
from narla.tasks.cartpole import CartPole
from narla.tasks.gym_vector import GymVectorTask
from narla.tasks.normalize import NormalizedTask
from narla.tasks.swingup import CartPoleSwingUp

GYM_PREFIX = "gym:"

# task id -> (constructor taking (num_envs, device, **options), the options it accepts)
_TASKS: dict[str, tuple[Callable[..., Task], tuple[str, ...]]] = {
    "cartpole": (CartPole, ("max_episode_steps", "normalize_obs")),
    "swingup": (CartPoleSwingUp, ("start", "max_episode_steps", "normalize_obs")),
    "ant": (make_ant, ("asynchronous", "normalize_obs", "num_workers", "max_episode_steps", "progress_bonus")),
}
_GYM_OPTIONS = ("asynchronous", "num_workers", "normalize_obs", "env_kwargs")


def task_ids() -> list[str]:
    """The task ids ``make_task`` accepts; ``"gym:<GymnasiumId>"`` stands for any gymnasium id."""
    return [*_TASKS, GYM_PREFIX + "<GymnasiumId>"]


def make_task(task_id: str, num_envs: int, device: str | torch.device = "cpu", **options) -> Task:
    """Build ``num_envs`` copies of task ``task_id`` on ``device``.

    Ids: ``"cartpole"`` (:class:`CartPole`), ``"swingup"`` (:class:`CartPoleSwingUp`), ``"ant"``
    (:func:`make_ant`) and ``"gym:<GymnasiumId>"`` (:class:`GymVectorTask`, e.g. ``"gym:Acrobot-v1"``).
    ``options`` are passed to the constructor; for the torch-native tasks ``normalize_obs: true`` wraps the task in
    a :class:`~narla.tasks.normalize.NormalizedTask` (running observation normalisation, as Ant has by default).

    Raises:
        ValueError: unknown ``task_id``, or an option that task does not accept.
    """
    if task_id.startswith(GYM_PREFIX):
        build, allowed = GymVectorTask, _GYM_OPTIONS
        env_id = task_id[len(GYM_PREFIX) :]
        if not env_id:
            raise ValueError(f"task id {task_id!r} names no gymnasium id; write e.g. 'gym:CartPole-v1'")
        args: tuple = (env_id, num_envs)
    elif task_id in _TASKS:
        build, allowed = _TASKS[task_id]
        args = (num_envs,)
    else:
        raise ValueError(f"unknown task id {task_id!r}; allowed: {', '.join(task_ids())}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for task {task_id!r}; allowed: {', '.join(allowed)}"
        )
    if task_id in ("cartpole", "swingup") and options.pop("normalize_obs", False):
        return NormalizedTask(build(*args, device=device, **options))
    return build(*args, device=device, **options)
