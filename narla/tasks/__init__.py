"""Batched tasks: torch-native CartPole and swing-up, and any gymnasium id through ``gymnasium.vector``."""

from narla.tasks.ant import TaskUnavailable, make_ant
from narla.tasks.base import SolveCriterion, Task
from narla.tasks.cartpole import CartPole
from narla.tasks.gym_vector import GymVectorTask
from narla.tasks.normalize import RunningNormalizer
from narla.tasks.registry import make_task, task_ids
from narla.tasks.swingup import CartPoleSwingUp

__all__ = [
    "CartPole",
    "CartPoleSwingUp",
    "GymVectorTask",
    "RunningNormalizer",
    "SolveCriterion",
    "Task",
    "TaskUnavailable",
    "make_ant",
    "make_task",
    "task_ids",
]
