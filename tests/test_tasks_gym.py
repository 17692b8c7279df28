"""The gymnasium.vector adapter, the running normalizer and the task registry."""

import numpy as np
import pytest
import torch

import narla.tasks.ant
from narla.tasks import CartPole, CartPoleSwingUp, GymVectorTask, RunningNormalizer, TaskUnavailable, make_task


def test_gym_cartpole_steps_and_autoresets():
    task = GymVectorTask("CartPole-v1", num_envs=3)
    obs = task.reset(seed=0)
    assert obs.shape == (3, 4) and obs.dtype == torch.float32
    num_terminated = 0
    for _ in range(40):
        obs, reward, terminated, truncated = task.step(torch.ones(3, dtype=torch.int64))
        assert obs.shape == (3, 4) and reward.shape == (3,)
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert (obs[terminated].abs() <= 0.05).all()
        num_terminated += int(terminated.sum())
    task.close()
    assert task.max_episode_steps == 500
    assert num_terminated >= 3


def test_normalizer_matches_numpy_statistics():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 5)) for n in (1, 7, 3, 50)]
    normalizer = RunningNormalizer(5)
    for batch in batches:
        normalizer.update(torch.tensor(batch))
    data = np.concatenate(batches)
    np.testing.assert_allclose(normalizer.mean.numpy(), data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(normalizer.var.numpy(), data.var(axis=0), rtol=1e-12)
    assert normalizer.count.item() == len(data)


def test_gym_task_normalizer_sees_every_observation_while_training():
    raw = GymVectorTask("CartPole-v1", num_envs=3)
    normed = GymVectorTask("CartPole-v1", num_envs=3, normalize_obs=True)
    seen = [raw.reset(seed=1)]
    normed.reset(seed=1)
    for t in range(30):
        action = torch.tensor([t % 2, 1, 0])
        seen.append(raw.step(action)[0])
        normed.step(action)
    data = torch.cat(seen).double().numpy()
    np.testing.assert_allclose(normed.normalizer.mean.numpy(), data.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(normed.normalizer.var.numpy(), data.var(axis=0), atol=1e-6)

    normed.training = False
    frozen = normed.normalizer.state_dict()
    obs, *_ = normed.step(torch.tensor([0, 0, 0]))
    assert all(torch.equal(frozen[k], v) for k, v in normed.normalizer.state_dict().items())
    assert obs.abs().max() <= normed.normalizer.clip


def test_normalizer_state_dict_round_trip():
    normalizer = RunningNormalizer(4, clip=5.0)
    normalizer.update(torch.randn(20, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1)
    restored = RunningNormalizer(4, clip=5.0)
    restored.load_state_dict(normalizer.state_dict())
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)) * 10
    assert torch.equal(restored.normalize(x), normalizer.normalize(x))
    assert restored.normalize(x).abs().max() <= 5.0


def test_unknown_gym_id_is_rejected():
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        GymVectorTask("NoSuchEnv-v0", num_envs=2)


def test_make_task_builds_each_kind():
    assert isinstance(make_task("cartpole", 2, max_episode_steps=50), CartPole)
    swingup = make_task("swingup", 2, start="harder")
    assert isinstance(swingup, CartPoleSwingUp) and swingup.start == "harder"
    task = make_task("gym:Acrobot-v1", 2, normalize_obs=True)
    assert isinstance(task, GymVectorTask) and task.obs_dim == 6
    task.close()


def test_make_task_rejects_unknown_id():
    with pytest.raises(ValueError, match="'pendulum'.*cartpole.*swingup.*ant.*gym:"):
        make_task("pendulum", 2)


def test_make_task_rejects_unknown_option():
    with pytest.raises(ValueError, match="'gravity'.*'cartpole'"):
        make_task("cartpole", 2, gravity=1.0)


def test_make_ant_without_pybullet_says_how_to_install(monkeypatch):
    real_find_spec = narla.tasks.ant.importlib.util.find_spec

    def find_spec(name, *args):
        return None if name.startswith("pybullet") else real_find_spec(name, *args)

    monkeypatch.setattr(narla.tasks.ant.importlib.util, "find_spec", find_spec)
    with pytest.raises(TaskUnavailable, match=r"pip install 'narla\[ant\]'"):
        make_task("ant", 2)


def test_torch_native_tasks_normalize_observations_on_request_and_freeze_them_for_replay():
    from narla.tasks.normalize import NormalizedTask

    task = make_task("swingup", 8, normalize_obs=True, start="harder")
    assert isinstance(task, NormalizedTask) and task.obs_dim == 5
    raw = make_task("swingup", 8, start="harder")
    obs, expected = task.reset(seed=3), raw.reset(seed=3)
    stats = RunningNormalizer(5)
    stats.update(expected)
    torch.testing.assert_close(obs, stats.normalize(expected))
    task.training = False
    count = task.normalizer.count.clone()
    task.step(torch.zeros(8, 1))
    assert torch.equal(task.normalizer.count, count)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_copies_split_over_worker_processes_step_exactly_as_in_one_process(workers):
    """Sharding changes where copies run, not what they do: same seeds, same auto-resets, same numbers."""
    options = {"env_kwargs": {"max_episode_steps": 30}}
    local = make_task("gym:Pendulum-v1", 5, **options)
    sharded = make_task("gym:Pendulum-v1", 5, asynchronous=True, num_workers=workers, **options)
    try:
        torch.testing.assert_close(sharded.reset(seed=4), local.reset(seed=4), rtol=0, atol=0)
        actions = torch.Generator().manual_seed(0)
        for _ in range(35):  # past the time limit: every copy restarts once
            action = torch.rand(5, 1, generator=actions) * 4 - 2
            for got, want in zip(sharded.step(action), local.step(action), strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=0)
    finally:
        sharded.close()
        local.close()


def test_a_failing_worker_is_reported_not_hung():
    task = make_task("gym:Pendulum-v1", 2, asynchronous=True, num_workers=2)
    try:
        task.reset(seed=0)
        with pytest.raises(RuntimeError, match="an environment worker failed"):
            task.env.step(np.array([[None], [None]]))  # an action Pendulum cannot clip fails inside the workers
    finally:
        task.close()
