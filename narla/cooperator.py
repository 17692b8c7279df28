"""The Cooperator network: a permutation-invariant sensory layer of two-point neurons feeding motor groups.

Shape (after AttentionNeuron / the Cooperator, adapted to spiking RL-agent neurons)::

    obs[i] ──> sensory neuron (i, k)   for every feature i < n_obs and channel k < channels
               R = MLP_k(obs[i]),  C = w_k · [context] ,  fires with σ(AMTF(R, C))
    latent code m_k = mean_i spike(i, k)            (one number per channel: a set function of the features)
    motor neuron j: R = MLP_j(m_1..m_K), C = w_j · [context],  fires with σ(AMTF(R, C))  ──> readout

Why this shape is permutation invariant, and the one exception to "parameters are never shared":

- A sensory neuron that owned private parameters and always saw feature ``i`` could not be invariant to
  shuffling the features. As in AttentionNeuron, the sensory network is **shared**: all sensory neurons of
  channel ``k`` are *tied* (node attribute ``tie``) to one parameter row. Each tied neuron still samples its
  own spike, receives its own reward and contributes its own policy gradient; the shared row's gradient is
  the **sum** of those per-neuron gradients (exactly what one optimizer per neuron would apply if they all
  started equal and applied their summed updates). Every other neuron keeps private parameters.
- The motor neurons read the sensory layer through a fixed mean over each channel (node attribute
  ``pool=True`` on the reader, ``channel`` on the sources), so they see a set function of the features:
  AttentionNeuron's fixed-query attention pooling replaced by the simplest symmetric pooling.
- Context that reaches sensory neurons from other sensory neurons (proximal) is pooled the same way;
  context from motor neurons (feedback) and the previous task action (universal) are not permuted by a
  shuffle. A positional encoding of the neuron index *is* permuted by a shuffle, so
  ``universal_position`` breaks the invariance and is off in the Cooperator scenarios.

Shuffling the observation vector therefore permutes the sensory spikes of each channel and leaves every
motor neuron's distribution, hence the action distribution, unchanged (tested in ``tests/test_cooperation.py``).
"""

from __future__ import annotations

import networkx as nx
import torch

from narla.graph import from_networkx
from narla.wiring import Wiring


def cooperator(n_obs: int, motor_groups: list[str], channels: int = 4) -> nx.DiGraph:
    """The Cooperator graph: ``n_obs * channels`` tied sensory neurons (layer 1), then the motor neurons (layer 2).

    Sensory neuron ``sense{i}_{k}`` reads only sensor ``s{i}``; it is tied to ``sensory{k}``, carries
    ``channel="c{k}"`` and ``group="c{k}"`` (so proximal context links the neurons of one channel).
    Motor neuron ``motor_{j}`` (``group=motor_groups[j]``) reads every sensory neuron, pooled per channel.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    graph = nx.DiGraph()
    for i in range(n_obs):
        graph.add_node(f"s{i}", kind="sensor", index=i, group="sensor")
    sensory = []
    for i in range(n_obs):
        for k in range(channels):
            name = f"sense{i}_{k}"
            graph.add_node(
                name, kind="neuron", layer=1, role="hidden", group=f"c{k}", channel=f"c{k}", tie=f"sensory{k}",
                pool=True,
            )
            graph.add_edge(f"s{i}", name, kind="feedforward")
            sensory.append(name)
    for j, g in enumerate(motor_groups):
        name = f"motor_{j}"
        graph.add_node(name, kind="neuron", layer=2, role="motor", group=g, pool=True)
        graph.add_edges_from(((u, name) for u in sensory), kind="feedforward")
    graph.graph["builder"] = "cooperator"
    graph.graph["params"] = {"n_obs": n_obs, "motor_groups": list(motor_groups), "channels": channels}
    return from_networkx(graph)


def tied_slots(graph: nx.DiGraph, wiring: Wiring) -> torch.Tensor | None:
    """``slots[N]``: the parameter row of each neuron in engine order (neurons sharing a ``tie`` share a row).

    None when no neuron is tied (one private row per neuron).
    """
    ties = [graph.nodes[n].get("tie") for n in wiring.neuron_names]
    if all(t is None for t in ties):
        return None
    row_of: dict = {}
    slots = []
    for i, t in enumerate(ties):
        key = ("tie", t) if t is not None else ("own", i)
        slots.append(row_of.setdefault(key, len(row_of)))
    return torch.tensor(slots, dtype=torch.long)


def _pool_matrix(graph: nx.DiGraph, wiring: Wiring, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``P[N, F, F]``: for a ``pool=True`` neuron, slot ``j < K`` of ``P @ x`` is the mean of its inputs of the
    ``j``-th channel (sorted names), followed by its un-channelled inputs in order; identity for other neurons."""
    names = list(wiring.sensor_names) + list(wiring.neuron_names)
    n, width = idx.shape
    pool = torch.zeros(n, width, width)
    for v, target in enumerate(wiring.neuron_names):
        real = [int(p) for p, m in zip(idx[v].tolist(), mask[v].tolist(), strict=True) if m > 0]
        if not graph.nodes[target].get("pool", False):
            pool[v] = torch.eye(width)
            continue
        chans = [graph.nodes[names[p]].get("channel") for p in real]
        order = sorted({c for c in chans if c is not None})
        slot = {c: j for j, c in enumerate(order)}
        rest = len(order)
        for f, c in enumerate(chans):
            if c is None:
                pool[v, rest, f] = 1.0
                rest += 1
            else:
                pool[v, slot[c], f] = 1.0 / chans.count(c)
    return pool


def input_pooling(graph: nx.DiGraph, wiring: Wiring) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Fixed pooling maps ``(ff_pool[N, F, F], ctx_pool[N, Fc, Fc])`` for :class:`narla.neurons.Population`.

    ``(None, None)`` when no neuron has ``pool=True``.
    """
    if not any(graph.nodes[n].get("pool", False) for n in wiring.neuron_names):
        return None, None
    ff = _pool_matrix(graph, wiring, wiring.ff_idx.cpu(), wiring.ff_mask.cpu())
    ctx = _pool_matrix(graph, wiring, wiring.ctx_idx.cpu(), wiring.ctx_mask.cpu())
    return ff.to(wiring.ff_idx.device), ctx.to(wiring.ff_idx.device)
