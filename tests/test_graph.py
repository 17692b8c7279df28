"""Specification of narla.graph: the neuron-graph schema, its validation and the builders."""

import gc
import time

import networkx as nx
import pytest
import torch

from narla.graph import (
    GraphError,
    describe,
    from_networkx,
    layered,
    neurons,
    random_sparse,
    sensors,
    small_world,
    validate,
)
from narla.wiring import compile_graph


def ff_preds(graph: nx.DiGraph, node) -> set:
    return {u for u, _, k in graph.in_edges(node, data="kind") if k == "feedforward"}


def count_kind(graph: nx.DiGraph, kind: str) -> int:
    return sum(1 for _, _, k in graph.edges(data="kind") if k == kind)


def ff_part(graph: nx.DiGraph) -> nx.DiGraph:
    return nx.DiGraph([(u, v) for u, v, k in graph.edges(data="kind") if k == "feedforward"])


def tiny() -> nx.DiGraph:
    """s0 -> h -> m, a valid minimal graph that the validation tests break one attribute at a time."""
    graph = nx.DiGraph()
    graph.add_node("s0", kind="sensor", index=0)
    graph.add_node("h", kind="neuron", layer=1, role="hidden", group="")
    graph.add_node("m", kind="neuron", layer=2, role="motor", group="0")
    graph.add_edge("s0", "h", kind="feedforward")
    graph.add_edge("h", "m", kind="feedforward")
    return graph


# --- layered -----------------------------------------------------------------------------------------------


def test_layered_one_layer_wires_sensors_straight_to_the_motor_neuron():
    graph = layered(4, layers=1)
    assert sensors(graph) == ["s0", "s1", "s2", "s3"]
    assert neurons(graph) == ["motor_0"]
    assert count_kind(graph, "feedforward") == 4
    assert ff_preds(graph, "motor_0") == {"s0", "s1", "s2", "s3"}


def test_layered_three_layers_is_the_papers_31_neuron_network():
    graph = layered(4, layers=3, width=15, connectivity="local")
    assert len(neurons(graph)) == 31
    hidden = [n for n in neurons(graph) if graph.nodes[n]["role"] == "hidden"]
    assert len(hidden) == 30
    assert {graph.nodes[n]["layer"] for n in hidden} == {1, 2}
    assert graph.nodes["motor_0"]["layer"] == 3


def test_layered_five_layers_has_61_neurons():
    assert len(neurons(layered(4, layers=5))) == 61


def test_layered_local_uses_offsets_minus_one_zero_plus_one_without_wraparound():
    graph = layered(4, layers=3, width=15, connectivity="local")
    assert ff_preds(graph, "n2_0") == {"n1_0", "n1_1"}
    assert ff_preds(graph, "n2_7") == {"n1_6", "n1_7", "n1_8"}
    assert ff_preds(graph, "n2_14") == {"n1_13", "n1_14"}


def test_layered_local_keeps_first_and_last_layers_fully_connected():
    graph = layered(4, layers=4, width=15, connectivity="local")
    all_sensors = set(sensors(graph))
    for i in range(15):
        assert ff_preds(graph, f"n1_{i}") == all_sensors
    assert ff_preds(graph, "motor_0") == {f"n3_{i}" for i in range(15)}


def test_layered_full_connects_every_neuron_to_all_of_the_previous_layer():
    graph = layered(4, layers=3, width=15, connectivity="full")
    assert count_kind(graph, "feedforward") == 4 * 15 + 15 * 15 + 15 * 1
    assert ff_preds(graph, "n2_0") == {f"n1_{i}" for i in range(15)}


def test_layered_node_attributes_follow_the_schema():
    graph = layered(3, layers=2, width=2, n_motor=2, motor_groups=["left", "right"])
    assert graph.nodes["s2"] == {"kind": "sensor", "index": 2, "group": "sensor"}
    assert graph.nodes["n1_1"] == {"kind": "neuron", "layer": 1, "role": "hidden", "group": ""}
    assert graph.nodes["motor_1"] == {"kind": "neuron", "layer": 2, "role": "motor", "group": "right"}
    assert graph.graph["builder"] == "layered"
    assert graph.graph["params"]["layers"] == 2


def test_layered_motor_groups_default_to_the_motor_index():
    graph = layered(4, layers=2, n_motor=3)
    assert [graph.nodes[f"motor_{i}"]["group"] for i in range(3)] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"layers": 0}, "layers"),
        ({"layers": 2, "width": 0}, "width"),
        ({"layers": 2, "connectivity": "ring"}, "connectivity"),
        ({"layers": 2, "n_motor": 0}, "n_motor"),
        ({"layers": 2, "n_motor": 2, "motor_groups": ["a"]}, "motor_groups"),
    ],
)
def test_layered_rejects_bad_arguments_naming_them(kwargs, name):
    with pytest.raises(GraphError, match=name):
        layered(4, **kwargs)


# --- compile_graph on the builders' output -----------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2, 3, 5])
@pytest.mark.parametrize("connectivity", ["local", "full"])
def test_compiled_layered_graph_has_one_stage_per_layer(layers, connectivity):
    wiring = compile_graph(layered(4, layers=layers, connectivity=connectivity))
    assert len(wiring.stages) == layers
    assert wiring.num_layers == layers


@pytest.mark.parametrize(
    "graph",
    [
        layered(4, layers=3),
        layered(5, layers=2, n_motor=2, connectivity="full"),
        random_sparse(4, 60, fan_in=5, n_motor=2, seed=3),
        small_world(5, 40, n_motor=2, seed=1),
    ],
    ids=["layered-local", "layered-full", "random_sparse", "small_world"],
)
def test_compiled_index_tensors_match_the_graph_edges(graph):
    wiring = compile_graph(graph)
    names = wiring.sensor_names + wiring.neuron_names
    for row, neuron in enumerate(wiring.neuron_names):
        ff = {names[j] for j, m in zip(wiring.ff_idx[row].tolist(), wiring.ff_mask[row].tolist(), strict=True) if m}
        assert ff == ff_preds(graph, neuron)
        assert int(wiring.ff_mask[row].sum()) == len(ff_preds(graph, neuron))
        ctx = {names[j] for j, m in zip(wiring.ctx_idx[row].tolist(), wiring.ctx_mask[row].tolist(), strict=True) if m}
        assert ctx == {u for u, _, k in graph.in_edges(neuron, data="kind") if k == "context"}
    assert wiring.num_neurons == len(neurons(graph))
    assert torch.equal(wiring.motor_idx, torch.nonzero(wiring.motor).flatten())


# --- random_sparse -----------------------------------------------------------------------------------------


def test_random_sparse_is_deterministic_for_a_seed():
    a = random_sparse(4, 200, seed=7)
    b = random_sparse(4, 200, seed=7)
    c = random_sparse(4, 200, seed=8)
    assert list(a.edges) == list(b.edges)
    assert set(a.edges) != set(c.edges)


def test_random_sparse_feedforward_part_is_a_dag():
    assert nx.is_directed_acyclic_graph(ff_part(random_sparse(4, 300, seed=1)))


def test_random_sparse_every_neuron_has_fan_in_inputs_from_earlier_layers():
    graph = random_sparse(3, 120, fan_in=8, layers=4, seed=2)
    for n in neurons(graph):
        preds = ff_preds(graph, n)
        assert len(preds) == (3 if graph.nodes[n]["layer"] == 1 else 8)
        layer = graph.nodes[n]["layer"]
        assert all(graph.nodes[u].get("layer", 0) < layer for u in preds)


def test_random_sparse_splits_hidden_neurons_evenly_and_ends_with_the_motor_layer():
    graph = random_sparse(4, 11, n_motor=2, layers=4)
    per_layer = [sum(1 for n in neurons(graph) if graph.nodes[n]["layer"] == layer) for layer in (1, 2, 3, 4)]
    assert per_layer == [3, 3, 3, 2]
    assert all(graph.nodes[n]["role"] == "motor" for n in neurons(graph) if graph.nodes[n]["layer"] == 4)


def test_random_sparse_builds_10000_neurons_in_under_5_seconds():
    start = time.perf_counter()
    graph = random_sparse(28, 10_000, fan_in=8, n_motor=8)
    assert time.perf_counter() - start < 5.0
    assert len(neurons(graph)) == 10_000


def test_random_sparse_rejects_too_few_neurons_for_the_layers():
    with pytest.raises(GraphError, match="n_neurons"):
        random_sparse(4, 3, n_motor=1, layers=4)


# --- small_world -------------------------------------------------------------------------------------------


def test_small_world_has_context_edges_in_both_directions():
    graph = small_world(4, 40, k=4, p=0.1, seed=0)
    context = [(u, v) for u, v, k in graph.edges(data="kind") if k == "context"]
    assert context
    assert all(graph.has_edge(v, u) and graph.edges[v, u]["kind"] == "context" for u, v in context)
    assert all(graph.nodes[u]["layer"] == graph.nodes[v]["layer"] for u, v in context)


def test_small_world_feedforward_part_is_a_dag_while_context_has_cycles():
    graph = small_world(4, 40, seed=0)
    assert nx.is_directed_acyclic_graph(ff_part(graph))
    assert not nx.is_directed_acyclic_graph(graph)


def test_small_world_without_rewiring_sees_the_k_nearest_neurons_on_a_ring():
    graph = small_world(4, 31, k=3, p=0.0, layers=3)
    assert ff_preds(graph, "n2_0") == {"n1_14", "n1_0", "n1_1"}
    assert ff_preds(graph, "n1_0") == set(sensors(graph))
    assert ff_preds(graph, "motor_0") == {f"n2_{i}" for i in range(15)}


def test_small_world_is_deterministic_for_a_seed():
    assert list(small_world(4, 60, p=0.3, seed=5).edges) == list(small_world(4, 60, p=0.3, seed=5).edges)


# --- from_networkx and helpers -----------------------------------------------------------------------------


def test_from_networkx_fills_edge_kind_and_neuron_group_defaults_on_a_copy():
    graph = tiny()
    del graph.edges["h", "m"]["kind"]
    del graph.nodes["h"]["group"]
    out = from_networkx(graph)
    assert out.edges["h", "m"]["kind"] == "feedforward"
    assert out.nodes["h"]["group"] == ""
    assert "kind" not in graph.edges["h", "m"]


def test_from_networkx_accepts_context_cycles():
    graph = tiny()
    graph.add_edge("m", "h", kind="context")
    graph.add_edge("h", "h", kind="context")
    assert compile_graph(from_networkx(graph)).ctx_mask.sum() == 2


def test_from_networkx_does_not_guess_a_missing_node_kind():
    graph = tiny()
    del graph.nodes["h"]["kind"]
    with pytest.raises(GraphError, match="'h' has no 'kind'"):
        from_networkx(graph)


def test_describe_summarizes_sensors_layers_and_edge_kinds():
    text = describe(small_world(4, 13, k=2, layers=3))
    assert text.startswith("4 sensors, 13 neurons (L1: 6, L2: 6, L3: 1; 1 motor)")
    assert "feedforward" in text and "context" in text


# --- validation: one test per check ------------------------------------------------------------------------


def test_validate_accepts_the_minimal_graph():
    validate(tiny())


def test_validate_rejects_a_non_digraph():
    with pytest.raises(GraphError, match="DiGraph"):
        validate(nx.Graph(tiny()))


def test_validate_rejects_a_graph_without_sensors():
    graph = tiny()
    graph.remove_node("s0")
    with pytest.raises(GraphError, match="no sensor"):
        validate(graph)


def test_validate_rejects_a_graph_without_neurons():
    graph = nx.DiGraph()
    graph.add_node("s0", kind="sensor", index=0)
    with pytest.raises(GraphError, match="no neuron"):
        validate(graph)


def test_validate_rejects_a_graph_without_a_motor_neuron():
    graph = tiny()
    graph.nodes["m"]["role"] = "hidden"
    with pytest.raises(GraphError, match="no motor neuron"):
        validate(graph)


def test_validate_rejects_a_node_without_kind():
    graph = tiny()
    del graph.nodes["m"]["kind"]
    with pytest.raises(GraphError, match="'m' has no 'kind'"):
        validate(graph)


def test_validate_rejects_an_unknown_node_kind():
    graph = tiny()
    graph.nodes["m"]["kind"] = "glia"
    with pytest.raises(GraphError, match="kind='glia'.*allowed: sensor, neuron"):
        validate(graph)


def test_validate_rejects_a_neuron_without_layer():
    graph = tiny()
    del graph.nodes["h"]["layer"]
    with pytest.raises(GraphError, match="'h' has no 'layer'"):
        validate(graph)


@pytest.mark.parametrize("layer", [0, -1, 1.5, "1", True])
def test_validate_rejects_a_layer_that_is_not_an_int_of_at_least_one(layer):
    graph = tiny()
    graph.nodes["h"]["layer"] = layer
    with pytest.raises(GraphError, match="'h' has layer=.*int >= 1"):
        validate(graph)


@pytest.mark.parametrize("drop", [True, False])
def test_validate_rejects_a_missing_or_unknown_role(drop):
    graph = tiny()
    if drop:
        del graph.nodes["h"]["role"]
    else:
        graph.nodes["h"]["role"] = "sensory"
    with pytest.raises(GraphError, match="'h' has .*role.*allowed: hidden, motor"):
        validate(graph)


def test_validate_rejects_a_group_that_is_not_a_string():
    graph = tiny()
    graph.nodes["h"]["group"] = 3
    with pytest.raises(GraphError, match="group=3"):
        validate(graph)


def test_validate_rejects_a_sensor_without_index():
    graph = tiny()
    del graph.nodes["s0"]["index"]
    with pytest.raises(GraphError, match="sensor 's0' has no 'index'"):
        validate(graph)


@pytest.mark.parametrize("index", [-1, 0.0, "0", None])
def test_validate_rejects_a_sensor_index_that_is_not_an_int_of_at_least_zero(index):
    graph = tiny()
    graph.nodes["s0"]["index"] = index
    with pytest.raises(GraphError, match="sensor 's0' has index=.*int >= 0"):
        validate(graph)


def test_validate_rejects_a_duplicated_sensor_index():
    graph = tiny()
    graph.add_node("s1", kind="sensor", index=0)
    with pytest.raises(GraphError, match="index=0, already used by sensor 's0'"):
        validate(graph)


def test_validate_rejects_an_edge_without_kind():
    graph = tiny()
    del graph.edges["h", "m"]["kind"]
    with pytest.raises(GraphError, match="edge 'h' -> 'm' has no 'kind'"):
        validate(graph)


def test_validate_rejects_an_unknown_edge_kind():
    graph = tiny()
    graph.edges["h", "m"]["kind"] = "lateral"
    with pytest.raises(GraphError, match="kind='lateral'.*allowed: feedforward, context"):
        validate(graph)


def test_validate_rejects_a_feedforward_edge_into_a_sensor():
    graph = tiny()
    graph.add_edge("h", "s0", kind="feedforward")
    with pytest.raises(GraphError, match="into sensor 's0'"):
        validate(graph)


def test_validate_rejects_a_feedforward_cycle_naming_its_nodes():
    graph = tiny()
    graph.add_node("h2", kind="neuron", layer=1, role="hidden")
    graph.add_edge("h", "h2", kind="feedforward")
    graph.add_edge("h2", "h", kind="feedforward")
    with pytest.raises(GraphError, match="cycle: '(h|h2)' -> '(h|h2)' -> '(h|h2)'"):
        validate(graph)


def test_validate_rejects_a_neuron_without_feedforward_input():
    graph = tiny()
    graph.add_node("lonely", kind="neuron", layer=1, role="hidden")
    graph.add_edge("lonely", "m", kind="feedforward")
    with pytest.raises(GraphError, match="'lonely' has no feedforward input"):
        validate(graph)


def test_validate_rejects_a_neuron_with_only_context_input():
    graph = tiny()
    graph.add_node("ctx_only", kind="neuron", layer=1, role="hidden")
    graph.add_edge("s0", "ctx_only", kind="context")
    with pytest.raises(GraphError, match="'ctx_only' has no feedforward input"):
        validate(graph)


def test_validate_rejects_a_motor_neuron_no_sensor_reaches():
    graph = tiny()
    graph.add_node("orphan", kind="neuron", layer=1, role="hidden")
    graph.add_node("m2", kind="neuron", layer=2, role="motor")
    graph.add_edge("orphan", "m2", kind="feedforward")
    graph.add_edge("s0", "m2", kind="context")
    with pytest.raises(GraphError, match="motor neuron 'm2' is not reached by any sensor.*'orphan'"):
        validate(graph)


def test_validate_rejects_a_neuron_with_no_feedforward_path_from_a_sensor():
    graph = tiny()
    graph.add_node("root", kind="neuron", layer=1, role="hidden")
    graph.add_node("below", kind="neuron", layer=2, role="hidden")
    graph.add_edge("root", "below", kind="feedforward")
    with pytest.raises(GraphError, match="'root' has no feedforward input, so it has no feedforward path from any"):
        validate(graph)


def test_validate_allows_extra_attributes():
    graph = tiny()
    graph.nodes["h"]["colour"] = "red"
    graph.edges["h", "m"]["weight"] = 0.5
    validate(graph)


def test_validate_allows_context_from_sensors_and_cycles_of_context():
    graph = tiny()
    graph.add_edge("s0", "m", kind="context")
    graph.add_edge("m", "h", kind="context")
    validate(graph)


def test_graph_error_is_a_value_error():
    assert issubclass(GraphError, ValueError)


def _builder_seeing_the_collector(n_obs: int, motor_groups: list[str], seen: list) -> nx.DiGraph:
    seen.append(gc.isenabled())
    if not seen[0]:
        raise ValueError("refused on purpose")
    return random_sparse(n_obs, 10, motor_groups=motor_groups)


def test_graphs_are_built_with_the_garbage_collector_paused_and_it_is_back_after_a_failure_too():
    from narla.training import build_graph

    assert gc.isenabled()
    seen = []
    with pytest.raises(ValueError, match="on purpose"):
        build_graph({"builder": f"{__name__}:_builder_seeing_the_collector", "seen": seen}, 4, [""])
    assert seen == [False] and gc.isenabled()
    compile_graph(random_sparse(4, 10))
    assert gc.isenabled()


@pytest.mark.parametrize("build", [
    lambda: layered(4, hidden_layers=3, connectivity="local"),
    lambda: layered(2, hidden_layers=1, connectivity="band", n_motor=2),
    lambda: layered(3, layers=4, connectivity="full", n_motor=3, motor_groups=["a", "b", "b"]),
    lambda: random_sparse(4, 300, fan_in=16, layers=5, seed=3),
    lambda: random_sparse(1, 7, fan_in=8, layers=2, n_motor=2),
    lambda: small_world(4, 120, k=6, p=0.5, seed=2),
], ids=["layered-local", "layered-band", "layered-full", "random_sparse", "random_sparse-tiny", "small_world"])
def test_every_builder_returns_a_graph_that_passes_validation(build):
    validate(build())
