"""Specification of narla.context: graph context sources, universal context and their wiring into a run."""

import gymnasium as gym
import networkx as nx
import pytest
import torch

from narla.context import action_features, add_context, positional_encoding
from narla.graph import layered
from narla.neurons import Population
from narla.rewards import RewardScheme
from narla.rollout import collect
from narla.scenario import ScenarioError, from_dict, load
from narla.training import build
from narla.wiring import compile_graph

CONTEXT_NET = "tests/context_net.yaml"


def two_layer_graph(hidden_groups: list[str], motor_groups: list[str]):
    """Two sensors, one hidden layer (``a{i}`` in ``hidden_groups``), motors reading every hidden neuron."""
    graph = nx.DiGraph()
    for i in range(2):
        graph.add_node(f"s{i}", kind="sensor", index=i)
    for i, g in enumerate(hidden_groups):
        graph.add_node(f"a{i}", kind="neuron", layer=1, role="hidden", group=g)
        graph.add_edges_from(((f"s{k}", f"a{i}") for k in range(2)), kind="feedforward")
    for j, g in enumerate(motor_groups):
        graph.add_node(f"motor_{j}", kind="neuron", layer=2, role="motor", group=g)
        graph.add_edges_from(((f"a{i}", f"motor_{j}") for i in range(len(hidden_groups))), kind="feedforward")
    return graph


def context_pairs(graph) -> set:
    return {(u, v) for u, v, k in graph.edges(data="kind") if k == "context"}


def test_proximal_links_same_layer_same_group_neighbours_only():
    graph = add_context(two_layer_graph(["g0", "g0", "g1"], ["0", "0", "1"]), proximal=True)
    assert context_pairs(graph) == {("a0", "a1"), ("a1", "a0"), ("motor_0", "motor_1"), ("motor_1", "motor_0")}


def test_distal_links_other_groups_and_earlier_layers_but_never_feedforward_pairs():
    graph = add_context(two_layer_graph(["g0", "g1"], ["0", "1"]), distal=True)
    # motors already read every hidden neuron feedforward: one edge per ordered pair, feedforward wins.
    assert context_pairs(graph) == {("a0", "a1"), ("a1", "a0"), ("motor_0", "motor_1"), ("motor_1", "motor_0")}
    assert graph.edges["a0", "motor_0"]["kind"] == "feedforward"


def test_feedback_links_later_layers_to_earlier_ones():
    graph = add_context(layered(2, layers=3, width=2), feedback=True)
    pairs = context_pairs(graph)
    assert ("motor_0", "n1_0") in pairs and ("n2_1", "n1_0") in pairs and ("motor_0", "n2_0") in pairs
    assert all(graph.nodes[u]["layer"] > graph.nodes[v]["layer"] for u, v in pairs)


def test_context_edges_compile_to_previous_tick_sources():
    graph = add_context(layered(2, layers=2, width=3), proximal=True)
    wiring = compile_graph(graph)
    assert wiring.ctx_mask.sum(1).tolist() == [2.0, 2.0, 2.0, 0.0]


def test_positional_encoding_is_sinusoidal():
    pe = positional_encoding(5, 4)
    assert pe.shape == (5, 4)
    torch.testing.assert_close(pe[:, 0], torch.sin(torch.arange(5.0)))
    torch.testing.assert_close(pe[:, 1], torch.cos(torch.arange(5.0)))
    torch.testing.assert_close(pe[:, 2], torch.sin(torch.arange(5.0) / 100.0))


def test_action_features_one_hot_for_discrete_identity_for_box():
    torch.testing.assert_close(action_features(torch.tensor([1, 0]), gym.spaces.Discrete(3)),
                               torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    box = torch.tensor([[0.5], [-1.0]])
    torch.testing.assert_close(action_features(box, gym.spaces.Box(-1, 1, (1,))), box)


def test_universal_context_adds_learned_columns_that_change_the_output():
    wiring = compile_graph(layered(2, layers=1))
    pop = Population(wiring, hidden=(4,), amtf="cooperation", position_dim=4, action_dim=2)
    assert pop.context_weight.shape == (1, 1, 6)
    x = torch.randn(1, 2, 3)
    c = torch.zeros(1, 0, 3)
    a = pop(x, c, prev_action=torch.tensor([[1.0, 0], [1, 0], [1, 0]]))
    b = pop(x, c, prev_action=torch.tensor([[0.0, 1], [0, 1], [0, 1]]))
    assert not torch.allclose(a, b)
    torch.testing.assert_close(pop(x, c), pop(x, c, prev_action=torch.zeros(3, 2)))


def test_evaluate_rebuilds_the_recorded_previous_action():
    run = build(load(CONTEXT_NET, ["task.num_envs=3", "task.max_episode_steps=30"]))
    rollout = collect(run.engine, run.task, RewardScheme.from_config(["task"], run.wiring))
    rebuilt = run.engine.previous_task_action(rollout.actions, rollout.first)
    valid = rollout.valid.unsqueeze(-1).float()
    torch.testing.assert_close(rebuilt * valid, rollout.prev_action * valid)
    given, _, _ = run.engine.evaluate(rollout.obs, rollout.actions, rollout.first, prev_action=rollout.prev_action)
    derived, _, _ = run.engine.evaluate(rollout.obs, rollout.actions, rollout.first)
    torch.testing.assert_close(given * valid, derived * valid)


def test_scenario_context_defaults_to_all_sources_off():
    scenario = from_dict({"name": "x"})
    assert (scenario.context.proximal, scenario.context.distal, scenario.context.feedback) == (False, False, False)
    assert scenario.context.universal_position == 0 and not scenario.context.universal_action


def test_scenario_rejects_unknown_context_fields():
    with pytest.raises(ScenarioError, match="context.lateral"):
        from_dict({"name": "x", "context": {"lateral": True}})


def test_build_adds_context_edges_and_universal_columns_from_the_scenario():
    run = build(load(CONTEXT_NET, ["context.universal_position=4"]))
    assert any(k == "context" for _, _, k in run.graph.edges(data="kind"))
    pop = run.engine.population
    assert (pop.position_dim, pop.action_dim) == (4, 2)
