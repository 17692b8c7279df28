"""Specification of the permutation-invariant networks, AttentionNeuron and the Cooperator (attention_neuron.py)."""

import math

import gymnasium as gym
import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from narla.cooperator import attention_neuron, cooperator, population_from_graph
from narla.learning.es import PerNeuronES
from narla.neurons.attention_neuron import AttentionNeuronPopulation, matching_msg_dim, parameter_count
from narla.readout import Readout
from narla.rollout import collect
from narla.scenario import ScenarioError, from_dict, load
from narla.tasks.robustness import ShuffledTask
from narla.training import Trainer, build
from narla.wiring import compile_graph


def _population(modulation: str = "cooperation_relu6", context_map: str = "shared", **kwargs):
    torch.manual_seed(0)
    options = dict(num_sensory=5, action_dim=1, num_latent=6, num_motor=1, msg_dim=4, state_dim=3, pos_dim=4)
    options.update(kwargs)
    return AttentionNeuronPopulation(modulation=modulation, context_map=context_map, **options)


def _plain_torch_tick(pop, obs, prev_action, h, c=None):
    """The network's equations written plainly, one copy and one sensory neuron at a time (the oracle)."""
    gru = pop.cell == "gru"
    cell = (torch.nn.GRUCell if gru else torch.nn.LSTMCell)(1 + pop.action_dim, pop.state_dim)
    with torch.no_grad():
        cell.weight_ih.copy_(pop.sensory_weight_ih[0])
        cell.weight_hh.copy_(pop.sensory_weight_hh[0])
        cell.bias_ih.copy_(pop.sensory_bias_ih[0])
        cell.bias_hh.copy_(pop.sensory_bias_hh[0])
    q = pop.positions @ pop.query_weight[0].T + pop.query_bias[0]  # [M, d]
    outs, hs, cs = [], [], []
    for b in range(obs.shape[0]):
        keys, hb, cb = [], [], []
        for i in range(obs.shape[1]):
            x = torch.cat([obs[b, i : i + 1], prev_action[b]]).unsqueeze(0)
            if gru:
                hi = ci = cell(x, h[b, i : i + 1])
            else:
                hi, ci = cell(x, (h[b, i : i + 1], c[b, i : i + 1]))
            k = hi[0] @ pop.key_weight[0].T + pop.key_bias[0]
            if pop.modulation != "none":
                row = i if pop.context_map == "slot" else 0
                ctx = pop.context_weight[row] @ q + pop.context_bias[row]
                k = F.relu6(k * k + 2 * k + ctx * (1 + k.abs()))
            keys.append(k)
            hb.append(hi[0])
            cb.append(ci[0])
        K = torch.stack(keys)
        m = torch.tanh(torch.tanh(q @ K.T / math.sqrt(pop.msg_dim)) @ obs[b])
        layers = [K.pow(2).mean(1).sqrt(), m]
        for w, bias in zip(pop.head_weights, pop.head_biases, strict=True):
            layers.append(torch.tanh(w @ layers[-1] + bias))
        outs.append(torch.cat(layers))
        hs.append(torch.stack(hb))
        cs.append(torch.stack(cb))
    return torch.stack(outs).T, torch.stack(hs), torch.stack(cs)


@pytest.mark.parametrize("modulation,context_map", [("none", "slot"), ("cooperation_relu6", "slot"),
                                                    ("cooperation_relu6", "shared")])
def test_a_tick_equals_the_plain_torch_equations_with_an_lstm_cell_per_neuron(modulation, context_map):
    pop = _population(modulation, context_map, head=[3])
    obs, prev = torch.randn(4, 5), torch.randn(4, 1)
    h, c = torch.randn(4, 5, 3), torch.randn(4, 5, 3)
    with torch.no_grad():
        values, memory = pop.act(obs, torch.stack([h, c]), prev)
        ref_values, ref_h, ref_c = _plain_torch_tick(pop, obs, prev, h, c)
    torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(memory[0], ref_h, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(memory[1], ref_c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modulation", ["none", "cooperation_relu6"])
def test_a_gru_memory_tick_equals_the_plain_torch_equations_with_a_gru_cell_per_neuron(modulation):
    pop = _population(modulation, "slot", head=[3], cell="gru")
    obs, prev, h = torch.randn(4, 5), torch.randn(4, 1), torch.randn(4, 5, 3)
    with torch.no_grad():
        values, memory = pop.act(obs, h.unsqueeze(0), prev)
        ref_values, ref_h, _ = _plain_torch_tick(pop, obs, prev, h)
    assert memory.shape == (1, 4, 5, 3) and pop.initial_memory(4).shape == (1, 4, 5, 3)
    torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(memory[0], ref_h, rtol=1e-5, atol=1e-5)


def test_an_unknown_memory_cell_names_the_field_and_the_allowed_cells():
    with pytest.raises(ValueError, match=r"network\.cell: 'rnn'; allowed: lstm, gru"):
        attention_neuron(4, ["a"], cell="rnn")


def test_memory_is_carried_across_ticks_and_cleared_at_an_episode_start():
    run = build(load("scenarios/cartpole_cooperator.yaml", ["task.num_envs=4", "learning.population=2"]), learner=False)
    engine, obs = run.engine, run.task.reset(seed=0)
    engine.reset_memory(4)
    engine.tick(obs, None)
    after_one = engine.memory.clone()
    assert after_one.abs().sum() > 0
    engine.tick(obs, None)
    assert not torch.allclose(engine.memory, after_one)  # the state moved on: memory, not a function of obs alone
    engine.keep_memory(torch.tensor([True, False, True, False], device=engine.device))
    assert engine.memory[:, [1, 3]].abs().sum() == 0 and engine.memory[:, [0, 2]].abs().sum() > 0


def test_shuffling_the_features_and_their_memories_leaves_every_latent_and_motor_value_unchanged():
    pop = _population("cooperation_relu6", "shared", head=[3])
    obs, prev = torch.randn(4, 5), torch.randn(4, 1)
    memory = torch.randn(2, 4, 5, 3)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        values, new = pop.act(obs, memory, prev)
        moved, new_moved = pop.act(obs[:, perm], memory[:, :, perm], prev)
    torch.testing.assert_close(moved[5:], values[5:], rtol=1e-5, atol=1e-6)  # latent, head, motor
    torch.testing.assert_close(moved[:5], values[perm], rtol=1e-5, atol=1e-6)  # sensory values move with them
    torch.testing.assert_close(new_moved, new[:, :, perm])


def test_the_attention_baseline_is_permutation_invariant_over_whole_episodes():
    run = build(load("scenarios/cartpole_attention.yaml", ["task.num_envs=8", "learning.population=2"]), learner=False)
    plain = collect(run.engine, ShuffledTask(run.task, shuffle=False, seed=1), run.scheme)
    run.task.reset(seed=0)
    shuffled = collect(run.engine, ShuffledTask(run.task, shuffle=True, seed=1), run.scheme)
    torch.testing.assert_close(shuffled.task_reward, plain.task_reward)


def test_per_slot_context_makes_the_cooperator_depend_on_the_feature_order():
    pop = _population("cooperation_relu6", "slot")
    obs, memory = torch.randn(4, 5), torch.randn(2, 4, 5, 3)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        values, _ = pop.act(obs, memory)
        moved, _ = pop.act(obs[:, perm], memory[:, :, perm])
    assert not torch.allclose(moved[5:], values[5:])


def test_members_evaluate_their_own_parameters_in_one_batch():
    pop = _population(head=[2])
    deltas = {name: 0.1 * torch.randn(3, *p.shape) for name, p in pop.named_parameters()}
    obs, memory = torch.randn(6, 5), torch.randn(2, 6, 5, 3)
    with torch.no_grad():
        batched, _ = pop.act(obs, memory, deltas=deltas)
        for m in range(3):
            single = _population(head=[2])
            for name, p in single.named_parameters():
                p.add_(deltas[name][m])
            alone, _ = single.act(obs[2 * m : 2 * m + 2], memory[:, 2 * m : 2 * m + 2])
            torch.testing.assert_close(batched[:, 2 * m : 2 * m + 2], alone, rtol=1e-5, atol=1e-6)


def test_parameter_counts_match_the_public_code_and_the_baseline_is_within_two_percent_of_the_cooperator():
    swingup = dict(num_sensory=5, action_dim=1, num_latent=16, num_motor=1)
    assert parameter_count(AttentionNeuronPopulation(**swingup)) == 977  # LSTMCell(2, 8) + q/k Linear(8, 32) + 17
    coop = parameter_count(AttentionNeuronPopulation(modulation="cooperation_relu6", **swingup))
    assert coop - 977 == 85  # the authors' Linear(M = 16 -> N = 5)
    ant = dict(num_sensory=28, action_dim=8, num_latent=32, num_motor=8, head=[32])
    ant_coop = parameter_count(AttentionNeuronPopulation(modulation="cooperation_relu6", **ant))
    assert ant_coop - parameter_count(AttentionNeuronPopulation(**ant)) == 924
    for task in ("swingup", "cartpole"):
        counts = {}
        for model in ("cooperator", "attention"):
            run = build(load(f"scenarios/{task}_{model}.yaml"), learner=False)
            counts[model] = parameter_count(run.engine.population)
        assert abs(counts["attention"] - counts["cooperator"]) / counts["cooperator"] <= 0.02
    assert matching_msg_dim(coop, **swingup) == 37


def test_every_sensory_latent_and_motor_neuron_is_a_graph_node_in_engine_order():
    graph = cooperator(3, ["0", "1"], latent=4, head=[2])
    wiring = compile_graph(graph)
    assert wiring.neuron_names == ["sense0", "sense1", "sense2", "latent0", "latent1", "latent2", "latent3",
                                   "head0_0", "head0_1", "motor_0", "motor_1"]
    assert all(graph.has_edge(f"latent{j}", f"sense{i}") for i in range(3) for j in range(4))  # query context
    assert graph.nodes["sense0"]["tie"] == "sensory" and graph.nodes["sense0"]["cell"] == "lstm"
    assert population_from_graph(graph, 2).num_neurons == wiring.num_neurons
    assert not any(d["kind"] == "context" for *_, d in attention_neuron(3, ["0"]).edges(data=True))


def test_value_readout_maps_motor_values_onto_the_action():
    box = gym.spaces.Box(np.array([-2.0], dtype=np.float32), np.array([2.0], dtype=np.float32))
    graph = nx.DiGraph(cooperator(2, ["0"], latent=2))
    wiring = compile_graph(graph)
    values = torch.zeros(wiring.num_neurons, 3)
    values[-1] = torch.tensor([-1.0, 0.0, 0.5])
    torch.testing.assert_close(Readout("value", box).bind(wiring)(values)[:, 0], torch.tensor([-2.0, 0.0, 1.0]))
    assert Readout("value", gym.spaces.Discrete(2)).bind(wiring)(values).tolist() == [0, 0, 1]


def test_policy_gradient_rules_are_refused_with_the_allowed_ones_named():
    data = {"name": "x", "network": {"builder": "cooperator"}, "readout": {"kind": "value"}}
    with pytest.raises(ScenarioError, match="learning.rule: 'reinforce'.*allowed: es, cma_es"):
        build(from_dict(data))


def test_a_bad_network_option_names_the_field():
    data = {"name": "x", "network": {"builder": "cooperator", "modulation": "sum"}, "readout": {"kind": "value"},
            "learning": {"rule": "cma_es", "population": 2}, "task": {"num_envs": 2}}
    with pytest.raises(ScenarioError, match="network.modulation: 'sum'; allowed"):
        build(from_dict(data))


def test_per_neuron_es_runs_on_the_cooperator_with_owners_for_every_parameter():
    data = {"name": "x", "network": {"builder": "cooperator", "latent": 4}, "readout": {"kind": "value"},
            "learning": {"rule": "es", "population": 2}, "task": {"num_envs": 4, "max_episode_steps": 20},
            "rewards": ["task", "activity"]}
    run = build(from_dict(data))
    assert isinstance(run.learner, PerNeuronES)
    before = {k: v.clone() for k, v in run.engine.population.state_dict().items()}
    run.learner.update(collect(run.engine, run.task, run.scheme))
    after = run.engine.population.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k != "positions")


def test_cma_es_learns_cartpole_in_a_few_generations(tmp_path):
    overrides = ["training.max_episodes=512", "training.checkpoint_every=null", "task.max_episode_steps=100"]
    scenario = load("scenarios/cartpole_cooperator.yaml", overrides)
    trainer = Trainer(scenario, tmp_path / "run", progress=False)
    trainer.train()
    first, last = trainer.returns[:64], trainer.returns[-64:]
    assert sum(last) / 64 > 2 * sum(first) / 64


def test_cma_es_resumes_exactly_from_a_checkpoint(tmp_path):
    overrides = ["task.num_envs=8", "learning.population=4", "task.max_episode_steps=30",
                 "training.checkpoint_every=16"]
    full = Trainer(load("scenarios/cartpole_cooperator.yaml", [*overrides, "training.max_episodes=32"]), tmp_path / "a",
                   progress=False)
    full.train()
    half = Trainer(load("scenarios/cartpole_cooperator.yaml", [*overrides, "training.max_episodes=16"]), tmp_path / "b",
                   progress=False)
    half.train()
    from narla.training import resume

    rest = resume(tmp_path / "b", ["training.max_episodes=32"], progress=False)
    rest.train()
    assert rest.returns == full.returns


# -- rate neurons in layered networks -------------------------------------------------------------------------


RATE_NET = {
    "name": "rate",
    "task": {"id": "swingup", "num_envs": 4, "max_episode_steps": 10},
    "network": {"builder": "layered", "layers": 2, "width": 3, "connectivity": "full"},
    "neuron": {"hidden": [], "output": {"hidden": "spike", "motor": "rate"}},
    "readout": {"kind": "value"},
}


def test_rate_neurons_are_deterministic_tanh_values_under_es():
    data = {**RATE_NET, "neuron": {"hidden": [], "output": "rate"}, "learning": {"rule": "cma_es", "population": 2}}
    run = build(from_dict(data), learner=False)
    engine, obs = run.engine, run.task.reset(seed=0)
    prev = torch.zeros(engine.num_sensors + engine.num_neurons, 4)
    first, actions = engine.tick(obs, prev)
    second, again = engine.tick(obs, prev)
    motor = run.wiring.motor_idx
    torch.testing.assert_close(actions[motor], again[motor])
    assert actions[motor].abs().max() < 1 and not torch.equal(actions[motor], actions[motor].round())
    logits = engine.stage_logits(first, prev, *engine.stages[-1])
    torch.testing.assert_close(actions[motor], torch.tanh(logits[:, 0]))


def test_rate_neurons_are_gaussian_under_policy_gradients_with_torch_log_probs():
    run = build(from_dict({**RATE_NET, "learning": {"rule": "reinforce"}}))
    rollout = collect(run.engine, run.task, run.scheme)
    logp, ent, _ = run.engine.evaluate(rollout.obs, rollout.actions, rollout.first)
    motor = run.wiring.motor_idx
    values = rollout.actions[..., motor]
    assert not torch.allclose(values, values.clamp(-1, 1).tanh())  # noisy samples, not the mean
    start, end = run.engine.stages[-1]
    cols = rollout.obs.shape[0] * rollout.obs.shape[1]
    act = torch.cat([run.engine.sensors(rollout.obs.reshape(cols, -1)),
                     (rollout.actions.reshape(cols, -1) > 0).float().T])
    act[run.engine.num_sensors + motor] = values.reshape(cols, -1).T
    mean = torch.tanh(run.engine.stage_logits(act, torch.zeros_like(act), start, end)[:, 0])  # [motor, cols]
    std = run.engine.population.log_std[motor].exp()
    dist = torch.distributions.Normal(mean, std)
    torch.testing.assert_close(logp[..., motor].reshape(cols, -1).T, dist.log_prob(values.reshape(cols, -1).T))
    torch.testing.assert_close(ent[..., motor].reshape(cols, -1).T, dist.entropy())
    loss = -logp.sum()
    loss.backward()
    assert run.engine.population.log_std.grad[motor].abs().sum() > 0


def test_rate_motor_neurons_need_the_value_readout():
    with pytest.raises(ScenarioError, match="readout.kind: rate motor neurons need readout value"):
        build(from_dict({**RATE_NET, "readout": {"kind": "squash"}}))


def test_an_unknown_output_kind_names_the_field():
    with pytest.raises(ScenarioError, match="neuron.output.motor: 'analog' is not allowed"):
        from_dict({**RATE_NET, "neuron": {"output": {"motor": "analog"}}})
