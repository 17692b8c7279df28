"""Compile a validated neuron graph into index tensors the batched engine runs on.

Layout of the *activity vector* of one tick, ``act[B, S + N]``: the ``S`` sensor values first (in
sensor order), then the ``N`` neurons' spikes in engine order. Engine order sorts neurons by their
feedforward stage (``networkx.topological_generations``), so the neurons of one stage are one
contiguous slice and a stage's forward pass is one batched op over that slice.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import networkx as nx
import numpy as np
import torch

from narla.graph import gc_paused, validated_edges


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

    @cached_property
    def num_layers(self) -> int:
        """The number of layers (read from the device once: later calls do not wait for it)."""
        return int(self.layer.max()) if self.num_neurons else 0

    @cached_property
    def layer_sizes(self) -> torch.Tensor:
        """``[num_layers]`` float: neurons per layer, on the wiring's device (computed once)."""
        return torch.bincount(self.layer - 1, minlength=self.num_layers).float()

    def to(self, device: torch.device | str) -> Wiring:
        """A copy with every tensor on ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return Wiring(**moved)


def _padded(row: np.ndarray, col: np.ndarray, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Entries ``col[e]`` of rows ``row[e]`` (``row`` sorted, then ``col`` within a row) as ``idx[rows, F]`` padded
    with 0 and ``mask[rows, F]`` (1 for a real entry); ``F`` is the longest row."""
    counts = np.bincount(row, minlength=rows)
    width = int(counts.max()) if rows and row.size else 0
    first = np.zeros(rows, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    slot = np.arange(row.size) - first[row]
    idx = torch.zeros(rows, width, dtype=torch.long)
    mask = torch.zeros(rows, width)
    at = (torch.from_numpy(row), torch.from_numpy(slot))
    idx[at] = torch.from_numpy(col)
    mask[at] = 1.0
    return idx, mask


def _rows(dst: np.ndarray, src: np.ndarray, position: np.ndarray, num_sensors: int):
    """Edges into neurons as (neuron row, source position), sorted by row then position."""
    row, col = position[dst] - num_sensors, position[src]
    order = np.lexsort((col, row))
    return row[order], col[order]


@gc_paused()
def compile_graph(graph: nx.DiGraph, device: torch.device | str = "cpu") -> Wiring:
    """Validate ``graph`` and turn it into a :class:`Wiring` on ``device``. Linear in nodes + edges."""
    edges = validated_edges(graph)
    nodes, data = edges.nodes, graph.nodes
    is_neuron = np.array([data[v]["kind"] == "neuron" for v in nodes], dtype=bool)
    sensor_ids = np.flatnonzero(~is_neuron)
    sensor_ids = sensor_ids[np.argsort([data[nodes[i]]["index"] for i in sensor_ids], kind="stable")]
    neuron_ids = np.flatnonzero(is_neuron)
    layer_of = np.zeros(len(nodes), dtype=np.int64)
    layer_of[neuron_ids] = [data[nodes[i]]["layer"] for i in neuron_ids]
    # engine order: by feedforward generation, then layer, then insertion (the stages are the generations)
    neuron_ids = neuron_ids[np.lexsort((neuron_ids, layer_of[neuron_ids], edges.generation[neuron_ids]))]
    generations = edges.generation[neuron_ids]
    bounds = [0, *(np.flatnonzero(np.diff(generations)) + 1).tolist(), len(neuron_ids)]
    stages = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]

    s, n = len(sensor_ids), len(neuron_ids)
    position = np.full(len(nodes), -1, dtype=np.int64)
    position[sensor_ids] = np.arange(s)
    position[neuron_ids] = s + np.arange(n)
    ff, src, dst = edges.feedforward, edges.src, edges.dst
    ff_idx, ff_mask = _padded(*_rows(dst[ff], src[ff], position, s), n)
    ctx_idx, ctx_mask = _padded(*_rows(dst[~ff], src[~ff], position, s), n)

    sensors = [nodes[i] for i in sensor_ids]
    neurons = [nodes[i] for i in neuron_ids]
    group_names = [str(data[v].get("group", "")) for v in neurons]
    groups = sorted(set(group_names))
    group_of = {g: i for i, g in enumerate(groups)}
    between = ff & is_neuron[src] & is_neuron[dst]  # neuron -> neuron feedforward edges, in graph order
    motor = torch.tensor([data[v]["role"] == "motor" for v in neurons], dtype=torch.bool)
    wiring = Wiring(
        sensor_names=sensors,
        neuron_names=neurons,
        group_names=groups,
        sensor_index=torch.tensor([data[v]["index"] for v in sensors], dtype=torch.long),
        stages=stages,
        ff_idx=ff_idx,
        ff_mask=ff_mask,
        ctx_idx=ctx_idx,
        ctx_mask=ctx_mask,
        layer=torch.from_numpy(layer_of[neuron_ids].copy()),
        motor=motor,
        group=torch.tensor([group_of[g] for g in group_names], dtype=torch.long),
        edge_src=torch.from_numpy(position[src[between]] - s),
        edge_dst=torch.from_numpy(position[dst[between]] - s),
        motor_idx=torch.nonzero(motor).flatten(),
    )
    return wiring.to(device)
