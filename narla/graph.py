"""Neuron graphs: the wiring of a population, as a ``networkx.DiGraph``.

Schema. A *sensor* node (``kind="sensor"``) carries one observation feature (``index``) and is not an
agent. A *neuron* node (``kind="neuron"``) is an agent with a ``layer`` (int >= 1), a ``role``
(``"hidden"`` or ``"motor"``) and a ``group`` (str, may be empty). Every edge has a ``kind``:
``"feedforward"`` edges are basal input (the receptive field R) and must form a DAG; ``"context"``
edges are apical input (the contextual field C), read from the previous tick, and may form cycles.

The builders return new, validated graphs; :func:`narla.wiring.compile_graph` turns them into tensors.
"""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat

import networkx as nx
import numpy as np

NODE_KINDS = ("sensor", "neuron")
ROLES = ("hidden", "motor")
EDGE_KINDS = ("feedforward", "context")
CONNECTIVITIES = ("local", "full", "band")


class GraphError(ValueError):
    """A neuron graph, or a builder argument, that does not follow the schema."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_nodes(graph: nx.DiGraph) -> None:
    seen_index: dict[int, object] = {}
    for node, data in graph.nodes(data=True):
        if "kind" not in data:
            raise GraphError(f"node {node!r} has no 'kind' attribute; allowed: {', '.join(NODE_KINDS)}")
        kind = data["kind"]
        if kind not in NODE_KINDS:
            raise GraphError(f"node {node!r} has kind={kind!r}; allowed: {', '.join(NODE_KINDS)}")
        if "group" in data and not isinstance(data["group"], str):
            raise GraphError(f"node {node!r} has group={data['group']!r}; group must be a str (may be empty)")
        if kind == "sensor":
            if "index" not in data:
                raise GraphError(f"sensor {node!r} has no 'index' attribute; it must be an int >= 0")
            index = data["index"]
            if not _is_int(index) or index < 0:
                raise GraphError(f"sensor {node!r} has index={index!r}; it must be an int >= 0")
            if index in seen_index:
                raise GraphError(f"sensor {node!r} has index={index}, already used by sensor {seen_index[index]!r}")
            seen_index[index] = node
        else:
            if "layer" not in data:
                raise GraphError(f"neuron {node!r} has no 'layer' attribute; it must be an int >= 1")
            layer = data["layer"]
            if not _is_int(layer) or layer < 1:
                raise GraphError(f"neuron {node!r} has layer={layer!r}; it must be an int >= 1")
            if data.get("role") not in ROLES:
                shown = "no 'role' attribute" if "role" not in data else f"role={data['role']!r}"
                raise GraphError(f"neuron {node!r} has {shown}; allowed: {', '.join(ROLES)}")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a graph is built or compiled. networkx keeps a dict per node and
    edge, and each collection walks every one of them, so building grows faster than linearly with the graph: a
    1,000,000-neuron ``random_sparse`` graph took 140 s with the collector on, 62 s off, here. Building makes no
    reference cycles that need collecting sooner; the collector is back on (if it was) when the block ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Edges:
    """A neuron graph as integer arrays: what validation and :func:`narla.wiring.compile_graph` work on.

    Node ``i`` is ``nodes[i]`` (insertion order); edge ``e`` runs ``src[e] -> dst[e]`` (``[E]`` int64, in
    ``graph.edges`` order), and ``feedforward[e]`` says its kind. ``generation[i]`` is node ``i``'s feedforward
    generation (0: no feedforward input; otherwise one more than its latest feedforward source).
    """

    nodes: list
    src: np.ndarray
    dst: np.ndarray
    feedforward: np.ndarray
    generation: np.ndarray


def _edge_arrays(graph: nx.DiGraph) -> tuple[list, dict, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the edges (in ``graph.edges`` order, read node by node from the adjacency dicts): every edge's
    kind is checked, and the edges come back as index arrays."""
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    out_degree, dst, kinds = [], [], []
    for _, targets in graph.adjacency():
        out_degree.append(len(targets))
        dst.extend(map(index.__getitem__, targets))
        kinds.extend(map(dict.get, targets.values(), repeat("kind")))  # each edge's kind, or None
    src = np.repeat(np.arange(len(nodes), dtype=np.int64), out_degree)
    try:
        all_known = set(kinds) <= set(EDGE_KINDS)
    except TypeError:  # an unhashable kind
        all_known = False
    if not all_known:
        e = next(e for e, kind in enumerate(kinds) if kind not in EDGE_KINDS)
        u, v, kind = nodes[src[e]], nodes[dst[e]], kinds[e]
        shown = "no 'kind' attribute" if kind is None else f"kind={kind!r}"
        raise GraphError(f"edge {u!r} -> {v!r} has {shown}; allowed: {', '.join(EDGE_KINDS)}")
    ff = np.fromiter((kind == "feedforward" for kind in kinds), dtype=bool, count=len(kinds))
    return nodes, index, src, np.array(dst, dtype=np.int64), ff


def _generations(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Each node's generation in the DAG ``src -> dst`` (Kahn's algorithm, one array step per generation), or
    None when the edges hold a cycle. O(N + E log E)."""
    indegree = np.bincount(dst, minlength=n)
    by_src = np.argsort(src, kind="stable")
    out_dst = dst[by_src]
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=starts[1:])
    generation = np.full(n, -1, dtype=np.int64)
    frontier = np.flatnonzero(indegree == 0)
    g = 0
    while frontier.size:
        generation[frontier] = g
        counts = starts[frontier + 1] - starts[frontier]
        total = int(counts.sum())
        if total == 0:
            break
        first = np.repeat(starts[frontier] - (np.cumsum(counts) - counts), counts)
        targets, hits = np.unique(out_dst[first + np.arange(total)], return_counts=True)
        indegree[targets] -= hits
        frontier = targets[indegree[targets] == 0]
        g += 1
    return None if (generation < 0).any() else generation


def _reached(is_sensor: np.ndarray, src: np.ndarray, dst: np.ndarray, generation: np.ndarray) -> np.ndarray:
    """``[N]`` bool: reached from a sensor through the feedforward edges ``src -> dst`` (a DAG), generation by
    generation (a source's generation is below its target's, so it is settled first)."""
    reached = is_sensor.copy()
    order = np.argsort(generation[dst], kind="stable")
    src, dst = src[order], dst[order]
    bounds = np.flatnonzero(np.diff(generation[dst])) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, dst.size], strict=True):
        hit = reached[src[lo:hi]]
        reached[dst[lo:hi][hit]] = True
    return reached


def _feedforward(graph: nx.DiGraph) -> nx.DiGraph:
    """The feedforward part of ``graph``: all nodes, feedforward edges only (for error messages)."""
    ff = nx.DiGraph()
    ff.add_nodes_from(graph.nodes)
    ff.add_edges_from((u, v) for u, v, d in graph.edges(data=True) if d["kind"] == "feedforward")
    return ff


def validate(graph: nx.DiGraph) -> None:
    """Raise :class:`GraphError` with one clear message if ``graph`` does not follow the neuron-graph schema."""
    validated_edges(graph)


def validated_edges(graph: nx.DiGraph) -> Edges:
    """:func:`validate` ``graph`` and return it as :class:`Edges`. Linear in nodes + edges (array operations
    after one pass over the edges); networkx is consulted only to word an error."""
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise GraphError(f"graph must be a networkx.DiGraph, got {type(graph).__name__}")
    _check_nodes(graph)
    kinds = nx.get_node_attributes(graph, "kind")
    if "sensor" not in kinds.values():
        raise GraphError("graph has no sensor node (kind='sensor'); at least one is needed to feed the neurons")
    neuron_nodes = [n for n, k in kinds.items() if k == "neuron"]
    if not neuron_nodes:
        raise GraphError("graph has no neuron node (kind='neuron'); at least one motor neuron is needed")
    if not any(graph.nodes[n]["role"] == "motor" for n in neuron_nodes):
        raise GraphError("graph has no motor neuron (a neuron with role='motor'); the task action is read from them")
    nodes, index, src, dst, ff = _edge_arrays(graph)
    is_sensor = np.array([kinds[n] == "sensor" for n in nodes], dtype=bool)
    into_sensor = np.flatnonzero(is_sensor[dst])
    if into_sensor.size:
        e = int(into_sensor[0])
        u, v = nodes[src[e]], nodes[dst[e]]
        raise GraphError(
            f"edge {u!r} -> {v!r} ({'feedforward' if ff[e] else 'context'}) points into sensor {v!r}; sensors take "
            "no input, edges may only end at neurons"
        )

    generation = _generations(len(nodes), src[ff], dst[ff])
    if generation is None:
        cycle = [u for u, _ in nx.find_cycle(_feedforward(graph))]
        path = " -> ".join(repr(n) for n in [*cycle, cycle[0]])
        raise GraphError(f"feedforward edges form a cycle: {path}; use kind='context' for recurrent connections")

    reached = _reached(is_sensor, src[ff], dst[ff], generation)
    if not reached.all():
        _unreached_error(graph, [n for n in neuron_nodes if not reached[index[n]]])
    return Edges(nodes, src, dst, ff, generation)


def _unreached_error(graph: nx.DiGraph, unreached: list) -> None:
    """Raise the message for neurons without a feedforward path from any sensor (a motor neuron's first)."""
    ff = _feedforward(graph)
    for n in unreached:
        if graph.nodes[n]["role"] == "motor":
            starts = sorted(repr(a) for a in nx.ancestors(ff, n) if ff.in_degree(a) == 0)
            origin = (
                f"; its feedforward inputs start at {', '.join(starts)}" if starts else "; it has no feedforward input"
            )
            raise GraphError(f"motor neuron {n!r} is not reached by any sensor through feedforward edges{origin}")
    # In a DAG whose every neuron has a feedforward input, every neuron is reached from a sensor; so the
    # unreached neurons are exactly those downstream of a neuron without feedforward input.
    root = next(n for n in unreached if ff.in_degree(n) == 0)
    below = len(nx.descendants(ff, root))
    also = f" (nor have the {below} neurons downstream of it)" if below else ""
    raise GraphError(
        f"neuron {root!r} has no feedforward input, so it has no feedforward path from any sensor{also}; "
        "every neuron needs an incoming edge with kind='feedforward'"
    )


def neurons(graph: nx.DiGraph) -> list:
    """Names of the neuron nodes, in insertion order."""
    return [n for n, k in graph.nodes(data="kind") if k == "neuron"]


def sensors(graph: nx.DiGraph) -> list:
    """Names of the sensor nodes, in insertion order."""
    return [n for n, k in graph.nodes(data="kind") if k == "sensor"]


def describe(graph: nx.DiGraph) -> str:
    """One-line summary: sensors, neurons per layer (motor count), feedforward and context edge counts."""
    per_layer: dict[int, int] = {}
    motors = 0
    for n in neurons(graph):
        data = graph.nodes[n]
        per_layer[data["layer"]] = per_layer.get(data["layer"], 0) + 1
        motors += data["role"] == "motor"
    edge_kinds = [k for _, _, k in graph.edges(data="kind")]
    layers = ", ".join(f"L{layer}: {count}" for layer, count in sorted(per_layer.items()))
    return (
        f"{len(sensors(graph))} sensors, {sum(per_layer.values())} neurons ({layers}; {motors} motor), "
        f"{edge_kinds.count('feedforward')} feedforward + {edge_kinds.count('context')} context edges"
    )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise GraphError(message)


def _check_common(n_obs: int, n_motor: int, motor_groups: list[str] | None) -> list[str]:
    _require(_is_int(n_obs) and n_obs >= 1, f"n_obs must be an int >= 1, got {n_obs!r}")
    _require(_is_int(n_motor) and n_motor >= 1, f"n_motor must be an int >= 1, got {n_motor!r}")
    if motor_groups is None:
        return [str(i) for i in range(n_motor)]
    _require(
        isinstance(motor_groups, (list, tuple))
        and len(motor_groups) == n_motor
        and all(isinstance(g, str) for g in motor_groups),
        f"motor_groups must be a list of {n_motor} str (one per motor neuron), got {motor_groups!r}",
    )
    return list(motor_groups)


def _skeleton(n_obs: int, hidden_sizes: list[int], motor_groups: list[str]) -> tuple[nx.DiGraph, list[list]]:
    """A graph with sensors, hidden and motor neurons but no edges; also the node names of each layer (0 = sensors)."""
    graph = nx.DiGraph()
    layer_nodes: list[list] = [[f"s{i}" for i in range(n_obs)]]
    graph.add_nodes_from(
        (name, {"kind": "sensor", "index": i, "group": "sensor"}) for i, name in enumerate(layer_nodes[0])
    )
    for layer, size in enumerate(hidden_sizes, start=1):
        names = [f"n{layer}_{i}" for i in range(size)]
        graph.add_nodes_from(names, kind="neuron", layer=layer, role="hidden", group="")
        layer_nodes.append(names)
    motor_layer = len(hidden_sizes) + 1
    names = [f"motor_{i}" for i in range(len(motor_groups))]
    graph.add_nodes_from(
        (name, {"kind": "neuron", "layer": motor_layer, "role": "motor", "group": g})
        for name, g in zip(names, motor_groups, strict=True)
    )
    layer_nodes.append(names)
    return graph, layer_nodes


def _connect_all(graph: nx.DiGraph, sources: list, targets: list) -> None:
    graph.add_edges_from(((u, v) for v in targets for u in sources), kind="feedforward")


def _split(n_hidden: int, parts: int) -> list[int]:
    base, extra = divmod(n_hidden, parts)
    return [base + (i < extra) for i in range(parts)]


def _hidden_sizes(n_neurons: int, n_motor: int, layers: int) -> list[int]:
    _require(_is_int(layers) and layers >= 1, f"layers must be an int >= 1, got {layers!r}")
    _require(_is_int(n_neurons), f"n_neurons must be an int, got {n_neurons!r}")
    n_hidden = n_neurons - n_motor
    if layers == 1:
        _require(n_hidden == 0, f"n_neurons must equal n_motor={n_motor} when layers=1, got {n_neurons}")
        return []
    _require(
        n_hidden >= layers - 1,
        f"n_neurons must be at least n_motor + layers - 1 = {n_motor + layers - 1} "
        f"(one neuron per hidden layer), got {n_neurons}",
    )
    return _split(n_hidden, layers - 1)


def _finish(graph: nx.DiGraph, builder: str, params: dict) -> nx.DiGraph:
    """Name the builder and its parameters on ``graph``. Not validated again here: a built-in builder's graph is
    valid by construction (tested), and :func:`narla.wiring.compile_graph` validates every graph it compiles (the
    pass is a third of building 10^6 neurons)."""
    graph.graph["builder"] = builder
    graph.graph["params"] = params
    return graph


def layered(
    n_obs: int,
    layers: int | None = None,
    width: int = 15,
    connectivity: str = "local",
    n_motor: int = 1,
    motor_groups: list[str] | None = None,
    hidden_layers: int | None = None,
) -> nx.DiGraph:
    """NaRLA's layered network: hidden layers of ``width`` neurons, then the motor layer.

    Give exactly one of ``hidden_layers`` (the NaRLA paper's counting: ``hidden_layers: 1`` is 15 hidden
    neurons + the motor neuron) or ``layers`` (every layer counted, the motor layer included: ``layers = L``
    is ``hidden_layers = L - 1``; kept for older scenarios).

    ``connectivity="full"`` wires every neuron to all of the previous layer. ``"local"`` wires hidden neuron
    ``i`` of layer >= 2 to the previous layer's neurons ``i-1, i, i+1`` (no wraparound); ``"band"`` (the paper's
    code) to ``i-1, i`` (neuron 0 reads neuron 0 only). In every mode the first hidden layer sees all sensors
    and the motor layer sees all of the last hidden layer.
    """
    groups = _check_common(n_obs, n_motor, motor_groups)
    _require(
        (layers is None) != (hidden_layers is None),
        f"give exactly one of hidden_layers (the paper's counting) or layers (motor layer counted), got "
        f"layers={layers!r}, hidden_layers={hidden_layers!r}",
    )
    if hidden_layers is not None:
        ok = _is_int(hidden_layers) and hidden_layers >= 0
        _require(ok, f"hidden_layers must be an int >= 0, got {hidden_layers!r}")
        layers = hidden_layers + 1
    _require(_is_int(layers) and layers >= 1, f"layers must be an int >= 1, got {layers!r}")
    _require(_is_int(width) and width >= 1, f"width must be an int >= 1, got {width!r}")
    _require(
        connectivity in CONNECTIVITIES, f"connectivity must be one of {', '.join(CONNECTIVITIES)}, got {connectivity!r}"
    )
    offsets = (-1, 0) if connectivity == "band" else (-1, 0, 1)
    graph, layer_nodes = _skeleton(n_obs, [width] * (layers - 1), groups)
    for layer in range(1, layers + 1):
        previous, current = layer_nodes[layer - 1], layer_nodes[layer]
        if connectivity == "full" or layer == 1 or layer == layers:
            _connect_all(graph, previous, current)
            continue
        graph.add_edges_from(
            ((previous[i + o], v) for i, v in enumerate(current) for o in offsets if 0 <= i + o < len(previous)),
            kind="feedforward",
        )
    params = {
        "n_obs": n_obs,
        "layers": layers,
        "width": width,
        "connectivity": connectivity,
        "n_motor": n_motor,
        "motor_groups": groups,
    }
    if hidden_layers is not None:
        params["hidden_layers"] = hidden_layers
    return _finish(graph, "layered", params)


def random_sparse(
    n_obs: int,
    n_neurons: int,
    fan_in: int = 8,
    n_motor: int = 1,
    layers: int = 4,
    seed: int = 0,
    motor_groups: list[str] | None = None,
) -> nx.DiGraph:
    """A random sparse feedforward network of ``n_neurons`` neurons (motor neurons included).

    The ``n_neurons - n_motor`` hidden neurons are split evenly into ``layers - 1`` layers; every neuron draws
    ``min(fan_in, available)`` distinct sources at random from all earlier layers (sensors are layer 0), so the
    feedforward part is a DAG and every neuron is reached from the sensors. Deterministic for a ``seed``.
    """
    groups = _check_common(n_obs, n_motor, motor_groups)
    _require(_is_int(fan_in) and fan_in >= 1, f"fan_in must be an int >= 1, got {fan_in!r}")
    sizes = _hidden_sizes(n_neurons, n_motor, layers)
    graph, layer_nodes = _skeleton(n_obs, sizes, groups)
    rng = random.Random(seed)
    pool = list(layer_nodes[0])
    edges = []
    for current in layer_nodes[1:]:
        k = min(fan_in, len(pool))
        for v in current:
            edges.extend((pool[j], v) for j in rng.sample(range(len(pool)), k))
        pool.extend(current)
    graph.add_edges_from(edges, kind="feedforward")
    params = {
        "n_obs": n_obs,
        "n_neurons": n_neurons,
        "fan_in": fan_in,
        "n_motor": n_motor,
        "layers": layers,
        "seed": seed,
        "motor_groups": groups,
    }
    return _finish(graph, "random_sparse", params)


def _ring_sources(i: int, size: int, prev_size: int, k: int, p: float, rng: random.Random) -> list[int]:
    """Indices in the previous layer feeding neuron ``i``: the ``k`` nearest on a ring, each rewired with prob ``p``."""
    if k >= prev_size:
        return list(range(prev_size))
    centre = (i * prev_size) // size
    offsets = [0]
    step = 1
    while len(offsets) < k:
        offsets.append(step)
        if len(offsets) < k:
            offsets.append(-step)
        step += 1
    chosen = [(centre + o) % prev_size for o in offsets]
    taken = set(chosen)
    for j, src in enumerate(chosen):
        if rng.random() < p:
            new = rng.randrange(prev_size)
            while new in taken:
                new = rng.randrange(prev_size)
            taken.discard(src)
            taken.add(new)
            chosen[j] = new
    return chosen


def small_world(
    n_obs: int,
    n_neurons: int,
    k: int = 4,
    p: float = 0.1,
    n_motor: int = 1,
    layers: int = 4,
    seed: int = 0,
    motor_groups: list[str] | None = None,
) -> nx.DiGraph:
    """A layered small-world network of ``n_neurons`` neurons (motor neurons included).

    Feedforward: each neuron of hidden layer >= 2 sees the ``k`` nearest-by-index neurons of the previous layer
    on a ring, each edge rewired with probability ``p`` to a random neuron of that layer; the first hidden layer
    sees all sensors and the motor layer all of the last hidden layer. Context: a Watts-Strogatz ring
    (``k``, ``p``) within each hidden layer, with edges in both directions. Deterministic for a ``seed``.
    """
    groups = _check_common(n_obs, n_motor, motor_groups)
    _require(_is_int(k) and k >= 1, f"k must be an int >= 1, got {k!r}")
    _require(isinstance(p, (int, float)) and 0.0 <= p <= 1.0, f"p must be a number in [0, 1], got {p!r}")
    sizes = _hidden_sizes(n_neurons, n_motor, layers)
    graph, layer_nodes = _skeleton(n_obs, sizes, groups)
    rng = random.Random(seed)
    for layer in range(1, layers + 1):
        previous, current = layer_nodes[layer - 1], layer_nodes[layer]
        if layer == 1 or layer == layers:
            _connect_all(graph, previous, current)
            continue
        graph.add_edges_from(
            (
                (previous[j], v)
                for i, v in enumerate(current)
                for j in _ring_sources(i, len(current), len(previous), k, p, rng)
            ),
            kind="feedforward",
        )
    for current in layer_nodes[1:-1]:
        ring = nx.watts_strogatz_graph(len(current), min(k, len(current)), p, seed=rng.randrange(2**32))
        for a, b in ring.edges:
            graph.add_edge(current[a], current[b], kind="context")
            graph.add_edge(current[b], current[a], kind="context")
    params = {
        "n_obs": n_obs,
        "n_neurons": n_neurons,
        "k": k,
        "p": p,
        "n_motor": n_motor,
        "layers": layers,
        "seed": seed,
        "motor_groups": groups,
    }
    return _finish(graph, "small_world", params)


def from_networkx(graph: nx.DiGraph) -> nx.DiGraph:
    """A validated copy of a user's graph, with defaults filled in.

    Missing edge ``kind`` becomes ``"feedforward"`` and missing neuron ``group`` becomes ``""``. Node ``kind`` is
    never guessed: a node without it is an error.
    """
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise GraphError(f"graph must be a networkx.DiGraph, got {type(graph).__name__}")
    out = graph.copy()
    for _, _, data in out.edges(data=True):
        data.setdefault("kind", "feedforward")
    for _, data in out.nodes(data=True):
        if data.get("kind") == "neuron":
            data.setdefault("group", "")
    out.graph.setdefault("builder", "from_networkx")
    validate(out)
    return out
