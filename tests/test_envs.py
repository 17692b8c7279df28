"""PettingZoo views: API conformance, seeding, and equivalence with the engine's batched rollout."""

from __future__ import annotations

import importlib.util
import types
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test, seed_test

from narla.engine import log_prob
from narla.envs import NeuronAECEnv, NeuronParallelEnv, aec_env, parallel_env
from narla.graph import neurons
from narla.rollout import collect
from narla.scenario import ScenarioError, from_dict, load
from narla.training import build

BIO = ["activity", "sparsity", "prediction", "trace", "relay"]
# NaRLA's 3-layer CartPole network; biological rewards for the first episode, then all (Bio -> All).
CARTPOLE_BIO = {
    "name": "envs_cartpole_bio",
    "seed": 3,
    "task": {"id": "cartpole"},
    "network": {"builder": "layered", "layers": 3, "width": 15, "connectivity": "local"},
    "neuron": {"hidden": [32, 32]},
    "rewards": {"terms": ["task", *BIO], "phases": [{"until_episode": 1, "terms": BIO}, {"terms": "all"}]},
}
# Two-point neurons with context edges (cooperation AMTF) on a small-world graph, plus the previous task
# action as universal context.
CARTPOLE_CONTEXT = {
    "name": "envs_cartpole_context",
    "seed": 11,
    "task": {"id": "cartpole"},
    "network": {"builder": "small_world", "n_neurons": 13, "layers": 3, "k": 3, "p": 0.2},
    "neuron": {"hidden": [16], "amtf": "cooperation"},
    "context": {"universal_action": True},
    "rewards": {"terms": ["task", "activity", {"name": "sparsity", "params": {"scope": "neighbourhood"}}, "trace"]},
}

# Rate neurons: spiking hidden neurons and a rate motor neuron whose value is the swing-up force, with context
# edges; trained by a policy-gradient rule (Gaussian rate values) or by ES (deterministic values in [-1, 1]).
SWINGUP_RATE = {
    "name": "envs_swingup_rate",
    "seed": 5,
    "task": {"id": "swingup", "max_episode_steps": 40},
    "network": {"builder": "small_world", "n_neurons": 9, "layers": 3, "k": 3, "p": 0.2},
    "neuron": {"hidden": [8], "amtf": "cooperation", "output": {"hidden": "spike", "motor": "rate"}},
    "readout": {"kind": "value"},
    "rewards": ["task", "activity"],
}
SWINGUP_ALL_RATE_ES = dict(
    SWINGUP_RATE, name="envs_swingup_all_rate_es", neuron={"hidden": [], "output": "rate"},
    network={"builder": "layered", "layers": 3, "width": 4, "connectivity": "full"},
    task={"id": "swingup", "num_envs": 4, "max_episode_steps": 40}, learning={"rule": "cma_es", "population": 2},
)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PettingZoo tests warn about style (inf bounds, padding zeros)
        return fn(*args, **kwargs)


# -- PettingZoo's own tests ----------------------------------------------------------------------------


def test_aec_view_passes_the_pettingzoo_api_test():
    _quiet(api_test, aec_env(CARTPOLE_BIO), num_cycles=200)


def test_parallel_view_passes_the_pettingzoo_parallel_api_test():
    _quiet(parallel_api_test, parallel_env(CARTPOLE_BIO), num_cycles=200)


def test_aec_view_passes_the_pettingzoo_seed_test():
    _quiet(seed_test, lambda: aec_env(CARTPOLE_BIO), num_cycles=50)


def test_parallel_view_passes_the_pettingzoo_parallel_seed_test():
    _quiet(parallel_seed_test, lambda: parallel_env(CARTPOLE_BIO), num_cycles=50)


@pytest.mark.parametrize("scenario", [SWINGUP_RATE, SWINGUP_ALL_RATE_ES], ids=["gaussian_rate", "es_rate"])
def test_views_of_rate_networks_pass_the_pettingzoo_api_tests(scenario):
    _quiet(api_test, aec_env(scenario), num_cycles=60)
    _quiet(parallel_api_test, parallel_env(scenario), num_cycles=60)


def test_rate_neurons_act_in_box_spaces_bounded_only_when_deterministic():
    gaussian, es = parallel_env(SWINGUP_RATE), parallel_env(SWINGUP_ALL_RATE_ES)
    motor = gaussian.possible_agents[int(gaussian.core.wiring.motor_idx[0])]
    assert gaussian.action_space(motor) == spaces.Box(-np.inf, np.inf, (1,), np.float32)
    assert gaussian.action_space(gaussian.possible_agents[0]) == spaces.Discrete(2)
    for agent in es.possible_agents:
        assert es.action_space(agent) == spaces.Box(-1.0, 1.0, (1,), np.float32)
    hidden = es.observation_space(es.possible_agents[-2])  # reads the four rate neurons of the layer before
    assert (hidden.low[:4] == -1).all() and (hidden.high[:4] == 1).all()


def test_views_pass_the_pettingzoo_max_cycles_test():
    module = types.SimpleNamespace(
        env=lambda max_cycles: aec_env(CARTPOLE_BIO, max_cycles=max_cycles),
        parallel_env=lambda max_cycles: parallel_env(CARTPOLE_BIO, max_cycles=max_cycles),
    )
    _quiet(max_cycles_test, module)


# -- spaces, infos, rendering, errors ------------------------------------------------------------------


def test_agents_are_graph_nodes_with_spaces_declared_up_front():
    env = aec_env(CARTPOLE_CONTEXT)
    wiring = env.core.wiring
    assert env.possible_agents == [str(n) for n in wiring.neuron_names]
    assert set(env.possible_agents) == {str(n) for n in neurons(build(from_dict(CARTPOLE_CONTEXT)).graph)}
    fan, ctx = wiring.ff_idx.shape[1], wiring.ctx_idx.shape[1]
    assert ctx > 0
    for i, agent in enumerate(env.possible_agents):
        has_context = bool(wiring.ctx_mask[i].sum() > 0)
        # feedforward inputs, graph context (where the neuron has it), the previous task action (one-hot, 2)
        assert env.observation_space(agent).shape == (fan + (ctx if has_context else 0) + 2,)
        assert env.observation_space(agent).dtype == np.float32
        assert env.action_space(agent) == spaces.Discrete(2)
    motor = env.possible_agents[int(wiring.motor_idx[0])]
    assert env.action_space(motor) == env.core.task.action_space  # the task's own Discrete(2)


def test_a_categorical_motor_neuron_acts_in_the_task_action_space():
    network = {"builder": "layered", "layers": 2, "width": 4}
    scenario = dict(CARTPOLE_BIO, task={"id": "gym:Acrobot-v1"}, network=network)
    env = parallel_env(scenario)
    assert env.action_space("motor_0") == spaces.Discrete(3)
    assert env.action_space("n1_0") == spaces.Discrete(2)
    observations, _ = env.reset(seed=0)
    observations, rewards, *_ = env.step({agent: 2 if agent == "motor_0" else 1 for agent in env.agents})
    assert set(rewards) == set(env.possible_agents)
    env.close()


def test_infos_carry_reward_components_that_sum_to_the_reward():
    env = parallel_env(dict(CARTPOLE_BIO, rewards=["task", "activity", "sparsity", "prediction", "trace"]))
    env.reset(seed=1)
    _, rewards, _, _, infos = env.step({agent: 1 for agent in env.agents})
    for agent, info in infos.items():
        parts = info["reward_components"]
        assert list(parts) == ["task", "activity", "sparsity", "prediction", "trace"]
        assert info["task_reward"] == 1.0 and parts["task"] == 1.0
        assert sum(parts.values()) == pytest.approx(rewards[agent], abs=1e-6)


def test_aec_rewards_arrive_after_the_last_agent_of_a_tick():
    env = aec_env(dict(CARTPOLE_BIO, rewards=["activity"]))
    env.reset(seed=0)
    for agent in env.possible_agents[:-1]:
        env.step(1)
        assert env.rewards[agent] == 0.0 and env._cumulative_rewards[agent] == 0.0
    env.step(1)  # the motor neuron closes the tick: every neuron fired, activity gives +1 each
    assert all(r == 1.0 for r in env.rewards.values())
    assert env.last()[1] == 1.0 and env.agent_selection == env.possible_agents[0]


def test_ansi_render_draws_the_network_activity():
    env = aec_env(CARTPOLE_BIO, render_mode="ansi")
    env.reset(seed=0)
    for _ in range(5):
        env.step(1)
    text = env.render()
    assert "tick 0" in text and "sensors" in text
    assert "L1  hidden #####??????????  5/15 firing" in text
    assert "L3  motor  ?  0/1 firing" in text
    par = parallel_env(CARTPOLE_BIO, render_mode="ansi")
    par.reset(seed=0)
    par.step({agent: 1 for agent in par.agents})
    text = par.render()  # the last finished tick: the spikes the neurons observe now
    assert "tick 1" in text and "L1  hidden ###############  15/15 firing" in text and "motor_0=1" in text


def test_bad_actions_and_mismatched_engines_are_refused():
    env = parallel_env(CARTPOLE_BIO)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="missing"):
        env.step({})
    with pytest.raises(ValueError, match="action for agent 'n1_0': 2 is not in"):
        env.step({agent: 2 if agent == "n1_0" else 0 for agent in env.agents})
    run = build(from_dict(dict(CARTPOLE_BIO, propagation="delay")))
    with pytest.raises(ValueError, match="propagation: this view plays 'sweep'"):
        NeuronAECEnv.from_run(run)
    assert isinstance(NeuronParallelEnv.from_run(run), NeuronParallelEnv)


# -- equivalence with the engine's batched rollout -----------------------------------------------------


class _SeedOnce:
    """The task, reset under ``seed`` the first time ``collect`` resets it (as ``view.reset(seed=...)`` does)."""

    def __init__(self, task, seed: int) -> None:
        self.task, self.seed = task, seed
        self.num_envs, self.max_episode_steps = task.num_envs, task.max_episode_steps

    def reset(self, seed=None):
        seed, self.seed = self.seed, None
        return self.task.reset(seed=seed)

    def step(self, action):
        return self.task.step(action)


def _drive_aec(env: NeuronAECEnv) -> dict:
    """One episode with the network's own policies, after ``reset``; per-tick records."""
    first, last = env.possible_agents[0], env.possible_agents[-1]
    rec = {"task_obs": [], "obs": [], "actions": [], "rewards": [], "components": [], "term": [], "trunc": []}
    for agent in env.agent_iter():
        obs, _, terminated, truncated, _ = env.last()
        if terminated or truncated:
            env.step(None)
            continue
        if agent == first:
            rec["task_obs"].append(env.task_observation.copy())
            rec["obs"].append({})
            rec["actions"].append([])
        rec["obs"][-1][agent] = obs
        action = env.policy_action()
        rec["actions"][-1].append(action)
        env.step(action)
        if agent == last:
            rec["rewards"].append([env.rewards[a] for a in env.possible_agents])
            rec["components"].append([env.infos[a]["reward_components"] for a in env.possible_agents])
            rec["term"].append(env.terminations[first])
            rec["trunc"].append(env.truncations[first])
    return rec


def _drive_parallel(env: NeuronParallelEnv, observations: dict) -> dict:
    """One episode with the network's own policies, from the observations ``reset`` returned."""
    rec = {"task_obs": [], "obs": [], "actions": [], "rewards": [], "components": [], "term": [], "trunc": []}
    while env.agents:
        rec["task_obs"].append(env.task_observation.copy())
        rec["obs"].append(observations)
        actions = env.policy_actions()
        rec["actions"].append([actions[a] for a in env.possible_agents])
        observations, rewards, terminations, truncations, infos = env.step(actions)
        rec["rewards"].append([rewards[a] for a in env.possible_agents])
        rec["components"].append([infos[a]["reward_components"] for a in env.possible_agents])
        rec["term"].append(next(iter(terminations.values())))
        rec["trunc"].append(next(iter(truncations.values())))
    return rec


def _check_same_episode(rec: dict, rollout, engine, names: list[str]) -> None:
    t = int(rollout.valid.sum())
    assert len(rec["actions"]) == t, "the view's episode length differs from the rollout's"
    # trajectory: the task observation every tick acted on
    np.testing.assert_array_equal(np.stack(rec["task_obs"]), rollout.obs[:t, 0].cpu().numpy())
    # spikes: every neuron's action (spike = action > 0)
    actions = torch.tensor(rec["actions"])
    assert torch.equal(actions, rollout.actions[:t, 0].cpu())
    # per-neuron rewards and their components
    torch.testing.assert_close(torch.tensor(rec["rewards"]), rollout.rewards[:t, 0].cpu(), rtol=0, atol=1e-6)
    for name, values in rollout.components.items():
        mine = torch.tensor([[c[name] for c in tick] for tick in rec["components"]])
        torch.testing.assert_close(mine, values[:t, 0].cpu(), rtol=0, atol=1e-6)
    # terminations / truncations from the task, on the last tick only
    assert not any(rec["term"][:-1]) and not any(rec["trunc"][:-1])
    done = rollout.done[:t, 0]
    assert done[-1] and not done[:-1].any()
    assert rec["term"][-1] or rec["trunc"][-1]
    # the agents' observations are exactly their policies' inputs: same log-probs as the engine's re-evaluation
    expected, _, _ = engine.evaluate(rollout.obs[:t], rollout.actions[:t], rollout.first[:t])
    wiring, population, device = engine.wiring, engine.population, engine.device
    fan, ctx_fan, a = wiring.ff_idx.shape[1], wiring.ctx_idx.shape[1], population.action_dim
    with torch.no_grad():
        for i, name in enumerate(names):
            obs = torch.tensor(np.stack([tick[name] for tick in rec["obs"]]), device=device)  # [T, dim]
            x = obs[:, :fan].T.unsqueeze(0)
            ctx = obs[:, fan : obs.shape[1] - a]
            c = ctx.T.unsqueeze(0) if ctx.shape[1] else torch.zeros(1, ctx_fan, t, device=device)
            kwargs = {"prev_action": obs[:, obs.shape[1] - a :]} if a else {}
            logits = population(x, c, i, i + 1, **kwargs)
            lp, _ = log_prob(logits, actions[:, i].unsqueeze(0).to(device), wiring.motor[i : i + 1])
            torch.testing.assert_close(lp[0], expected[:, 0, i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scenario", [CARTPOLE_BIO, CARTPOLE_CONTEXT], ids=["layered_bio", "small_world_context"])
@pytest.mark.parametrize("view", ["aec", "parallel"])
def test_view_driven_by_the_networks_policies_reproduces_the_engine_rollout(scenario, view):
    """Same seed: AEC == sweep rollout, Parallel == delay rollout (trajectory, spikes, per-neuron rewards)."""
    propagation = "sweep" if view == "aec" else "delay"
    s = from_dict(dict(scenario, propagation=propagation))
    ref = build(s)
    env = aec_env(s) if view == "aec" else parallel_env(s)
    names = env.possible_agents
    task = _SeedOnce(ref.task, s.seed)
    for episode in range(2):  # the second episode continues both random streams (and switches reward phase)
        rollout = collect(ref.engine, task, ref.scheme, episode=episode, sync_every=1,
                          per_tick_components=True)  # no ticks past the end
        reset = env.reset(seed=s.seed if episode == 0 else None)
        rec = _drive_aec(env) if view == "aec" else _drive_parallel(env, reset[0])
        _check_same_episode(rec, rollout, ref.engine, names)
    assert env.core.episode == 2


def _drive_rate(env, view: str) -> dict:
    """One episode of a rate network driven by its own policies: per-tick task observations, actions, rewards."""
    rec = {"task_obs": [], "actions": [], "rewards": []}
    if view == "parallel":
        while env.agents:
            rec["task_obs"].append(env.task_observation.copy())
            actions = env.policy_actions()
            rec["actions"].append([float(np.asarray(actions[a]).reshape(-1)[0]) for a in env.possible_agents])
            _, rewards, _, _, _ = env.step(actions)
            rec["rewards"].append([rewards[a] for a in env.possible_agents])
        return rec
    first, last = env.possible_agents[0], env.possible_agents[-1]
    for agent in env.agent_iter():
        _, _, terminated, truncated, _ = env.last()
        if terminated or truncated:
            env.step(None)
            continue
        if agent == first:
            rec["task_obs"].append(env.task_observation.copy())
            rec["actions"].append([])
        action = env.policy_action()
        rec["actions"][-1].append(float(np.asarray(action).reshape(-1)[0]))
        env.step(action)
        if agent == last:
            rec["rewards"].append([env.rewards[a] for a in env.possible_agents])
    return rec


@pytest.mark.parametrize("scenario", [SWINGUP_RATE, SWINGUP_ALL_RATE_ES], ids=["gaussian_rate", "es_rate"])
@pytest.mark.parametrize("view", ["aec", "parallel"])
def test_a_rate_network_view_reproduces_the_engine_rollout(scenario, view):
    """Rate values (Gaussian draws or deterministic tanh) and spikes, rewards and trajectory equal the engine's."""
    propagation = "sweep" if view == "aec" else "delay"
    s = from_dict(dict(scenario, propagation=propagation))
    ref = build(s, learner=False)
    ref_task = build(replace(s, task=replace(s.task, num_envs=1)), learner=False).task
    env = aec_env(s) if view == "aec" else parallel_env(s)
    rollout = collect(ref.engine, _SeedOnce(ref_task, s.seed), ref.scheme, sync_every=1, per_tick_components=True)
    env.reset(seed=s.seed)
    rec = _drive_rate(env, view)
    t = int(rollout.valid.sum())
    assert rollout.actions.dtype == torch.float32 and len(rec["actions"]) == t
    np.testing.assert_array_equal(np.stack(rec["task_obs"]), rollout.obs[:t, 0].cpu().numpy())
    torch.testing.assert_close(torch.tensor(rec["actions"]), rollout.actions[:t, 0].cpu(), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(rec["rewards"]), rollout.rewards[:t, 0].cpu(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("path,overrides", [
    ("scenarios/cartpole_cooperator.yaml", []),
    ("scenarios/swingup_attention.yaml", ["network.head=[3]", "task.max_episode_steps=60"]),
    ("scenarios/swingup_cooperator.yaml", ["network.cell=gru", "task.max_episode_steps=60"]),
], ids=["cartpole_cooperator", "swingup_attention_head", "swingup_cooperator_gru"])
def test_the_aec_view_of_an_attention_network_reproduces_the_engine_rollout(path, overrides):
    """Every sensory, latent, head and motor neuron an agent; driven by its own functions it plays the engine's tick."""
    s = load(path, overrides)
    ref = build(s, learner=False)
    ref_task = build(replace(s, task=replace(s.task, num_envs=1)), learner=False).task
    rollout = collect(ref.engine, _SeedOnce(ref_task, s.seed), ref.scheme, sync_every=1, per_tick_components=True)
    env = aec_env(s)
    env.reset(seed=s.seed)
    last = env.possible_agents[-1]
    values, rewards, task_obs = [], [], []
    for agent in env.agent_iter():
        _, _, terminated, truncated, _ = env.last()
        if terminated or truncated:
            env.step(None)
            continue
        if agent == env.possible_agents[0]:
            task_obs.append(env.task_observation.copy())
        env.step(env.policy_action())
        if agent == last:
            values.append(env.core.last_actions.copy())
            rewards.append([env.rewards[a] for a in env.possible_agents])
    t = int(rollout.valid.sum())
    assert len(values) == t
    np.testing.assert_array_equal(np.stack(task_obs), rollout.obs[:t, 0].cpu().numpy())
    torch.testing.assert_close(torch.tensor(np.stack(values)), rollout.actions[:t, 0].cpu(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(rewards), rollout.rewards[:t, 0].cpu(), rtol=0, atol=1e-5)


def test_attention_networks_pass_the_pettingzoo_api_test_and_refuse_the_parallel_view():
    _quiet(api_test, aec_env(load("scenarios/swingup_cooperator.yaml", ["network.head=[3]"])), num_cycles=40)
    with pytest.raises(ScenarioError, match="only the AEC view plays them"):
        parallel_env("scenarios/cartpole_cooperator.yaml")


def test_views_replay_recorded_actions_to_the_same_rewards():
    """Actions from outside (here: the rollout's, replayed) give the rollout's observations and rewards."""
    s = from_dict(dict(CARTPOLE_CONTEXT, propagation="sweep"))
    ref = build(s)
    rollout = collect(ref.engine, _SeedOnce(ref.task, s.seed), ref.scheme, per_tick_components=True)
    env = aec_env(s)
    env.reset(seed=s.seed)
    t = int(rollout.valid.sum())
    rewards = []
    for tick in range(t):
        np.testing.assert_array_equal(env.task_observation, rollout.obs[tick, 0].cpu().numpy())
        for i in range(len(env.possible_agents)):
            env.step(int(rollout.actions[tick, 0, i]))
        rewards.append([env.rewards[a] for a in env.possible_agents])
    torch.testing.assert_close(torch.tensor(rewards), rollout.rewards[:t, 0].cpu(), rtol=0, atol=1e-6)
    assert all(env.terminations[a] or env.truncations[a] for a in env.agents)


def test_scenario_fields_the_views_fix():
    s = from_dict(dict(CARTPOLE_BIO, task={"id": "cartpole", "num_envs": 8}))
    env = parallel_env(replace(s, propagation="sweep"), max_cycles=7)
    assert env.core.task.num_envs == 1 and env.core.engine.propagation == "delay"
    assert env.core.task.max_episode_steps == 7


# -- the external independent-learner example ----------------------------------------------------------


def test_independent_learner_example_runs_against_the_parallel_api():
    path = Path(__file__).resolve().parents[1] / "examples" / "independent_learners.py"
    spec = importlib.util.spec_from_file_location("independent_learners", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    returns = module.run(episodes=3, seed=0)
    assert len(returns) == 3 and all(r >= 1.0 for r in returns)
    assert module.run(episodes=3, seed=0) == returns  # seeded: the same run twice


def test_the_views_show_the_terminal_observation_when_an_episode_ends():
    from narla.tasks.cartpole import THETA_THRESHOLD, X_THRESHOLD

    for make in (parallel_env, aec_env):
        env = make("scenarios/cartpole_1layer.yaml")
        env.reset(seed=3)
        core = env.core if hasattr(env, "core") else env.unwrapped.core
        while not core.done:
            if make is parallel_env:
                env.step(env.policy_actions())
            else:
                env.step(env.policy_action())
        x, _, theta, _ = core.task_obs
        assert abs(theta) > THETA_THRESHOLD or abs(x) > X_THRESHOLD  # the state that ended it, not the one before
        motor = env.observe("motor_0") if make is aec_env else core.observe(core.index["motor_0"])
        assert np.allclose(motor[:4], core.task_obs)
