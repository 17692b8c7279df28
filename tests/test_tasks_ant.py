"""PyBullet Ant through the gymnasium.vector adapter (skipped without pybullet-envs-gymnasium)."""

import pytest
import torch

from narla.tasks import make_ant

pytest.importorskip("pybullet_envs_gymnasium", reason="the Ant task needs pip install 'narla[ant]'")


def test_ant_steps_with_finite_observations():
    task = make_ant(num_envs=2, asynchronous=False)
    obs = task.reset(seed=0)
    actions = torch.Generator().manual_seed(0)
    for _ in range(20):
        obs, reward, _, _ = task.step(torch.rand(2, 8, generator=actions) * 2 - 1)
        assert obs.shape == (2, 28)
        assert torch.isfinite(obs).all() and torch.isfinite(reward).all()
    task.close()
    assert task.action_space.shape == (8,)


def test_ant_runs_in_worker_processes():
    task = make_ant(num_envs=2, asynchronous=True, num_workers=1)
    try:
        obs = task.reset(seed=0)
        obs, reward, _, _ = task.step(torch.zeros(2, 8))
    finally:
        task.close()
    assert obs.shape == (2, 28) and reward.shape == (2,)
