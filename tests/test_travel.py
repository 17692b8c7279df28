"""TravelTask: how far a PyBullet walker's torso moves along x in each episode."""

import importlib.util

import pytest
import torch

from narla.tasks.registry import make_task
from narla.tasks.travel import TravelTask

needs_ant = pytest.mark.skipif(
    importlib.util.find_spec("pybullet_envs_gymnasium") is None, reason="needs the [ant] extra (pybullet)"
)


@needs_ant
def test_travel_is_the_torsos_displacement_along_x_measured_before_the_copy_is_reset():
    from narla.tasks.ant import make_ant

    task = TravelTask(make_ant(2, asynchronous=False, normalize_obs=False, max_episode_steps=20))
    try:
        task.reset(seed=0)
        torso = task.logs[1].env.unwrapped.robot.robot_body
        x, y, z = torso.get_position()
        torso.reset_position([x + 2.0, y, z])  # carry copy 1 two metres forward
        for _ in range(20):
            task.step(torch.zeros(2, 8))
        first, carried = task.distances()
    finally:
        task.close()
    assert abs(first) < 0.2 and abs(carried - 2.0) < 0.2


@needs_ant
def test_travel_reports_one_distance_per_copy_and_task_reset_in_the_order_episodes_are_counted():
    from narla.tasks.ant import make_ant

    task = TravelTask(make_ant(3, asynchronous=False, normalize_obs=False, max_episode_steps=5))
    try:
        for _ in range(2):
            task.reset()
            for _ in range(12):  # past each copy's end: its next episode is not counted
                task.step(torch.zeros(3, 8))
        assert len(task.distances()) == 6
    finally:
        task.close()


def test_travel_refuses_a_task_whose_copies_are_not_gymnasium_environments_in_this_process():
    with pytest.raises(ValueError, match="distance: needs a PyBullet walker"):
        TravelTask(make_task("cartpole", 2))


def test_travel_refuses_an_environment_without_a_walkers_torso():
    task = make_task("gym:CartPole-v1", 2)
    try:
        with pytest.raises(ValueError, match="is not a PyBullet walker"):
            TravelTask(task)
    finally:
        task.close()
