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


def test_the_progress_bonus_adds_its_weight_times_the_environments_progress_term_to_the_reward():
    task = make_ant(num_envs=1, asynchronous=False, normalize_obs=False, progress_bonus=3.0)
    try:
        task.reset(seed=0)
        env = task.env.envs[0].unwrapped
        actions = torch.Generator().manual_seed(1)
        for _ in range(5):
            _, reward, _, _ = task.step(torch.rand(1, 8, generator=actions) * 2 - 1)
            assert float(reward[0]) == pytest.approx(sum(env.rewards) + 3.0 * env.rewards[1], abs=1e-5)
    finally:
        task.close()


def test_a_progress_bonus_that_is_not_a_non_negative_number_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="task.options.progress_bonus: must be a number >= 0"):
        make_ant(num_envs=1, asynchronous=False, progress_bonus=-1.0)


def test_replays_score_the_task_reward_without_the_training_bonus():
    from narla.evaluate import in_process_options

    options = in_process_options("ant", {"num_workers": 2, "asynchronous": True, "progress_bonus": 5.0})
    assert options == {"asynchronous": False}
