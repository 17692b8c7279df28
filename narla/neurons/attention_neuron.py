"""AttentionNeuron and the Cooperator as populations of rate neurons with memory, every member batched.

The network (Tang & Ha's AttentionNeuron; the Cooperator of Adeel et al. modulates its keys), in narla's terms
of neurons, each a graph node and an agent (:func:`narla.cooperator.attention_neuron` builds the graph):

- **Sensory neurons** ``i < S``, one per observation feature. Neuron i sees only ``o_i`` and the previous task
  action ``a`` and keeps a memory, reset at each episode's start: ``(h_i, c_i)`` of an LSTM cell (``cell:
  lstm``, AttentionNeuron's choice) or ``h_i`` of a GRU cell (``cell: gru``). All sensory neurons share (are
  *tied* to) one cell, which is what makes the layer permutation invariant. Each emits a key from its memory::

      (h_i, c_i) = LSTMCell([o_i, a], (h_i, c_i))   or   h_i = GRUCell([o_i, a], h_i)
      k_i = W_k h_i + b_k                                                               [d]

- **Latent neurons** ``j < M`` hold fixed positional queries ``q_j = W_q p_j + b_q`` (``p`` the sinusoidal table
  ``[M, P]``) and read every sensory neuron by attention, with the raw features as values::

      m_j = tanh( Σ_i tanh(q_j · k_i / √d) o_i )

- **Cooperator modulation** (``modulation: cooperation_relu6``, the authors' code): each sensory neuron's key is
  modulated by its context, a learned linear map across the queries, ``c_i = Σ_j Wc[i, j] q_j + bc[i]``::

      k_i ← relu6(k_i² + 2 k_i + c_i (1 + |k_i|))            (elementwise over the d components)

  ``cooperation`` uses the cooperation equation ``k² + 2k + 2c(1 + |k|)`` instead. ``context_map: slot`` gives
  every sensory neuron its own row of ``Wc`` (the authors' ``Linear(M → S)``; a shuffle then moves a feature to
  another row, so the network is no longer exactly permutation invariant); ``shared`` ties one row to all of
  them (invariant).
- **Head neurons** (``head: [H1, ...]``) and **motor neurons** are rate neurons: neuron r of a layer computes
  ``tanh(w_r · x + b_r)`` from the previous layer's outputs; the motor neurons' values are the action
  (:class:`narla.readout.Readout` kind ``value``).

Every neuron's output is deterministic (a rate), so the network is trained by evolution strategies.

Batching. A tick of ``B`` copies is a few batched products; no Python loop over neurons or copies. Parameters
may carry a leading *member* axis ``P`` (evaluation strategies evaluate ``P`` parameter vectors at once): the
``B`` columns are then ``P`` consecutive groups of ``k = B / P`` copies, and group ``p`` uses member ``p``.

Each parameter is stored with a leading *row* axis whose rows are owned by neurons (:meth:`row_owner`): the tied
sensory cell and key map are one row owned by all sensory neurons, the query map one row owned by all latent
neurons, ``Wc[i]`` is sensory neuron i's own, and row r of a head layer is that layer's neuron r's own.

A sensory neuron's activity (what rewards and rasters see) is the root mean square of its (modulated) key.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from narla.context import positional_encoding
from narla.cooperation import cooperation, cooperation_relu6

MODULATIONS = ("none", "cooperation_relu6", "cooperation")
CONTEXT_MAPS = ("slot", "shared")
CELLS = {"lstm": 4, "gru": 3}  # memory cell -> number of gates (rows of the input and hidden weights, in H)


def _modulate(kind: str, k: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    if kind == "cooperation_relu6":
        return cooperation_relu6(k, c)
    return cooperation(k, c)


def _uniform(*shape: int, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return (torch.rand(*shape) * 2 - 1) * bound


class AttentionNeuronPopulation(nn.Module):
    """Sensory (tied LSTM cell) → latent (fixed-query attention) → head → motor rate neurons; see the module doc.

    Args:
        num_sensory: ``S``, one sensory neuron per observation feature.
        action_dim: ``A``, width of the previous-action features a sensory neuron sees.
        num_latent: ``M`` latent neurons (queries).
        num_motor: motor neurons (their values are the action).
        msg_dim: ``d``, width of queries and keys.
        state_dim: ``H``, the sensory LSTM's state width.
        pos_dim: ``P``, width of the fixed positional table the queries are built from.
        head: widths of the hidden rate layers between the latent code and the motor neurons.
        modulation: ``none`` (AttentionNeuron), ``cooperation_relu6`` (the Cooperator) or ``cooperation``.
        context_map: ``slot`` (one context row per sensory neuron) or ``shared`` (one row for all).
        cell: the sensory neurons' memory, ``lstm`` (memory ``[2, B, S, H]``: h and c) or ``gru`` (``[1, B, S, H]``).
    """

    whole_network = True

    def __init__(
        self,
        num_sensory: int,
        action_dim: int,
        num_latent: int,
        num_motor: int,
        msg_dim: int = 32,
        state_dim: int = 8,
        pos_dim: int = 8,
        head: list[int] | tuple[int, ...] = (),
        modulation: str = "none",
        context_map: str = "slot",
        cell: str = "lstm",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"network.cell: {cell!r}; allowed: {', '.join(CELLS)}")
        if modulation not in MODULATIONS:
            raise ValueError(f"network.modulation: {modulation!r}; allowed: {', '.join(MODULATIONS)}")
        if context_map not in CONTEXT_MAPS:
            raise ValueError(f"network.context_map: {context_map!r}; allowed: {', '.join(CONTEXT_MAPS)}")
        s, a, m, d, h, p = num_sensory, action_dim, num_latent, msg_dim, state_dim, pos_dim
        self.num_sensory, self.action_dim, self.num_latent, self.msg_dim, self.state_dim = s, a, m, d, h
        self.modulation, self.context_map, self.cell = modulation, context_map, cell
        self.layer_sizes = [m, *head, num_motor]
        self.num_neurons = s + sum(self.layer_sizes)
        self.register_buffer("positions", positional_encoding(m, p))  # [M, P], fixed
        # nn.LSTMCell's / nn.GRUCell's and nn.Linear's default initialisations; one leading row per owner.
        g = CELLS[cell] * h
        self.sensory_weight_ih = nn.Parameter(_uniform(1, g, 1 + a, fan_in=h))
        self.sensory_weight_hh = nn.Parameter(_uniform(1, g, h, fan_in=h))
        self.sensory_bias_ih = nn.Parameter(_uniform(1, g, fan_in=h))
        self.sensory_bias_hh = nn.Parameter(_uniform(1, g, fan_in=h))
        self.key_weight = nn.Parameter(_uniform(1, d, h, fan_in=h))
        self.key_bias = nn.Parameter(_uniform(1, d, fan_in=h))
        self.query_weight = nn.Parameter(_uniform(1, d, p, fan_in=p))
        self.query_bias = nn.Parameter(_uniform(1, d, fan_in=p))
        if modulation != "none":
            rows = s if context_map == "slot" else 1
            self.context_weight = nn.Parameter(_uniform(rows, m, fan_in=m))
            self.context_bias = nn.Parameter(_uniform(rows, fan_in=m))
        self.head_weights = nn.ParameterList()
        self.head_biases = nn.ParameterList()
        for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True):
            self.head_weights.append(nn.Parameter(_uniform(n_out, n_in, fan_in=n_in)))
            self.head_biases.append(nn.Parameter(_uniform(n_out, fan_in=n_in)))

    # -- structure ----------------------------------------------------------------------------------
    def row_owner(self) -> dict[str, torch.Tensor]:
        """``name -> owner[rows, N]``: which neurons own each parameter row (rows of a tied parameter are shared;
        each row's entries sum to 1, so ``fitness[P, N] @ owner.T`` is the mean fitness of the row's owners)."""
        n, s, m = self.num_neurons, self.num_sensory, self.num_latent
        device = self.positions.device

        def shared(first: int, count: int) -> torch.Tensor:
            out = torch.zeros(1, n, device=device)
            out[0, first : first + count] = 1.0 / max(count, 1)
            return out

        owners = {}
        for name in ("sensory_weight_ih", "sensory_weight_hh", "sensory_bias_ih", "sensory_bias_hh", "key_weight",
                     "key_bias"):
            owners[name] = shared(0, s)
        owners["query_weight"] = owners["query_bias"] = shared(s, m)
        if self.modulation != "none":
            rows = torch.eye(s, n, device=device) if self.context_map == "slot" else shared(0, s)
            owners["context_weight"] = owners["context_bias"] = rows
        first = s + m
        for layer, size in enumerate(self.layer_sizes[1:]):
            own = torch.zeros(size, n, device=device)
            own[torch.arange(size), first + torch.arange(size)] = 1.0
            owners[f"head_weights.{layer}"] = owners[f"head_biases.{layer}"] = own
            first += size
        return owners

    def initial_memory(self, batch: int) -> torch.Tensor:
        """Zero memory ``[C, B, S, H]`` of every sensory neuron of every copy: ``C = 2`` (an LSTM's ``h`` and
        ``c``) or ``C = 1`` (a GRU's ``h``)."""
        rows = 2 if self.cell == "lstm" else 1
        return torch.zeros(rows, batch, self.num_sensory, self.state_dim, device=self.positions.device)

    # -- one tick -----------------------------------------------------------------------------------
    def members(self, deltas: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Every parameter with a leading member axis: ``θ[None]``, or ``θ + δ[P]`` for member-major deltas."""
        params = dict(self.named_parameters())
        if not deltas:
            return {name: p.unsqueeze(0) for name, p in params.items()}
        return {name: p.unsqueeze(0) + deltas[name] if name in deltas else p.unsqueeze(0) for name, p in params.items()}

    def act(
        self,
        obs: torch.Tensor,
        memory: torch.Tensor,
        prev_action: torch.Tensor | None = None,
        deltas: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick of ``B`` copies: :meth:`sense`, :meth:`attend`, then each :meth:`layer` of the head.

        Args:
            obs: ``[B, S]`` the features in the order the sensory neurons read them.
            memory: ``[C, B, S, H]`` the sensory neurons' memory (:meth:`initial_memory`; zeros at an episode's start).
            prev_action: ``[B, A]`` features of the previous task action (zeros when None).
            deltas: optional member-major perturbations ``name -> [P, *param.shape]`` (``B`` divisible by ``P``).

        Returns:
            ``values[N, B]`` (every neuron's output: sensory key RMS, latent code, head, motor) and the new memory.
        """
        theta = self.members(deltas)
        keys, memory = self.sense(obs, memory, prev_action, theta)
        out = self.attend(keys, obs, theta)
        outputs = [key_activity(keys), out]
        for layer in range(len(self.layer_sizes) - 1):
            out = self.layer(layer, out, theta)
            outputs.append(out)
        return torch.cat(outputs, 1).T, memory

    def sense(
        self,
        obs: torch.Tensor,
        memory: torch.Tensor,
        prev_action: torch.Tensor | None = None,
        theta: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sensory neurons: their new memory and their (modulated) keys ``[B, S, d]``.

        ``theta`` are the member-batched parameters (:meth:`members`; the population's own when None).
        """
        theta = theta if theta is not None else self.members()
        b, s = obs.shape
        p = theta["key_bias"].shape[0]
        k = b // p
        if prev_action is None:
            prev_action = obs.new_zeros(b, self.action_dim)
        x = torch.cat([obs.unsqueeze(-1), prev_action.unsqueeze(1).expand(b, s, self.action_dim)], -1)
        x = x.reshape(p, k * s, -1)
        h = memory[0].reshape(p, k * s, -1)
        gx = torch.baddbmm(theta["sensory_bias_ih"], x, theta["sensory_weight_ih"][:, 0].transpose(1, 2))
        gh = torch.baddbmm(theta["sensory_bias_hh"], h, theta["sensory_weight_hh"][:, 0].transpose(1, 2))
        if self.cell == "lstm":
            gi, gf, gg, go = (gx + gh).chunk(4, -1)
            c = torch.sigmoid(gf) * memory[1].reshape(p, k * s, -1) + torch.sigmoid(gi) * torch.tanh(gg)
            h = torch.sigmoid(go) * torch.tanh(c)
            memory = torch.stack([h.view(b, s, -1), c.view(b, s, -1)])
        else:
            xr, xz, xn = gx.chunk(3, -1)
            hr, hz, hn = gh.chunk(3, -1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            memory = h.view(1, b, s, -1)
        keys = torch.baddbmm(theta["key_bias"], h, theta["key_weight"][:, 0].transpose(1, 2))  # [P, k*S, d]
        keys = keys.view(p, k, s, self.msg_dim)
        if self.modulation != "none":
            context = torch.bmm(theta["context_weight"], self.queries(theta)) + theta["context_bias"].unsqueeze(-1)
            keys = _modulate(self.modulation, keys, context.unsqueeze(1))  # context [P, S|1, d]
        return keys.view(b, s, self.msg_dim), memory

    def queries(self, theta: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The latent neurons' fixed-position queries ``[P, M, d]``."""
        theta = theta if theta is not None else self.members()
        p = theta["query_bias"].shape[0]
        return torch.baddbmm(
            theta["query_bias"], self.positions.expand(p, -1, -1), theta["query_weight"][:, 0].transpose(1, 2)
        )

    def attend(
        self, keys: torch.Tensor, obs: torch.Tensor, theta: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The latent neurons' code ``[B, M]`` from the sensory keys ``[B, S, d]`` and the raw features ``[B, S]``."""
        queries = self.queries(theta)
        p, (b, s) = queries.shape[0], obs.shape
        keys = keys.view(p, b // p, s, self.msg_dim)
        scores = torch.tanh(queries.unsqueeze(1) @ keys.transpose(-1, -2) / math.sqrt(self.msg_dim))  # [P, k, M, S]
        return torch.tanh(scores @ obs.view(p, b // p, s, 1)).reshape(b, -1)

    def layer(self, index: int, x: torch.Tensor, theta: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Head layer ``index`` (the last one: the motor neurons) on the layer before's outputs ``x[B, n_in]``."""
        theta = theta if theta is not None else self.members()
        w, bias = theta[f"head_weights.{index}"], theta[f"head_biases.{index}"]
        p, b = w.shape[0], x.shape[0]
        out = torch.tanh(torch.baddbmm(bias.unsqueeze(1), x.view(p, b // p, -1), w.transpose(1, 2)))
        return out.reshape(b, -1)


def key_activity(keys: torch.Tensor) -> torch.Tensor:
    """A sensory neuron's activity (what rewards and rasters see): the root mean square of its key, ``[B, S]``."""
    return keys.pow(2).mean(-1).sqrt()




def parameter_count(population: nn.Module) -> int:
    """Number of learned scalars."""
    return sum(p.numel() for p in population.parameters())


def matching_msg_dim(target: int, state_dim: int = 8, pos_dim: int = 8, **kwargs) -> int:
    """The key/query width ``d`` whose unmodulated network has the parameter count closest to ``target``.

    The baseline is equalised to the Cooperator by widening its keys and queries: each unit of ``d`` adds
    ``H + 1`` key and ``P + 1`` query parameters, the rest of the network does not depend on ``d``.
    """
    base = parameter_count(
        AttentionNeuronPopulation(msg_dim=1, state_dim=state_dim, pos_dim=pos_dim, modulation="none", **kwargs)
    )
    per_unit = state_dim + pos_dim + 2
    return max(1, round((target - base) / per_unit) + 1)
