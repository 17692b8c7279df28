"""A multi-agent library nobody here wrote trains on narla's Parallel view: SuperSuit turns the neurons into a
vector of single-agent environments and Stable-Baselines3's PPO trains one policy shared by all of them."""

import pytest
import torch

from narla.envs import parallel_env


def test_stable_baselines3_ppo_trains_a_shared_policy_over_narlas_neurons_through_supersuit():
    ss = pytest.importorskip("supersuit")
    sb3 = pytest.importorskip("stable_baselines3")

    env = parallel_env("scenarios/cartpole_2layer.yaml")  # 15 hidden neurons + the motor neuron
    env = ss.pad_observations_v0(env)  # one observation space for all (hidden neurons read 4 inputs, motor 15)
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    vec = ss.concat_vec_envs_v1(vec, 1, num_cpus=0, base_class="stable_baselines3")
    assert vec.num_envs == 16  # one single-agent environment per neuron
    model = sb3.PPO("MlpPolicy", vec, n_steps=32, batch_size=128, n_epochs=2, verbose=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=2 * 32 * 16)  # two PPO iterations
    assert model.num_timesteps == 2 * 32 * 16
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    vec.close()
