"""Compile a validated neuron graph into index tensors the batched engine runs on.

Layout of the *activity vector* of one tick, ``act[B, S + N]``: the ``S`` sensor values first (in
sensor order), then the ``N`` neurons' spikes in engine order. Engine order sorts neurons by their
feedforward stage (``networkx.topological_generations``), so the neurons of one stage are one
contiguous slice and a stage's forward pass is one batched op over that slice.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import networkx as nx
import torch

from narla.graph import validate


@dataclass
class Wiring:
    """The compiled graph. Shapes use S sensors, N neurons, F max feedforward fan-in, Fc max context fan-in."""

    sensor_names: list
    neuron_names: list
    group_names: list
    sensor_index: torch.Tensor  # [S] long: observation feature read by each sensor
    stages: list[tuple[int, int]]  # neuron slices [start, end) in engine order, one per stage
    ff_idx: torch.Tensor  # [N, F] long: presynaptic positions in the activity vector [S + N]
    ff_mask: torch.Tensor  # [N, F] float: 1 for a real synapse, 0 for padding
    ctx_idx: torch.Tensor  # [N, Fc] long: context sources in the previous tick's activity vector
    ctx_mask: torch.Tensor  # [N, Fc] float
    layer: torch.Tensor  # [N] long, 1-based layer of each neuron
    motor: torch.Tensor  # [N] bool, True for motor neurons
    group: torch.Tensor  # [N] long index into group_names
    edge_src: torch.Tensor  # [E] long: neuron -> neuron feedforward edges (engine indices)
    edge_dst: torch.Tensor  # [E] long
    motor_idx: torch.Tensor  # [M] long, engine indices of motor neurons

    @property
    def num_sensors(self) -> int:
        return len(self.sensor_names)

    @property
    def num_neurons(self) -> int:
        return len(self.neuron_names)

    @property
    def num_layers(self) -> int:
        return int(self.layer.max()) if self.num_neurons else 0

    def to(self, device: torch.device | str) -> Wiring:
        """A copy with every tensor on ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return Wiring(**moved)


def _padded(rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        idx[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1.0
    return idx, mask


def compile_graph(graph: nx.DiGraph, device: torch.device | str = "cpu") -> Wiring:
    """Validate ``graph`` and turn it into a :class:`Wiring` on ``device``."""
    validate(graph)
    sensors = [n for n, d in graph.nodes(data=True) if d["kind"] == "sensor"]
    sensors.sort(key=lambda n: graph.nodes[n]["index"])
    feedforward = nx.DiGraph()
    feedforward.add_nodes_from(graph.nodes)
    feedforward.add_edges_from((u, v) for u, v, d in graph.edges(data=True) if d["kind"] == "feedforward")
    insertion = {n: i for i, n in enumerate(graph.nodes)}
    neurons: list = []
    stages: list[tuple[int, int]] = []
    for generation in nx.topological_generations(feedforward):
        members = [n for n in generation if graph.nodes[n]["kind"] == "neuron"]
        if not members:
            continue
        members.sort(key=lambda n: (graph.nodes[n]["layer"], insertion[n]))
        stages.append((len(neurons), len(neurons) + len(members)))
        neurons.extend(members)

    position = {n: i for i, n in enumerate(sensors)}
    position.update({n: len(sensors) + i for i, n in enumerate(neurons)})
    ff_rows, ctx_rows = [], []
    for n in neurons:
        ff_rows.append(sorted(position[u] for u, _, d in graph.in_edges(n, data=True) if d["kind"] == "feedforward"))
        ctx_rows.append(sorted(position[u] for u, _, d in graph.in_edges(n, data=True) if d["kind"] == "context"))
    ff_idx, ff_mask = _padded(ff_rows, max((len(r) for r in ff_rows), default=0))
    ctx_idx, ctx_mask = _padded(ctx_rows, max((len(r) for r in ctx_rows), default=0))

    groups = sorted({str(graph.nodes[n].get("group", "")) for n in neurons})
    group_of = {g: i for i, g in enumerate(groups)}
    engine = {n: i for i, n in enumerate(neurons)}
    neuron_edges = [
        (engine[u], engine[v])
        for u, v, d in graph.edges(data=True)
        if d["kind"] == "feedforward" and u in engine and v in engine
    ]
    motor = torch.tensor([graph.nodes[n]["role"] == "motor" for n in neurons], dtype=torch.bool)
    wiring = Wiring(
        sensor_names=sensors,
        neuron_names=neurons,
        group_names=groups,
        sensor_index=torch.tensor([graph.nodes[n]["index"] for n in sensors], dtype=torch.long),
        stages=stages,
        ff_idx=ff_idx,
        ff_mask=ff_mask,
        ctx_idx=ctx_idx,
        ctx_mask=ctx_mask,
        layer=torch.tensor([graph.nodes[n]["layer"] for n in neurons], dtype=torch.long),
        motor=motor,
        group=torch.tensor([group_of[str(graph.nodes[n].get("group", ""))] for n in neurons], dtype=torch.long),
        edge_src=torch.tensor([e[0] for e in neuron_edges], dtype=torch.long),
        edge_dst=torch.tensor([e[1] for e in neuron_edges], dtype=torch.long),
        motor_idx=torch.nonzero(motor).flatten(),
    )
    return wiring.to(device)
