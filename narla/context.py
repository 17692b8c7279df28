"""Context sources of two-point neurons: what feeds each neuron's contextual field C.

Two kinds of source, each switchable:

- **Graph sources** are ``kind="context"`` edges added by :func:`add_context`. They read the *previous*
  tick's activity vector ``[S + N]`` (see :mod:`narla.wiring`), so they may form cycles:

  - *proximal*: the other neurons of the same layer **and** the same group (same-type neighbours);
  - *distal*: neurons of other groups in the same layer, and neurons of earlier layers;
  - *feedback*: neurons of later layers (top-down context, e.g. motor -> sensory).

  A ``networkx.DiGraph`` holds one edge per ordered pair, so a source that is already a neuron's
  feedforward input cannot also be its context: such pairs are skipped (the feedforward edge wins).
- **Universal sources** are not edges: they are extra context columns appended to every neuron's
  gathered context inputs by :class:`narla.neurons.Population`:

  - *position*: a fixed sinusoidal encoding of the neuron's engine index, ``[N, P]``
    (:func:`positional_encoding`);
  - *action*: the previous tick's task action, ``[B, A]`` broadcast to all neurons (one-hot for a
    discrete task, the action vector itself for a continuous one; :func:`action_features`), zero at an
    episode's first tick.

Context weights (one per context input, plus a bias) are slices of each neuron's own parameters and
are learned by its own learner, like its feedforward weights.
"""

from __future__ import annotations

import math

import gymnasium as gym
import networkx as nx
import torch


def add_context(
    graph: nx.DiGraph, proximal: bool = False, distal: bool = False, feedback: bool = False
) -> nx.DiGraph:
    """A copy of ``graph`` with ``kind="context"`` edges for the switched-on sources (see the module doc).

    Self-loops are never added; pairs that already carry an edge (feedforward or context) keep it.
    """
    out = graph.copy()
    order = {n: i for i, n in enumerate(out.nodes)}  # sources are added in graph order, as a neuron's inputs are
    buckets: dict[int, dict[str, list]] = {}  # layer -> group -> neurons, in graph order
    for n, d in out.nodes(data=True):
        if d["kind"] == "neuron":
            buckets.setdefault(d["layer"], {}).setdefault(d.get("group", ""), []).append(n)
    layers = sorted(buckets)
    # Visit only the sources each switched-on kind allows (work proportional to the edges added, not N²).
    for layer in layers:
        below = [u for lu in layers if lu < layer for g in buckets[lu].values() for u in g] if distal else []
        above = [u for lu in layers if lu > layer for g in buckets[lu].values() for u in g] if feedback else []
        for group, members in buckets[layer].items():
            others = [u for g, us in buckets[layer].items() if g != group for u in us] if distal else []
            sources = sorted((members if proximal else []) + others + below + above, key=order.__getitem__)
            for v in members:
                out.add_edges_from(((u, v) for u in sources if u != v and not out.has_edge(u, v)), kind="context")
    return out


def positional_encoding(num: int, dim: int) -> torch.Tensor:
    """Sinusoidal encoding ``[num, dim]`` of indices ``0..num-1`` (Transformer style).

    ``pe[i, 2k] = sin(i / 10000^(2k/dim))``, ``pe[i, 2k+1] = cos(i / 10000^(2k/dim))``.
    """
    position = torch.arange(num, dtype=torch.float32).unsqueeze(1)
    k = torch.arange(0, dim, 2, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * k / max(dim, 1))
    pe = torch.zeros(num, dim)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return pe


def action_dim(space: gym.Space) -> int:
    """Width ``A`` of :func:`action_features` for ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(space.shape[0])


def action_features(action: torch.Tensor, space: gym.Space) -> torch.Tensor:
    """Task actions -> universal-context features ``[cols, A]``.

    Discrete: ``action[cols]`` (long) -> one-hot. Continuous: ``action[cols, A]`` -> float, unchanged.
    """
    if isinstance(space, gym.spaces.Discrete):
        return torch.nn.functional.one_hot(action.long(), int(space.n)).float()
    return action.float().reshape(action.shape[0], -1)
