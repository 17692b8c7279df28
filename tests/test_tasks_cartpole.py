"""Torch-native CartPole against gymnasium's CartPole-v1."""

import gymnasium as gym
import numpy as np
import torch

from narla.tasks import CartPole


def test_trajectory_matches_gymnasium_cartpole():
    task = CartPole(num_envs=1)
    task.reset(seed=0)
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = task.state[0].numpy().copy()
    rng = np.random.default_rng(0)
    num_terminations = 0
    for _ in range(200):
        action = int(rng.integers(2))
        obs, reward, terminated, truncated = task.step(torch.tensor([action]))
        ref_obs, ref_reward, ref_terminated, ref_truncated, _ = env.step(action)
        assert reward[0] == ref_reward == 1.0
        assert bool(terminated[0]) == ref_terminated
        assert bool(truncated[0]) == ref_truncated
        if ref_terminated or ref_truncated:
            num_terminations += 1
            env.reset()
            env.unwrapped.state = task.state[0].numpy().copy()
        else:
            np.testing.assert_allclose(obs[0].numpy(), ref_obs, atol=1e-5)
    assert num_terminations > 3


def test_finished_copy_restarts_and_others_continue():
    start = torch.tensor([[2.39, 5.0, 0.0, 0.0], [0.01, 0.0, 0.02, 0.0], [-0.02, 0.1, -0.01, 0.0]])
    task = CartPole(num_envs=3)
    task.reset(seed=1)
    task.set_state(start)
    rest = CartPole(num_envs=2)
    rest.reset(seed=2)
    rest.set_state(start[1:])
    action = torch.tensor([1, 0, 1])

    obs, reward, terminated, truncated = task.step(action)
    rest_obs, *_ = rest.step(action[1:])

    assert terminated.tolist() == [True, False, False]
    assert not truncated.any()
    assert torch.equal(reward, torch.ones(3))
    assert obs[0].abs().max() <= 0.05
    torch.testing.assert_close(obs[1:], rest_obs)


def test_truncates_at_max_episode_steps():
    task = CartPole(num_envs=2, max_episode_steps=10)
    task.reset(seed=3)
    for t in range(1, 21):
        action = torch.tensor([t % 2, (t + 1) % 2])
        _, _, terminated, truncated = task.step(action)
        assert not terminated.any()
        assert truncated.tolist() == [t % 10 == 0] * 2


def test_same_seed_gives_same_trajectory():
    def rollout(seed: int) -> torch.Tensor:
        task = CartPole(num_envs=4)
        observations = [task.reset(seed=seed)]
        actions = torch.Generator().manual_seed(0)
        for _ in range(100):
            observations.append(task.step(torch.randint(0, 2, (4,), generator=actions))[0])
        return torch.stack(observations)

    assert torch.equal(rollout(5), rollout(5))
    assert not torch.equal(rollout(5), rollout(6))


def test_batch_equals_single_runs():
    num_envs = 4
    batch = CartPole(num_envs)
    batch.reset(seed=7)
    start = batch.state.clone()
    singles = [CartPole(1) for _ in range(num_envs)]
    for i, single in enumerate(singles):
        single.reset(seed=100 + i)
        single.set_state(start[i : i + 1])
    actions = torch.randint(0, 2, (60, num_envs), generator=torch.Generator().manual_seed(1))
    alive = [True] * num_envs
    for action in actions:
        obs, reward, terminated, truncated = batch.step(action)
        for i, single in enumerate(singles):
            single_obs, single_reward, single_terminated, single_truncated = single.step(action[i : i + 1])
            if not alive[i]:
                continue
            assert bool(terminated[i]) == bool(single_terminated[0])
            assert bool(truncated[i]) == bool(single_truncated[0])
            assert reward[i] == single_reward[0]
            if terminated[i] or truncated[i]:
                alive[i] = False
            else:
                torch.testing.assert_close(obs[i], single_obs[0], rtol=0.0, atol=1e-6)
    assert not any(alive)


def test_unseeded_reset_continues_the_seeded_random_stream():
    a, b = CartPole(3), CartPole(3)
    a.reset(seed=7)
    b.reset(seed=7)
    assert torch.equal(a.reset(), b.reset())


def test_sample_starts_draws_what_k_calls_of_sample_start_would():
    from narla.tasks.cartpole import CartPole

    a, b = CartPole(3), CartPole(3)
    a.generator.manual_seed(7)
    b.generator.manual_seed(7)
    assert torch.equal(a.sample_starts(5), torch.stack([b._sample_start() for _ in range(5)]))


def test_the_numpy_step_on_the_cpu_gives_torchs_bits_and_final_observations(monkeypatch):
    tasks = {}
    for on_numpy in (True, False):
        monkeypatch.setattr(CartPole, "numpy_on_cpu", on_numpy)
        task = CartPole(num_envs=32, max_episode_steps=40)
        task.reset(seed=3)
        actions = torch.Generator().manual_seed(5)
        steps = []
        for _ in range(120):  # through terminations, truncations and restarts
            step = task.step(torch.randint(0, 2, (32,), generator=actions))
            steps.append((*step, task.final_observation(), task.elapsed.clone()))
        tasks[on_numpy] = (steps, task.state)
    (numpy_steps, numpy_state), (torch_steps, torch_state) = tasks[True], tasks[False]
    assert any(bool(step[2].any()) for step in torch_steps) and any(bool(step[3].any()) for step in torch_steps)
    for a, b in zip(numpy_steps, torch_steps, strict=True):
        assert all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b, strict=True))
    assert torch.equal(numpy_state, torch_state)
