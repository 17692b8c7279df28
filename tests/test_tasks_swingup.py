"""Torch-native cart-pole swing-up against a plain NumPy implementation of the same equations."""

import math

import numpy as np
import pytest
import torch

from narla.tasks import CartPoleSwingUp


def numpy_swingup_step(state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One swing-up step for states [B, 4] and actions [B]; returns (state, obs [B, 5], reward, done)."""
    g, m_c, m_p, length, b, dt = 9.82, 0.5, 0.5, 0.6, 0.1, 0.01
    total = m_c + m_p
    force = 10.0 * np.clip(action, -1.0, 1.0)
    x, x_dot, theta, theta_dot = state.T
    s, c = np.sin(theta), np.cos(theta)
    x_acc = (-2 * m_p * length * theta_dot**2 * s + 3 * m_p * g * s * c + 4 * force - 4 * b * x_dot) / (
        4 * total - 3 * m_p * c**2
    )
    theta_acc = (-3 * m_p * length * theta_dot**2 * s * c + 6 * total * g * s + 6 * (force - b * x_dot) * c) / (
        4 * length * total - 3 * m_p * length * c**2
    )
    x, theta = x + x_dot * dt, theta + theta_dot * dt
    x_dot, theta_dot = x_dot + x_acc * dt, theta_dot + theta_acc * dt
    reward = (np.cos(theta) + 1) / 2 * np.cos(x / 2.4 * np.pi / 2)
    obs = np.stack([x, x_dot, np.cos(theta), np.sin(theta), theta_dot], axis=1)
    return np.stack([x, x_dot, theta, theta_dot], axis=1), obs, reward, np.abs(x) > 2.4


def test_matches_numpy_reference_with_clipped_actions():
    task = CartPoleSwingUp(num_envs=8, start="harder")
    task.reset(seed=0)
    ref_state = task.state.numpy().copy()
    rng = np.random.default_rng(0)
    num_done = 0
    for _ in range(300):
        action = rng.uniform(-3.0, 3.0, size=8)
        obs, reward, terminated, truncated = task.step(torch.tensor(action, dtype=torch.float32).unsqueeze(1))
        ref_state, ref_obs, ref_reward, ref_done = numpy_swingup_step(ref_state, action.astype(np.float32))
        np.testing.assert_array_equal(terminated.numpy(), ref_done)
        assert not truncated.any()
        np.testing.assert_allclose(reward.numpy(), ref_reward, atol=1e-5)
        live = ~ref_done
        np.testing.assert_allclose(obs.numpy()[live], ref_obs[live], atol=1e-5, rtol=1e-5)
        ref_state[ref_done] = task.state.numpy()[ref_done]
        num_done += int(ref_done.sum())
    assert num_done > 0


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ([0.0, 0.0, 0.0, 0.0], 1.0),
        ([0.0, 0.0, math.pi, 0.0], 0.0),
        ([1.2, 0.0, math.pi / 2, 0.0], 0.5 * math.cos(math.pi / 4)),
    ],
)
def test_reward_at_hand_made_states(state, expected):
    task = CartPoleSwingUp(num_envs=1)
    task.reset(seed=0)
    task.set_state(torch.tensor([state], dtype=torch.float64))
    _, reward, _, _ = task.step(torch.zeros(1, 1))
    assert reward.item() == pytest.approx(expected, abs=1e-6)


def test_simple_start_is_normal_around_hanging_down():
    task = CartPoleSwingUp(num_envs=20_000, start="simple")
    task.reset(seed=0)
    mean = torch.tensor([0.0, 0.0, math.pi, 0.0], dtype=torch.float64)
    torch.testing.assert_close(task.state.mean(dim=0), mean, atol=0.01, rtol=0.0)
    torch.testing.assert_close(task.state.std(dim=0), torch.full((4,), 0.2, dtype=torch.float64), atol=0.01, rtol=0.0)


def test_harder_start_is_uniform_in_its_ranges():
    task = CartPoleSwingUp(num_envs=20_000, start="harder")
    task.reset(seed=0)
    low = torch.tensor([-2.4, -10.0, math.pi / 2, -10.0], dtype=torch.float64)
    high = torch.tensor([2.4, 10.0, 3 * math.pi / 2, 10.0], dtype=torch.float64)
    state = task.state
    assert (state >= low).all() and (state <= high).all()
    spread = 0.02 * (high - low)
    assert (state.min(dim=0).values < low + spread).all()
    assert (state.max(dim=0).values > high - spread).all()


def test_terminates_when_cart_leaves_track():
    task = CartPoleSwingUp(num_envs=3)
    task.reset(seed=0)
    task.set_state(torch.tensor([[2.39, 5.0, math.pi, 0.0], [-2.39, -5.0, math.pi, 0.0], [2.0, 0.0, math.pi, 0.0]]))
    obs, _, terminated, truncated = task.step(torch.zeros(3, 1))
    assert terminated.tolist() == [True, True, False]
    assert not truncated.any()
    assert (obs[:2, 0].abs() < 1.5).all()
    assert obs[2, 0] == pytest.approx(2.0)


def test_truncates_at_max_episode_steps():
    task = CartPoleSwingUp(num_envs=2, max_episode_steps=5)
    task.reset(seed=0)
    flags = [task.step(torch.zeros(2, 1))[3].tolist() for _ in range(10)]
    assert flags == [[t % 5 == 4] * 2 for t in range(10)]


def test_unknown_start_is_rejected():
    with pytest.raises(ValueError, match="start.*simple.*harder"):
        CartPoleSwingUp(num_envs=1, start="sideways")


@pytest.mark.parametrize("start", ["simple", "harder"])
def test_the_numpy_step_on_the_cpu_gives_torchs_bits(monkeypatch, start):
    runs = {}
    for on_numpy in (True, False):
        monkeypatch.setattr(CartPoleSwingUp, "numpy_on_cpu", on_numpy)
        task = CartPoleSwingUp(num_envs=32, start=start, max_episode_steps=40)
        task.reset(seed=3)
        actions = torch.Generator().manual_seed(5)
        steps = []
        for _ in range(120):  # through terminations, truncations and restarts
            step = task.step(torch.rand(32, 1, generator=actions) * 2.4 - 1.2)  # some actions past [-1, 1]
            steps.append((*step, task.final_observation(), task.elapsed.clone()))
        runs[on_numpy] = (steps, task.state)
    (numpy_steps, numpy_state), (torch_steps, torch_state) = runs[True], runs[False]
    assert any(bool(step[3].any()) for step in torch_steps)
    assert start == "simple" or any(bool(step[2].any()) for step in torch_steps)
    for a, b in zip(numpy_steps, torch_steps, strict=True):
        assert all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b, strict=True))
    assert torch.equal(numpy_state, torch_state)
