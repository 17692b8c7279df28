"""The per-neuron reference: every neuron its own ``nn.Module``, stepped one neuron and one environment at a time.

This is how the public NaRLA implementation runs a network (a Python loop over independent torch modules).
Here it serves two purposes: it is the oracle the batched :class:`narla.neurons.Population` is tested
against (same logits, same per-neuron gradients when the weights are copied over), and it is the baseline
``narla bench`` measures the engine against.

Each :class:`ReferenceNeuron` sees only its *real* synapses: its first layer is ``nn.Linear(fan_in_i, H)``,
not the padded ``F`` columns of the stacked tensors, and its context map is ``nn.Linear(ctx_fan_in_i, 1)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from narla.cooperation import DEFAULT_SCALES, get_amtf, soft_bound
from narla.engine import PROPAGATIONS
from narla.neurons.population import ACTIVATIONS, Population
from narla.wiring import Wiring


def _linear(in_dim: int, out_dim: int, init: bool) -> nn.Linear:
    """``nn.Linear(in_dim, out_dim)``, uninitialized unless ``init``; a neuron without context has ``in_dim = 0``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        if init:
            return nn.Linear(in_dim, out_dim)
        return nn.utils.skip_init(nn.Linear, in_dim, out_dim)


class ReferenceNeuron(nn.Module):
    """One two-point neuron: an MLP ``fan_in -> hidden... -> D`` for R, a linear map of its context for C."""

    def __init__(
        self,
        in_dim: int,
        ctx_dim: int,
        hidden: Sequence[int] = (128, 128),
        out_dim: int = 1,
        activation: str = "leaky_relu",
        amtf: str = "feedforward",
        amtf_scale: float | None | str = "default",
        init: bool = True,
        rate: bool = False,
    ) -> None:
        super().__init__()
        self.rate = rate
        self.log_std = nn.Parameter(torch.full((), -0.5)) if rate else None
        sizes = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(_linear(a, b, init) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.context = _linear(ctx_dim, 1, init)
        self.activation = ACTIVATIONS[activation]
        self.amtf = get_amtf(amtf)
        self.amtf_scale = DEFAULT_SCALES[amtf] if amtf_scale == "default" else amtf_scale
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Inputs ``x[fan_in]``, context ``c[ctx_dim]`` -> ``amtf(s·tanh(R/s), s·tanh(C/s))`` ``[D]``."""
        r = x
        last = len(self.layers) - 1
        for j, layer in enumerate(self.layers):
            r = layer(r)
            if j < last:
                r = self.activation(r)
        return self.amtf(soft_bound(r, self.amtf_scale), soft_bound(self.context(c), self.amtf_scale))

    def sample(self, logits: torch.Tensor, motor: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """A spike (Bernoulli on ``logits[0]``), a categorical choice for a motor neuron with ``D > 1`` (0-d long),
        or for a rate neuron a value drawn from ``N(tanh(logits[0]), exp(log_std)²)`` (0-d float)."""
        if self.rate:
            noise = torch.randn((), generator=generator, device=logits.device)
            return torch.tanh(logits[0]) + self.log_std.exp() * noise
        if motor and logits.shape[0] > 1:
            return torch.multinomial(torch.softmax(logits, 0), 1, generator=generator)[0]
        u = torch.rand((), generator=generator, device=logits.device)
        return (u < torch.sigmoid(logits[0])).long()

    def log_prob(self, logits: torch.Tensor, action: torch.Tensor, motor: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability (a density for a rate neuron) and entropy (0-d) of ``action`` under ``logits[D]``."""
        if self.rate:
            normal = torch.distributions.Normal(torch.tanh(logits[0]), self.log_std.exp())
            return normal.log_prob(action.to(logits.dtype)), normal.entropy()
        if motor and logits.shape[0] > 1:
            logsm = torch.log_softmax(logits, 0)
            return logsm[action], -(logsm.exp() * logsm).sum()
        z = logits[0]
        lp = -F.binary_cross_entropy_with_logits(z, action.clamp(max=1).to(z.dtype))
        return lp, F.binary_cross_entropy_with_logits(z, torch.sigmoid(z))


class ReferenceNetwork(nn.Module):
    """``N`` :class:`ReferenceNeuron` wired like a :class:`Wiring`, looped over in engine order.

    Activity vectors are ``[S + N]`` (sensors, then spikes in engine order), for ONE environment copy. A neuron's
    context inputs are its graph context sources (previous tick), its fixed positional encoding ``position[i]``
    and the previous task action's features ``prev_action[A]`` (zeros when not given), as in the population.
    """

    def __init__(
        self,
        neurons: Sequence[ReferenceNeuron],
        ff_sources: Sequence[torch.Tensor],
        ctx_sources: Sequence[torch.Tensor],
        motor: Sequence[bool],
        sensor_index: torch.Tensor,
        propagation: str = "sweep",
        positions: Sequence[torch.Tensor] | None = None,
        action_dim: int = 0,
    ) -> None:
        super().__init__()
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation: unknown mode {propagation!r}; allowed: {', '.join(PROPAGATIONS)}")
        self.neurons = nn.ModuleList(neurons)
        self.ff_sources = list(ff_sources)
        self.ctx_sources = list(ctx_sources)
        self.motor = list(motor)
        self.sensor_index = sensor_index
        self.propagation = propagation
        self.num_sensors = int(sensor_index.shape[0])
        self.num_neurons = len(self.neurons)
        self.positions = (
            list(positions) if positions is not None else [sensor_index.new_zeros(0).float()] * len(neurons)
        )
        self.action_dim = action_dim

    @classmethod
    def from_population(
        cls, population: Population, wiring: Wiring, propagation: str = "sweep", device: str | torch.device = "cpu"
    ) -> ReferenceNetwork:
        """Separate modules holding copies of each neuron's slice of the stacked parameters (policies only)."""
        if population.slots is not None:
            raise ValueError("the reference models independent neurons: tied slots and pooling maps are not supported")
        extra = population.position_dim + population.action_dim
        hidden = [w.shape[2] for w in population.policy.weights[:-1]]
        activation = population.policy.activation_name
        ff_mask = wiring.ff_mask.cpu() > 0
        ctx_mask = wiring.ctx_mask.cpu() > 0
        ff_idx, ctx_idx = wiring.ff_idx.cpu(), wiring.ctx_idx.cpu()
        rate = population.rate.cpu() if population.rate is not None else torch.zeros(wiring.num_neurons, dtype=bool)
        ctx_w, ctx_b = population.context_weight.detach().to(device), population.context_bias.detach().to(device)
        neurons, ff_sources, ctx_sources = [], [], []
        for i in range(wiring.num_neurons):
            fm, cm = ff_mask[i], ctx_mask[i]
            neuron = ReferenceNeuron(
                int(fm.sum()),
                int(cm.sum()) + extra,
                hidden,
                population.out_dim,
                activation,
                population.amtf_name,
                population.amtf_scale,
                init=False,
                rate=bool(rate[i]),
            ).to(device)
            ctx_cols = torch.cat([cm, torch.ones(extra, dtype=torch.bool)]).to(device)
            with torch.no_grad():
                for j, layer in enumerate(neuron.layers):
                    w, b = population.policy.neuron_linear(j, i)
                    layer.weight.copy_(w[:, fm] if j == 0 else w)
                    layer.bias.copy_(b)
                neuron.context.weight.copy_(ctx_w[i][:, ctx_cols])
                neuron.context.bias.copy_(ctx_b[i, :, 0])
                if neuron.rate:
                    neuron.log_std.copy_(population.log_std[i, 0])
            neurons.append(neuron)
            ff_sources.append(ff_idx[i][fm].to(device))
            ctx_sources.append(ctx_idx[i][cm].to(device))
        motor = wiring.motor.cpu().tolist()
        positions = list(population.position[:, :, 0].detach().to(device))
        sensor_index = wiring.sensor_index.to(device)
        return cls(neurons, ff_sources, ctx_sources, motor, sensor_index, propagation, positions, population.action_dim)

    def _context(self, i: int, prev: torch.Tensor, prev_action: torch.Tensor | None) -> torch.Tensor:
        """Neuron ``i``'s context inputs ``[Fc_i + P + A]``."""
        if prev_action is None:
            prev_action = prev.new_zeros(self.action_dim)
        return torch.cat([prev[self.ctx_sources[i]], self.positions[i], prev_action])

    def _source(self, act: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Where feedforward inputs are read: this tick (sweep), or this tick's sensors and last tick's spikes."""
        if self.propagation == "sweep":
            return act
        return torch.cat([act[: self.num_sensors], prev[self.num_sensors :]])

    def logits(self, act: torch.Tensor, prev: torch.Tensor, prev_action: torch.Tensor | None = None) -> torch.Tensor:
        """Every neuron's output ``[N, D]`` given a full activity vector ``act[S + N]`` and ``prev[S + N]``."""
        src = self._source(act, prev)
        return torch.stack(
            [
                nrn(src[f], self._context(i, prev, prev_action))
                for i, (nrn, f) in enumerate(zip(self.neurons, self.ff_sources, strict=True))
            ]
        )

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        prev: torch.Tensor,
        generator: torch.Generator | None = None,
        prev_action: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick of one environment copy, one neuron at a time.

        Args:
            obs: ``[obs_dim]`` this copy's observation.
            prev: ``[S + N]`` the previous tick's activity (zeros at an episode's start).
            prev_action: optional ``[A]`` features of the previous task action.

        Returns:
            ``act[S + N]`` (sensors, then spikes or rate values) and ``actions[N]`` (each neuron's choice: long,
            or float in a network with rate neurons).
        """
        s = self.num_sensors
        act = torch.empty(s + self.num_neurons, device=obs.device)
        act[:s] = obs[self.sensor_index]
        src = self._source(act, prev)
        dtype = torch.float32 if any(n.rate for n in self.neurons) else torch.long
        actions = torch.empty(self.num_neurons, dtype=dtype, device=obs.device)
        for i, neuron in enumerate(self.neurons):
            logits = neuron(src[self.ff_sources[i]], self._context(i, prev, prev_action))
            choice = neuron.sample(logits, self.motor[i], generator)
            actions[i] = choice
            act[s + i] = choice if neuron.rate else (choice > 0).float()
        return act, actions

    def activity(self, actions: torch.Tensor) -> torch.Tensor:
        """Neurons' activity ``[N]`` from their recorded ``actions[N]``: a spike, or a rate neuron's value."""
        return torch.stack(
            [a.float() if n.rate else (a > 0).float() for n, a in zip(self.neurons, actions, strict=True)]
        )

    def evaluate_tick(
        self, obs: torch.Tensor, prev: torch.Tensor, actions: torch.Tensor, prev_action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies ``[N]`` (with gradient) of one copy's recorded ``actions[N]``."""
        act = torch.cat([obs[self.sensor_index], self.activity(actions)])
        src = self._source(act, prev)
        lps, ents = [], []
        for i, neuron in enumerate(self.neurons):
            logits = neuron(src[self.ff_sources[i]], self._context(i, prev, prev_action))
            lp, ent = neuron.log_prob(logits, actions[i], self.motor[i])
            lps.append(lp)
            ents.append(ent)
        return torch.stack(lps), torch.stack(ents)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor, first: torch.Tensor, prev_action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`narla.engine.Engine.evaluate`, looping over ticks, copies and neurons.

        Args:
            obs: ``[T, B, obs_dim]``, actions: ``[T, B, N]``, first: ``[T, B]`` bool (episode starts),
            prev_action: optional ``[T, B, A]`` previous-task-action features.

        Returns:
            ``log_prob[T, B, N]`` and ``entropy[T, B, N]``.
        """
        t_len, b_len, _ = actions.shape
        lps, ents = [], []
        for t in range(t_len):
            row_lp, row_ent = [], []
            for b in range(b_len):
                prev = torch.zeros(self.num_sensors + self.num_neurons, device=obs.device)
                if t > 0 and not bool(first[t, b]):
                    prev = torch.cat([obs[t - 1, b][self.sensor_index], self.activity(actions[t - 1, b])])
                pa = None if prev_action is None else prev_action[t, b]
                lp, ent = self.evaluate_tick(obs[t, b], prev, actions[t, b], pa)
                row_lp.append(lp)
                row_ent.append(ent)
            lps.append(torch.stack(row_lp))
            ents.append(torch.stack(row_ent))
        return torch.stack(lps), torch.stack(ents)
