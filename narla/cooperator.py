"""Graphs of the permutation-invariant networks: AttentionNeuron and the Cooperator.

:func:`attention_neuron` builds the graph of :class:`narla.neurons.attention_neuron.AttentionNeuronPopulation`
(read that module for the equations); :func:`cooperator` is the same graph with the Cooperator's key modulation.
Every sensory, latent, head and motor neuron is a node (an agent of the PettingZoo views):

- ``sense{i}`` (layer 1, ``group="sensory"``, ``tie="sensory"``, ``cell="lstm"`` or ``"gru"``): reads sensor
  ``s{i}``;
- ``latent{j}`` (layer 2, ``group="latent"``, ``tie="latent"``, ``query=j``): reads every sensory neuron;
- ``head{l}_{r}`` (layer 3 + l): reads every neuron of the layer before;
- ``motor_{r}`` (the last layer, ``role="motor"``): reads the layer before; its value is (part of) the action.

With a modulation, each sensory neuron's contextual field reads the latent neurons' queries: ``context`` edges
``latent{j} -> sense{i}``. The graph records its hyper-parameters in ``graph.graph["params"]``;
:func:`population_from_graph` builds the population from them.
"""

from __future__ import annotations

import networkx as nx

from narla.graph import from_networkx
from narla.neurons.attention_neuron import CELLS, CONTEXT_MAPS, MODULATIONS, AttentionNeuronPopulation

NETWORK_BUILDERS = ("attention_neuron", "cooperator")


def attention_neuron(
    n_obs: int,
    motor_groups: list[str],
    latent: int = 16,
    head: list[int] | None = None,
    msg_dim: int = 32,
    state_dim: int = 8,
    pos_dim: int = 8,
    modulation: str = "none",
    context_map: str = "slot",
    cell: str = "lstm",
) -> nx.DiGraph:
    """The AttentionNeuron graph (``modulation="none"``) or a modulated variant; see the module doc."""
    head = list(head or [])
    for name, value in (("latent", latent), ("msg_dim", msg_dim), ("state_dim", state_dim), ("pos_dim", pos_dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"network.{name}: must be an integer >= 1, got {value!r}")
    if modulation not in MODULATIONS:
        raise ValueError(f"network.modulation: {modulation!r}; allowed: {', '.join(MODULATIONS)}")
    if context_map not in CONTEXT_MAPS:
        raise ValueError(f"network.context_map: {context_map!r}; allowed: {', '.join(CONTEXT_MAPS)}")
    if cell not in CELLS:
        raise ValueError(f"network.cell: {cell!r}; allowed: {', '.join(CELLS)}")
    if any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in head):
        raise ValueError(f"network.head: must be a list of layer widths >= 1, got {head!r}")
    graph = nx.DiGraph()
    sensory = [f"sense{i}" for i in range(n_obs)]
    for i, name in enumerate(sensory):
        graph.add_node(f"s{i}", kind="sensor", index=i, group="sensor")
        graph.add_node(name, kind="neuron", layer=1, role="hidden", group="sensory", tie="sensory", cell=cell)
        graph.add_edge(f"s{i}", name, kind="feedforward")
    previous = [f"latent{j}" for j in range(latent)]
    for j, name in enumerate(previous):
        graph.add_node(name, kind="neuron", layer=2, role="hidden", group="latent", tie="latent", query=j)
        graph.add_edges_from(((u, name) for u in sensory), kind="feedforward")
        if modulation != "none":
            graph.add_edges_from(((name, u) for u in sensory), kind="context")
    for layer, width in enumerate(head):
        names = [f"head{layer}_{r}" for r in range(width)]
        for name in names:
            graph.add_node(name, kind="neuron", layer=3 + layer, role="hidden", group=f"head{layer}")
            graph.add_edges_from(((u, name) for u in previous), kind="feedforward")
        previous = names
    for r, group in enumerate(motor_groups):
        name = f"motor_{r}"
        graph.add_node(name, kind="neuron", layer=3 + len(head), role="motor", group=group)
        graph.add_edges_from(((u, name) for u in previous), kind="feedforward")
    graph.graph["builder"] = "attention_neuron"
    graph.graph["params"] = {
        "n_obs": n_obs, "num_motor": len(motor_groups), "latent": latent, "head": head, "msg_dim": msg_dim,
        "state_dim": state_dim, "pos_dim": pos_dim, "modulation": modulation, "context_map": context_map,
        "cell": cell,
    }
    return from_networkx(graph)


def cooperator(
    n_obs: int, motor_groups: list[str], modulation: str = "cooperation_relu6", **kwargs
) -> nx.DiGraph:
    """The Cooperator: :func:`attention_neuron` with the keys modulated (the authors' ``relu6`` form by default)."""
    if modulation == "none":
        raise ValueError("network.modulation: the cooperator modulates its keys; use builder attention_neuron for none")
    return attention_neuron(n_obs, motor_groups, modulation=modulation, **kwargs)


def population_from_graph(graph: nx.DiGraph, action_dim: int) -> AttentionNeuronPopulation:
    """The population an :func:`attention_neuron` / :func:`cooperator` graph describes."""
    p = graph.graph["params"]
    return AttentionNeuronPopulation(
        num_sensory=p["n_obs"], action_dim=action_dim, num_latent=p["latent"], num_motor=p["num_motor"],
        msg_dim=p["msg_dim"], state_dim=p["state_dim"], pos_dim=p["pos_dim"], head=p["head"],
        modulation=p["modulation"], context_map=p["context_map"], cell=p.get("cell", "lstm"),
    )


def is_attention_network(graph: nx.DiGraph) -> bool:
    """Whether ``graph`` was built by :func:`attention_neuron` or :func:`cooperator`."""
    return graph.graph.get("builder") == "attention_neuron"
