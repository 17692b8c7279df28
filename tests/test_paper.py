"""The NaRLA paper's network, neuron head and reward definitions (REFERENCES.md, "The code behind Table 1")."""

import pytest
import torch

from narla import scenario as scenarios
from narla.graph import GraphError, layered
from narla.neurons.heads import SoftmaxHeadPopulation
from narla.rewards import NetworkState, resolve_reward
from narla.training import build
from narla.wiring import compile_graph


def _state(wiring, spikes, first=None):
    spikes = torch.tensor(spikes, dtype=torch.float32)
    b = spikes.shape[0]
    first = torch.ones(b, dtype=torch.bool) if first is None else torch.tensor(first)
    return NetworkState(spikes, torch.zeros_like(spikes), torch.zeros_like(spikes), torch.ones(b),
                        torch.zeros(b, dtype=torch.bool), first, wiring, 0)


def _spikes(wiring, firing):
    return [[1.0 if name in firing else 0.0 for name in wiring.neuron_names]]


def test_hidden_layers_count_the_papers_way_16_31_76_neurons():
    sizes = [len([n for n, k in layered(4, hidden_layers=h).nodes(data="kind") if k == "neuron"]) for h in (1, 2, 5)]
    assert sizes == [16, 31, 76]
    assert sorted(layered(4, hidden_layers=2).edges) == sorted(layered(4, layers=3).edges)


def test_layered_rejects_both_layer_counts_at_once():
    with pytest.raises(GraphError, match="exactly one of hidden_layers"):
        layered(4, layers=2, hidden_layers=1)


def test_band_wiring_reads_neurons_c_minus_1_and_c_of_the_previous_hidden_layer():
    graph = layered(4, hidden_layers=2, width=4, connectivity="band")
    assert sorted(u for u, _ in graph.in_edges("n2_0")) == ["n1_0"]
    assert sorted(u for u, _ in graph.in_edges("n2_2")) == ["n1_1", "n1_2"]
    assert len(list(graph.in_edges("n1_0"))) == 4 and len(list(graph.in_edges("motor_0"))) == 4


def test_paper_firing_is_one_for_a_spike_and_zero_for_silence():
    wiring = compile_graph(layered(2, hidden_layers=1, width=3))
    reward = resolve_reward("paper_firing")(_state(wiring, _spikes(wiring, {"n1_0", "motor_0"})))
    got = dict(zip(wiring.neuron_names, reward[0].tolist(), strict=True))
    assert got == {"n1_0": 1.0, "n1_1": 0.0, "n1_2": 0.0, "motor_0": 1.0}


@pytest.mark.parametrize(
    ("width", "firing", "fire_value", "silent_value"),
    [
        (5, {"n1_0", "n1_1"}, -0.2, 0.2),  # f = 0.4, e = +0.2: -e*o -> firing -0.2, silent +0.2
        (10, {"n1_0"}, -0.1, 0.1),  # f = 0.1, e = -0.1: +e*o -> firing -0.1, silent +0.1
        (5, {"n1_0"}, 0.2, 0.2),  # f = 0.2, e = 0: 0.2*|o| for every hidden neuron
    ],
)
def test_paper_sparsity_matches_the_formula_by_hand(width, firing, fire_value, silent_value):
    wiring = compile_graph(layered(2, hidden_layers=1, width=width))
    reward = resolve_reward("paper_sparsity")(_state(wiring, _spikes(wiring, firing | {"motor_0"})))
    got = dict(zip(wiring.neuron_names, reward[0].tolist(), strict=True))
    assert got.pop("motor_0") == 0.0
    for name, value in got.items():
        assert value == pytest.approx(fire_value if name in firing else silent_value, abs=1e-6)


def test_paper_prediction_sums_plus_one_per_firing_and_minus_one_per_silent_postsynaptic_neuron():
    wiring = compile_graph(layered(2, hidden_layers=2, width=3, connectivity="band"))
    # n1_0 -> n2_0, n2_1; n1_1 -> n2_1, n2_2; n1_2 -> n2_2; layer 2 -> motor_0
    firing = {"n1_0", "n1_1", "n2_0", "n2_2", "motor_0"}
    reward = resolve_reward("paper_prediction")(_state(wiring, _spikes(wiring, firing)))
    got = dict(zip(wiring.neuron_names, reward[0].tolist(), strict=True))
    assert got == {"n1_0": 0.0, "n1_1": 0.0, "n1_2": 0.0, "n2_0": 1.0, "n2_1": 0.0, "n2_2": 1.0, "motor_0": 0.0}
    firing = {"n1_1", "motor_0"}  # n1_1's two postsynaptic neurons are silent: -2
    reward = resolve_reward("paper_prediction")(_state(wiring, _spikes(wiring, firing)))
    assert dict(zip(wiring.neuron_names, reward[0].tolist(), strict=True))["n1_1"] == -2.0


def test_paper_trace_is_f_of_the_distance_of_the_episode_mean_firing_from_one_half():
    def f(x):
        return -1746463 + (0.9256812 + 1746463) / (1 + (x / 236.1357) ** 2.160334)

    wiring = compile_graph(layered(2, hidden_layers=0))
    trace = resolve_reward("paper_trace")
    seq = [(1.0, True), (1.0, False), (0.0, False), (0.0, True)]  # the last tick starts a new episode
    expect = [f(0.5), f(0.5), f(abs(2 / 3 - 0.5)), f(0.5)]
    for (spike, first), want in zip(seq, expect, strict=True):
        got = trace(_state(wiring, [[spike]], first=[first]))[0, 0].item()
        assert got == pytest.approx(want, abs=1e-5)
    assert f(0.0) == pytest.approx(0.9256812) and f(0.5) == pytest.approx(-2.0, abs=0.02)


def test_softmax_head_fires_with_the_two_way_softmax_of_its_last_layer():
    wiring = compile_graph(layered(4, hidden_layers=1, width=3))
    pop = SoftmaxHeadPopulation(wiring, hidden=[32], activation="leaky_relu_0.3")
    x = torch.randn(wiring.num_neurons, wiring.ff_idx.shape[1], 5) * wiring.ff_mask.unsqueeze(-1)
    logit = pop(x, x.new_zeros(wiring.num_neurons, 0, 5))[:, 0]  # [N, cols]
    for i in range(wiring.num_neurons):
        (w1, b1), (w2, b2) = pop.policy.neuron_linear(0, i), pop.policy.neuron_linear(1, i)
        h = torch.nn.functional.leaky_relu(x[i].T @ w1.T + b1, 0.3)
        p_fire = torch.softmax(h @ w2.T + b2, -1)[:, 1]
        torch.testing.assert_close(torch.sigmoid(logit[i]), p_fire)


def test_an_unknown_neuron_head_names_the_field_and_the_choices():
    with pytest.raises(scenarios.ScenarioError, match=r"neuron.head: .sigmoid. is not allowed; allowed: logit, soft"):
        scenarios.from_dict({"name": "x", "neuron": {"head": "sigmoid"}})


def test_the_paper_table_scenarios_load_with_the_papers_neuron_counts():
    from narla.training import build

    sizes = {}
    for layers in (1, 2, 5):
        run = build(scenarios.load(f"scenarios/table1/paper/bio_all_L{layers}.yaml"))
        sizes[layers] = run.wiring.num_neurons
        assert run.scheme.active_terms(999) == ["paper_firing", "paper_sparsity", "paper_prediction", "paper_trace"]
        assert len(run.scheme.active_terms(1000)) == 5
    assert sizes == {1: 16, 2: 31, 5: 76}


def test_softmax_head_members_run_natively_and_equal_one_pass_per_member():
    s = scenarios.load("scenarios/table1/paper/task_L1.yaml",
             ["learning.rule=es", "learning.population=2", "task.num_envs=4", "task.max_episode_steps=20"])
    run = build(s)
    view = run.engine.population
    assert view.native
    start, end = run.engine.stages[0]
    x = torch.randn(end - start, run.wiring.ff_idx.shape[1], 4, device=run.device)
    c = torch.zeros(end - start, 0, 4, device=run.device)
    torch.testing.assert_close(view(x, c, start, end), view._vmap_call(x, c, start, end, None))
