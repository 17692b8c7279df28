"""The batched engine: one tick of ``B`` copies of a neuron network as a few tensor ops.

Propagation modes:
- ``sweep``: stages run in topological order within one tick; a neuron reads this tick's spikes of
  its presynaptic neurons (and this tick's observation). Context always reads the previous tick.
- ``delay``: every neuron acts at once on the previous tick's presynaptic spikes (a one-tick synaptic
  delay); sensors carry the current observation. The whole network is then one stage.

The engine samples actions without gradient (``tick``) and re-evaluates recorded rollouts with
gradient in one batched pass (``evaluate``): both go through the same ``stage_inputs`` and ``_policy`` code.

Whole-network populations (``population.whole_network``, e.g. AttentionNeuron and the Cooperator,
:mod:`narla.neurons.attention_neuron`) compute every neuron's value in one call, ``population.act``; their
neurons are deterministic rate neurons with memory. The engine keeps that memory (``engine.memory``,
``[2, B, S, H]``) from tick to tick: :meth:`Engine.reset_memory` starts a batch and :meth:`Engine.keep_memory`
clears the copies whose episode ended, so every episode starts from zero memory.

Universal context: when the population reads the previous task action (``population.action_dim > 0``),
``tick`` takes it as ``prev_action[B, A]`` features (:func:`narla.context.action_features`, zeros at an
episode's start) and ``evaluate`` rebuilds it from the recorded neuron actions through the readout
(or takes ``prev_action[T, B, A]``). Both are optional: without them the action context is zero.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F

from narla.allocator import hold_freed_memory
from narla.context import action_features
from narla.cooperation import soft_bound
from narla.hidden import HiddenRecord
from narla.neurons.heads import SoftmaxHeadPopulation
from narla.neurons.population import Population, StackedMLP
from narla.readout import Readout
from narla.wiring import Wiring

PROPAGATIONS = ("sweep", "delay")
EVALUATION_GROUP_ELEMENTS = 1 << 22  # hidden activations (fp32 elements, 16 MiB) a merged re-evaluation group may hold
FREE, SILENCE, FIRE, COIN, FLIP = 0, 1, 2, 3, 4  # Engine.clamp codes: what an intervention does to a neuron's choice


class Engine:
    """Runs a :class:`Population` wired by a :class:`Wiring` and read out by a :class:`Readout`."""

    def __init__(
        self,
        wiring: Wiring,
        population: Population,
        readout: Readout,
        propagation: str = "sweep",
        generator: torch.Generator | None = None,
    ) -> None:
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation: unknown mode {propagation!r}; allowed: {', '.join(PROPAGATIONS)}")
        hold_freed_memory()  # a tick's activations reuse heap memory instead of faulting in new pages
        self.wiring = wiring
        self.population = population
        self.readout = readout.bind(wiring)
        self.propagation = propagation
        self.generator = generator
        self.device = wiring.ff_idx.device
        self.num_sensors = wiring.num_sensors
        self.num_neurons = wiring.num_neurons
        self.stages = wiring.stages if propagation == "sweep" else [(0, wiring.num_neurons)]
        ff_mask, ctx_mask = wiring.ff_mask.unsqueeze(-1), wiring.ctx_mask.unsqueeze(-1)
        # Per-stage index and mask slices, cut once here rather than on every tick.
        self._slices = {
            (a, b): (wiring.ff_idx[a:b], ff_mask[a:b], wiring.ctx_idx[a:b], ctx_mask[a:b], wiring.motor[a:b])
            for a, b in self.stages
        }
        self._gathers = self._stage_gathers()
        self.whole_network = bool(getattr(population, "whole_network", False))
        self._uses_context = self.whole_network or population.amtf_name != "feedforward"
        self.memory: torch.Tensor | None = None
        rate = getattr(population, "rate", None)
        self.rate = rate if rate is not None and bool(rate.any()) else None  # [N] bool, or None: spiking only
        self.explore = True  # rate neurons add Gaussian noise (policy gradients); ES sets False (deterministic)
        # Interventions (narla.study): clamp[N, B] overrides spiking neurons' choices per copy (FREE, SILENCE,
        # FIRE, COIN, FLIP); common_noise draws one uniform per neuron shared by all copies (paired comparisons).
        self.clamp: torch.Tensor | None = None
        self.common_noise = False
        # While collection runs a tick on a subset of the copies (:attr:`compactable`): (B, active[A]) the whole
        # batch's width and the indices of the copies being computed; random numbers are drawn for all B.
        self.columns: tuple[int, torch.Tensor] | None = None
        # While collection keeps the last hidden output for the update (narla.hidden): where the stages put it.
        self.hidden_record: HiddenRecord | None = None
        # During a feedforward Bernoulli tick: the policy's StackedMLP.act, which its stages call (None: tied rows).
        self._stage_act = None
        # Its ticks captured as CUDA graphs, by batch size (narla.capture.graph_tick makes them on first use).
        self.graph_ticks: dict[int, object] = {}

    @property
    def compactable(self) -> bool:
        """Whether a tick may compute only some of the copies (:func:`narla.rollout.collect` drops finished ones):
        the columns must be independent copies of one stage-wise population, which excludes evolution strategies'
        members (columns grouped by member), whole-network populations (memory per copy) and interventions."""
        stage_wise = type(self.population) in (Population, SoftmaxHeadPopulation)
        return stage_wise and self.clamp is None and not self.common_noise

    @property
    def bernoulli_feedforward(self) -> bool:
        """Whether a tick may take :meth:`_bernoulli_stage`: a plain :class:`Population` (not an evolution strategy's
        view of its members) of one-logit spiking neurons whose output ignores context, or of the paper's binary
        neurons with a softmax head (:class:`~narla.neurons.heads.SoftmaxHeadPopulation`), without interventions."""
        population, kind = self.population, type(self.population)
        neurons = (kind is Population and population.amtf_name == "feedforward" and population.out_dim == 1) or (
            kind is SoftmaxHeadPopulation and population.binary)
        return neurons and self.rate is None and self.clamp is None and not self.common_noise

    def skip_ticks(self, ticks: int, width: int) -> bool:
        """Advance the spike generator past ``ticks`` ticks of ``width`` copies without computing them, as if they
        had run; False (nothing drawn) where a tick's draws are not known in advance. A feedforward Bernoulli tick
        (:attr:`bernoulli_feedforward`) on the CPU draws ``rand(N, width)``, and CPU ``torch.rand`` is one contiguous
        stream, so one draw of ``ticks · N · width`` floats leaves the generator where those ticks would (tested)."""
        if not self.bernoulli_feedforward or self.device.type != "cpu":
            return False
        if ticks > 0:
            torch.rand(ticks * self.num_neurons * width, generator=self.generator, device=self.device)
        return True

    def live_columns(self, alive: torch.Tensor) -> torch.Tensor:
        """The columns a compacted tick computes when ``alive[B]`` copies are still running: those copies."""
        return alive.nonzero().squeeze(1)

    def _random(self, kind: str, *shape: int) -> torch.Tensor:
        """``torch.rand`` (``kind="uniform"``) or ``torch.randn`` of ``shape``, the last dimension over the tick's
        columns. On a subset of the copies (:attr:`columns`) the draw spans all ``B`` and the active columns are
        kept, so each copy sees the random numbers it would see if no copy had been dropped."""
        draw = torch.rand if kind == "uniform" else torch.randn
        if self.columns is None:
            return draw(shape, generator=self.generator, device=self.device)
        width, active = self.columns
        return draw((*shape[:-1], width), generator=self.generator, device=self.device).index_select(-1, active)

    # -- memory of whole-network populations -------------------------------------------------------
    def reset_memory(self, batch: int) -> None:
        """Zero memory for ``batch`` copies (no-op for populations without memory)."""
        init = getattr(self.population, "initial_memory", None)
        self.memory = init(batch) if init is not None else None

    def keep_memory(self, keep: torch.Tensor) -> None:
        """Clear the memory of the copies where ``keep[B]`` is False (their next tick starts an episode)."""
        if self.memory is not None:
            self.memory = self.memory * keep.view(1, -1, *([1] * (self.memory.dim() - 2))).to(self.memory.dtype)

    # -- shared pieces -------------------------------------------------------------------------
    def sensors(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations ``[cols, obs_dim]`` -> sensor activity ``[S, cols]``."""
        return obs[:, self.wiring.sensor_index].T

    def _policy(
        self, x: torch.Tensor, c: torch.Tensor, start: int, end: int, prev_action: torch.Tensor | None = None,
        replay: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The population's pre-activations ``[n, D, cols]`` for inputs ``x`` and context ``c`` (``replay``: the
        policy's last hidden output, already computed, see :meth:`evaluate`)."""
        if replay is not None:
            return self.population(x, c, start, end, prev_action=prev_action, replay=replay)
        if self.population.action_dim:
            return self.population(x, c, start, end, prev_action=prev_action)
        return self.population(x, c, start, end)

    def trim_padding(self) -> None:
        """Gather each stage's feedforward inputs only up to its own largest fan-in, not the network's.

        The same computation up to float rounding (padded inputs are zeros); for replays and analyses of networks
        whose fan-ins differ widely (a motor neuron reading a whole wide layer). Training keeps the padded
        layout, so that runs stay bit for bit reproducible across versions. Not for ES members (their
        perturbations keep the full width).
        """
        fan_in = self.wiring.ff_mask.sum(1)  # [N]; read once, at setup
        for (a, b), (ff_idx, ff_mask, ctx_idx, ctx_mask, motor) in list(self._slices.items()):
            width = max(int(fan_in[a:b].max()), 1)
            self._slices[(a, b)] = (ff_idx[:, :width], ff_mask[:, :width], ctx_idx, ctx_mask, motor)
        self._gathers = self._stage_gathers()

    def stage_fan(self, start: int, end: int) -> int:
        """How many feedforward inputs neurons ``start:end`` gather each tick: their padded fan-in ``F``."""
        return self._stage_slices(start, end)[0].shape[1]

    def _stage_slices(self, start: int, end: int) -> tuple[torch.Tensor, ...]:
        """``(ff_idx, ff_mask, ctx_idx, ctx_mask, motor)`` of neurons ``start:end`` (cached for the stages)."""
        cached = self._slices.get((start, end))
        if cached is not None:
            return cached
        w = self.wiring
        return (
            w.ff_idx[start:end],
            w.ff_mask[start:end, :, None],
            w.ctx_idx[start:end],
            w.ctx_mask[start:end, :, None],
            w.motor[start:end],
        )

    def _feedforward_source(self, act: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        if self.propagation == "sweep":
            return act
        return torch.cat([act[: self.num_sensors], prev[self.num_sensors :]])

    # -- acting --------------------------------------------------------------------------------
    # A tick is ``begin_tick``, then for each stage ``stage_logits`` -> ``choose`` -> ``commit``. ``tick`` runs
    # them for every stage at once (through ``_bernoulli_stage``, the same numbers in fewer calls, when it may); the
    # PettingZoo views (:mod:`narla.envs.core`) run the same pieces one agent or one stage at a time, with actions
    # that may come from outside.
    def begin_tick(self, obs: torch.Tensor) -> torch.Tensor:
        """The activity vector ``act[S + N, B]`` of a tick about to be played: sensors set, neurons silent."""
        act = torch.zeros(self.num_sensors + self.num_neurons, obs.shape[0], device=self.device)
        act[: self.num_sensors] = self.sensors(obs)
        return act

    def stage_inputs(
        self, act: torch.Tensor, prev: torch.Tensor, start: int, end: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What neurons ``start:end`` read: feedforward ``x[n, F, B]`` and context ``c[n, Fc, B]`` (padding zero).

        ``act`` is this tick's activity so far (:meth:`begin_tick`, then :meth:`commit`), ``prev`` the previous
        tick's; feedforward inputs read ``act`` (``sweep``) or ``prev`` (``delay``, sensors still from ``act``).
        """
        src = self._feedforward_source(act, prev)
        ff_idx, ff_mask, ctx_idx, ctx_mask, _ = self._stage_slices(start, end)
        x = gather(src, ff_idx, ff_mask)
        c = gather(prev, ctx_idx, ctx_mask) if self._uses_context else prev.new_zeros(end - start, 0, src.shape[1])
        return x, c

    @torch.no_grad()
    def choose(self, logits: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Neurons ``start:end`` act on their ``logits[n, D, B]``: ``[n, B]`` spikes / categorical choices (long),
        or, in a network with rate neurons, float with the rate neurons' values in their rows."""
        chosen = self._sample(logits, self._stage_slices(start, end)[4])
        if self.clamp is not None:
            chosen = self._intervene(chosen, self.clamp[start:end])
        if self.rate is None:
            return chosen
        value = self._rate_value(logits, start, end)
        return torch.where(self.rate[start:end].unsqueeze(1), value, chosen.float())

    def commit(self, act: torch.Tensor, actions: torch.Tensor, chosen: torch.Tensor, start: int, end: int) -> None:
        """Record neurons ``start:end``'s ``chosen[n, B]`` in ``actions[N, B]`` and their activity in ``act``:
        a spike (1 when the choice is > 0) for spiking neurons, the value itself for rate neurons."""
        actions[start:end] = chosen
        out = (chosen > 0).float()
        if self.rate is not None:
            out = torch.where(self.rate[start:end].unsqueeze(1), chosen.float(), out)
        act[self.num_sensors + start : self.num_sensors + end] = out

    @property
    def record_dtype(self) -> torch.dtype | None:
        """The dtype a rollout records actions in: ``int8`` for spiking networks of at most 127 choices per neuron
        (an eighth of ``long``'s memory, the same values); None: as the tick gives them (rate neurons)."""
        spiking = not self.whole_network and self.rate is None
        return torch.int8 if spiking and getattr(self.population, "out_dim", 1) <= 127 else None

    def new_actions(self, cols: int) -> torch.Tensor:
        """An empty ``actions[N, cols]`` buffer: long for spiking networks, float when any neuron is a rate neuron."""
        dtype = torch.long if self.rate is None else torch.float32
        return torch.zeros(self.num_neurons, cols, dtype=dtype, device=self.device)

    @torch.no_grad()
    def stage_logits(
        self, act: torch.Tensor, prev: torch.Tensor, start: int, end: int, prev_action: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Output pre-activations ``[n, D, B]`` of neurons ``start:end`` on their current inputs."""
        x, c = self.stage_inputs(act, prev, start, end)
        return self._policy(x, c, start, end, prev_action)

    @torch.no_grad()
    def tick(
        self, obs: torch.Tensor, prev: torch.Tensor, prev_action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick of every copy.

        Args:
            obs: ``[B, obs_dim]`` observations.
            prev: ``[S + N, B]`` the previous tick's activity vector (zeros at an episode's start).
            prev_action: optional ``[B, A]`` features of the previous task action (zeros at an episode's start).

        Returns:
            ``act[S + N, B]`` (sensors, then spikes or rate values) and ``actions[N, B]`` (each neuron's choice:
            long in spiking networks, float where there are rate neurons).
        """
        if self.whole_network:
            return self._tick_whole(obs, prev_action)
        if self.bernoulli_feedforward:
            return self.bernoulli_tick(obs, prev, self._tick_uniforms(obs.shape[0]))
        act = self.begin_tick(obs)
        actions = self.new_actions(obs.shape[0])
        for start, end in self.stages:
            chosen = self.choose(self.stage_logits(act, prev, start, end, prev_action), start, end)
            self.commit(act, actions, chosen, start, end)
        return act, actions

    def bernoulli_tick(
        self, obs: torch.Tensor, prev: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`tick` of a feedforward Bernoulli population (:attr:`bernoulli_feedforward`) on the uniforms
        ``u[N, cols]``: a neuron fires where its uniform is below its firing probability.
        :class:`narla.capture.GraphTick` replays it as one CUDA graph on uniforms drawn outside it."""
        act = self.begin_tick(obs)
        policy = self.population.policy
        policy.check_acting_rows()  # once a tick, for every stage's StackedMLP.act
        self._stage_act = policy.act if self.population.slots is None else None  # resolved once a tick
        for start, end in self.stages:
            self._bernoulli_stage(act, prev, u, start, end)
        return act, act[self.num_sensors :].long()  # each neuron's choice is its 0/1 spike

    def _tick_uniforms(self, cols: int) -> torch.Tensor:
        """The uniforms ``[N, cols]`` of a feedforward Bernoulli tick: the numbers each stage's own
        ``rand(n, cols)`` draws, in stage order, as the general path (:meth:`choose`) and the PettingZoo views draw
        them. On the CPU one draw gives them (torch.rand is one contiguous stream there; tested against the general
        path); on a GPU the stages' draws are joined. A :class:`narla.capture.GraphTick` draws them so too, outside
        its graph, so eager and replayed ticks fire alike from the same generator state."""
        if self.device.type == "cpu" or len(self.stages) == 1:
            return self._random("uniform", self.num_neurons, cols)
        return torch.cat([self._random("uniform", end - start, cols) for start, end in self.stages])

    @property
    def capturable(self) -> bool:
        """Whether :class:`narla.capture.GraphTick` may replay this engine's tick as a CUDA graph: a feedforward
        Bernoulli tick (:attr:`bernoulli_feedforward`) on a CUDA device, its uniforms drawn from the engine's
        generator (:meth:`_tick_uniforms`)."""
        return self.device.type == "cuda" and self.bernoulli_feedforward

    def _bernoulli_stage(
        self, act: torch.Tensor, prev: torch.Tensor, u: torch.Tensor, start: int, end: int
    ) -> None:
        """:meth:`stage_logits`, :meth:`choose` and :meth:`commit` of neurons ``start:end`` for a feedforward
        population of Bernoulli neurons (:attr:`bernoulli_feedforward`), in fewer calls: the same products, the same
        random numbers and the same spikes, bit for bit (tested). At a tick of a few copies the general
        path's calls cost about a third of the tick. While collection keeps the last hidden layer
        (:attr:`hidden_record`), a tick of fewer columns than the stage's column floor is computed padded
        (:mod:`narla.hidden`). ``u[N, cols]``: the tick's uniforms for every neuron."""
        x = gather_slots(self._feedforward_source(act, prev), self._gathers[(start, end)])
        z = self._firing_logits(x, start, end)
        act[self.num_sensors + start : self.num_sensors + end] = u[start:end] < torch.sigmoid(z)  # a spike, 0/1

    def _firing_logits(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Firing logits ``[n, cols]`` of neurons ``start:end`` of a feedforward Bernoulli population on their
        gathered inputs ``x[n, F, cols]`` (for :meth:`_bernoulli_stage`)."""
        population, record, forward = self.population, self.hidden_record, self._stage_act
        if forward is None:  # tied neurons: their stage's rows picked by slot
            forward = functools.partial(population.policy.forward, rows=population._rows(start, end), acting=True)
        if record is None:
            r = forward(x, start, end)
        else:  # keep the last hidden output, computed on at least the stage's column floor (see narla.hidden)
            cols, kept = x.shape[2], []
            r = forward(record.pad(start, x), start, end, keep=kept)
            record.add(start, kept[0] if r.shape[2] == cols else kept[0][:, :cols])
            r = r if r.shape[2] == cols else r[:, :, :cols]
        if r.shape[1] == 2:  # the paper's softmax head: firing is the fire unit's logit less the silent one's
            r = r[:, 1:2] - r[:, 0:1]
        return (r if population.amtf_scale is None else soft_bound(r, population.amtf_scale))[:, 0]

    def _stage_gathers(self) -> dict[tuple[int, int], tuple[torch.Tensor, int, int, torch.Tensor | None]]:
        """Per stage, its feedforward slots as :func:`gather_slots` reads them: flattened indices, ``n``, ``F`` and the
        padding mask, None where every slot is a real input (no mask product). Made at setup and after
        :meth:`trim_padding`, not on every tick."""
        return {stage: (ff_idx.reshape(-1), ff_idx.shape[0], ff_idx.shape[1], None if bool(ff_mask.all()) else ff_mask)
                for stage, (ff_idx, ff_mask, *_) in self._slices.items()}

    def _rate_value(self, logits: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Rate neurons' values ``[n, cols]``: ``tanh(z)``, plus ``N(0, σ_i²)`` noise when exploring."""
        mean = torch.tanh(logits[:, 0])
        if not self.explore:
            return mean
        std = self.population.log_std[start:end].exp()  # [n, 1]
        return mean + std * self._random("normal", *mean.shape)

    def _tick_whole(self, obs: torch.Tensor, prev_action: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick of a whole-network population: ``act[S + N, B]`` and the neurons' values ``[N, B]`` (float)."""
        if self.memory is None or self.memory.shape[1] != obs.shape[0]:
            self.reset_memory(obs.shape[0])
        sensed = self.sensors(obs)  # [S, B]
        values, self.memory = self.population.act(sensed.T, self.memory, prev_action)  # act_whole on sensed
        return torch.cat([sensed, values]), values

    def act_whole(
        self, obs: torch.Tensor, memory: torch.Tensor, prev_action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole-network population's tick on explicit memory, with gradient: ``values[N, B]`` and the new memory.

        ``obs[B, obs_dim]``, ``memory`` as :meth:`reset_memory` makes it; the task action is ``readout(values)``.
        Acting (:meth:`tick`) runs it without gradient on :attr:`memory`; distillation
        (:mod:`narla.learning.distill`) backpropagates through a sequence of them.
        """
        return self.population.act(self.sensors(obs).T, memory, prev_action)

    def act_rates(
        self, obs: torch.Tensor, prev: torch.Tensor, prev_action: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A deterministic tick of a network of rate neurons, with gradient: ``act[S + N, B]``, each neuron's value
        ``tanh(z)`` (:meth:`tick` with :attr:`explore` False gives the same values without gradient).

        ``prev[S + N, B]`` is the previous tick's ``act`` (zeros at an episode's start). Distillation
        (:mod:`narla.learning.distill`) backpropagates through it; the task action is ``readout(act[S:])``.
        """
        act = self.begin_tick(obs)
        for start, end in self.stages:
            x, c = self.stage_inputs(act, prev, start, end)
            value = torch.tanh(self._policy(x, c, start, end, prev_action)[:, 0])
            act = torch.cat([act[: self.num_sensors + start], value, act[self.num_sensors + end :]])
        return act

    def _intervene(self, chosen: torch.Tensor, clamp: torch.Tensor) -> torch.Tensor:
        """``chosen[n, B]`` with the interventions ``clamp[n, B]`` applied (binary choices only)."""
        coin = (self._random("uniform", *clamp.shape) < 0.5).to(chosen.dtype)
        out = torch.where(clamp == SILENCE, torch.zeros_like(chosen), chosen)
        out = torch.where(clamp == FIRE, torch.ones_like(chosen), out)
        out = torch.where(clamp == COIN, coin, out)
        return torch.where(clamp == FLIP, 1 - (chosen > 0).to(chosen.dtype), out)

    def _sample(self, logits: torch.Tensor, motor: torch.Tensor) -> torch.Tensor:
        """Bernoulli spikes from logit column 0; categorical choices for motor neurons when ``D > 1``."""
        n, d, cols = logits.shape
        if self.common_noise:
            u = torch.rand(n, 1, generator=self.generator, device=self.device).expand(n, cols)
        else:
            u = self._random("uniform", n, cols)
        fire = (u < torch.sigmoid(logits[:, 0])).long()
        if d == 1:
            return fire
        g = self._random("uniform", n, d, cols).clamp_(1e-20, 1.0)
        choice = (logits - torch.log(-torch.log(g))).argmax(1)
        return torch.where(motor.unsqueeze(1), choice, fire)

    # -- learning ------------------------------------------------------------------------------
    def previous_task_action(self, actions: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Features ``[T, B, A]`` of the task action of the previous tick, rebuilt from ``actions[T, B, N]``.

        Zero on an episode's first tick (``first[T, B]``), as during collection.
        """
        t, b, n = actions.shape
        task_action = self.readout(actions.reshape(t * b, n).T)
        feats = action_features(task_action, self.readout.action_space).view(t, b, -1)
        out = torch.zeros_like(feats)
        out[1:] = feats[:-1]
        return out * (~first).float().unsqueeze(-1)

    def evaluation_stages(self, cols: int) -> list[tuple[int, int]]:
        """The neuron slices :meth:`evaluate` computes one after another for ``cols`` recorded columns.

        A re-evaluation reads recorded activity, so no stage waits for another's spikes: consecutive stages are
        merged while a group's hidden activations (neurons x ``cols`` x the policy's hidden widths) stay within
        :data:`EVALUATION_GROUP_ELEMENTS`. Small networks then take one batched product per layer instead of one per
        stage (about 1.6x faster updates of Table 1's 5-layer cells here); large ones keep per-stage products, whose
        activations stay in cache. Each neuron's product has the same shape either way.
        """
        policy = getattr(self.population, "policy", None)
        width = sum(w.shape[-1] for w in policy.weights[:-1]) if policy is not None else 1
        most = EVALUATION_GROUP_ELEMENTS // max(1, cols * width)  # neurons per group
        groups: list[tuple[int, int]] = []
        for a, b in self.stages:
            if groups and b - groups[-1][0] <= most:
                groups[-1] = (groups[-1][0], b)
            else:
                groups.append((a, b))
        return groups

    def evaluate(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        first: torch.Tensor,
        values: bool = False,
        prev_action: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        hidden: HiddenRecord | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Re-evaluate recorded ticks with gradient.

        Args:
            obs: ``[T, B, obs_dim]``, actions: ``[T, B, N]``, first: ``[T, B]`` bool (episode starts).
            values: also return each neuron's critic value.
            prev_action: optional ``[T, B, A]`` previous-task-action features; rebuilt from ``actions``
                when the population needs them and they are not given.
            valid: optional ``[T, B]`` bool; only these ticks are computed (the padding of a batch of
                episodes of different lengths is skipped) and the others come back as 0.
            hidden: optional, the policy's last hidden output kept while these ticks were collected
                (:mod:`narla.hidden`, with ``valid``): where the record can give a group's, that layer is not
                computed again, and the gradients are the same bit for bit.

        Returns:
            ``log_prob[T, B, N]`` of the recorded actions, ``entropy[T, B, N]``, ``value[T, B, N]`` or None.
        """
        t, b, n = actions.shape
        keep, logp, entropy, value = self.evaluate_columns(obs, actions, first, values, prev_action, valid, hidden)

        def spread(out: torch.Tensor) -> torch.Tensor:  # [N, computed columns] -> [T, B, N]
            if keep is not None:
                out = out.new_zeros(n, t * b).index_copy(1, keep, out)
            return out.T.reshape(t, b, n)

        return spread(logp), spread(entropy), spread(value) if values else None

    def evaluate_columns(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        first: torch.Tensor,
        values: bool = False,
        prev_action: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        hidden: HiddenRecord | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`evaluate` (the same arguments), its results kept to the columns it computes:
        ``(keep, log_prob[N, C], entropy[N, C], value[N, C] or None)``, where ``keep[C]`` are the valid columns'
        indices among the ``T·B`` tick-major columns (None without ``valid``: all of them, in order). Each column's
        activity and its copy's previous tick's are gathered from the record for those columns alone, so memory
        follows ``C``, not ``T·B``: a window of a few valid columns over many ticks of a large batch stays small.
        """
        if self.whole_network:
            raise RuntimeError(
                "learning.rule: whole-network populations (attention_neuron, cooperator) are deterministic rate "
                "neurons trained by evolution strategies; use learning.rule es or cma_es"
            )
        t, b, n = actions.shape
        cols = t * b
        flat_obs, flat_actions = obs.reshape(cols, -1), actions.reshape(cols, n)
        keep = None if valid is None else valid.reshape(cols).nonzero().squeeze(1)  # one host sync per call
        columns = torch.arange(cols, device=actions.device) if keep is None else keep
        before = columns - b  # the same copy's previous tick
        act = self._recorded_activity(flat_obs, flat_actions, columns)
        prev = self._recorded_activity(flat_obs, flat_actions, before.clamp(min=0))
        prev = (prev * (~first.reshape(cols)[columns]).float()).masked_fill_(before < 0, 0.0)  # zero at a start
        chosen = flat_actions.index_select(0, columns).T  # [N, C]
        flat_prev_action = None
        if self.population.action_dim:
            if prev_action is None:
                prev_action = self.previous_task_action(actions, first)
            flat_prev_action = prev_action.reshape(cols, -1).index_select(0, columns)
        logps, ents, vals = [], [], []
        groups = self.evaluation_stages(act.shape[1])
        policy = getattr(self.population, "policy", None)
        with policy.split_rows(groups) if isinstance(policy, StackedMLP) else contextlib.nullcontext():
            for start, end in groups:
                x, c = self.stage_inputs(act, prev, start, end)
                replay = hidden.take(start, end, act.shape[1]) if hidden is not None and keep is not None else None
                logits = self._policy(x, c, start, end, flat_prev_action, replay)
                lp, ent = log_prob(logits, chosen[start:end], self.wiring.motor[start:end])
                if self.rate is not None:
                    rate = self.rate[start:end].unsqueeze(1)
                    glp, gent = gaussian_log_prob(logits, chosen[start:end], self.population.log_std[start:end])
                    lp, ent = torch.where(rate, glp, lp), torch.where(rate, gent, ent)
                logps.append(lp)
                ents.append(ent)
                if values:
                    vals.append(self.population.value(x, start, end))
        return keep, torch.cat(logps), torch.cat(ents), torch.cat(vals) if values else None

    def _recorded_activity(self, obs: torch.Tensor, actions: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """The activity vector ``act[S + N, C]`` of recorded columns ``columns[C]`` of ``obs[cols, obs_dim]`` and
        ``actions[cols, N]``: sensors, then each neuron's spike (its choice > 0) or, for rate neurons, its value."""
        chosen = actions.index_select(0, columns).T
        out = (chosen > 0).float()
        if self.rate is not None:
            out = torch.where(self.rate.unsqueeze(1), chosen.float(), out)
        return torch.cat([self.sensors(obs.index_select(0, columns)), out])


def gather(src: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``src[idx] * mask``: rows ``idx[n, F]`` of ``src[rows, cols]`` as ``[n, F, cols]``, padding slots zeroed by
    ``mask[n, F, 1]`` (None: no padding). One ``index_select`` of the flattened indices: the same values as advanced
    indexing, in about half its time at a tick's sizes (9 against 17 µs for 15 neurons x 15 inputs x 64 columns)."""
    return gather_slots(src, (idx.reshape(-1), idx.shape[0], idx.shape[1], mask))


def gather_slots(src: torch.Tensor, slots: tuple[torch.Tensor, int, int, torch.Tensor | None]) -> torch.Tensor:
    """:func:`gather` from its arguments prepared once: ``(idx[n·F] flattened, n, F, mask or None)``."""
    idx, n, fan, mask = slots
    x = src.index_select(0, idx).view(n, fan, src.shape[1])
    return x if mask is None else x.mul_(mask)  # x is index_select's own new tensor


def log_prob(logits: torch.Tensor, actions: torch.Tensor, motor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability and entropy ``[n, cols]`` of ``actions[n, cols]`` under ``logits[n, D, cols]``."""
    z = logits[:, 0]
    bern_lp = -F.binary_cross_entropy_with_logits(z, (actions > 0).float(), reduction="none")
    bern_ent = F.binary_cross_entropy_with_logits(z, torch.sigmoid(z), reduction="none")
    if logits.shape[1] == 1:
        return bern_lp, bern_ent
    logsm = torch.log_softmax(logits, 1)
    cat_lp = logsm.gather(1, actions.long().clamp(0, logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
    cat_ent = -(logsm.exp() * logsm).sum(1)
    m = motor.unsqueeze(1)
    return torch.where(m, cat_lp, bern_lp), torch.where(m, cat_ent, bern_ent)


def gaussian_log_prob(
    logits: torch.Tensor, values: torch.Tensor, log_std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rate neurons: log-density and entropy ``[n, cols]`` of ``values`` under ``N(tanh(z), exp(log_std)²)``.

    ``logits[n, D, cols]`` (column 0 is ``z``), ``log_std[n, 1]`` each neuron's own learned log-std.
    """
    mean = torch.tanh(logits[:, 0])
    var = (2 * log_std).exp()
    lp = -((values.float() - mean) ** 2) / (2 * var) - log_std - 0.5 * math.log(2 * math.pi)
    ent = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).expand_as(mean)
    return lp, ent
