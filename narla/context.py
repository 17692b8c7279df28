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
    neurons = [n for n, d in out.nodes(data=True) if d["kind"] == "neuron"]
    for v in neurons:
        lv, gv = out.nodes[v]["layer"], out.nodes[v].get("group", "")
        for u in neurons:
            if u == v or out.has_edge(u, v):
                continue
            lu, gu = out.nodes[u]["layer"], out.nodes[u].get("group", "")
            is_proximal = lu == lv and gu == gv
            is_distal = lu < lv or (lu == lv and gu != gv)
            is_feedback = lu > lv
            if (proximal and is_proximal) or (distal and is_distal) or (feedback and is_feedback):
                out.add_edge(u, v, kind="context")
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
