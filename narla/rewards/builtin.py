"""Built-in neuron rewards: task, activity, sparsity, prediction, trace (Ott, "Neurons as RL agents"), and relay.

Every reward maps one tick of the batched rollout to one reward per neuron:
``reward(state: NetworkState) -> Tensor[B, N]`` (the dtype and device of ``state.spikes``).
Notation in the formulas: ``s_i`` is neuron i's spike this tick (0 or 1), ``x_i`` its activity trace,
``r_task`` the environment's reward, ``post(i)`` / ``pre(i)`` its feedforward postsynaptic /
presynaptic *neurons* (sensors are not agents and never count). All rewards are vectorized over the
batch and the neurons and never read a value back to the host inside a tick.
"""

from __future__ import annotations

import torch

from narla.rewards.registry import register_reward, tick_local
from narla.rewards.state import NetworkState
from narla.wiring import Wiring

SPARSITY_SCOPES = ("layer", "neighbourhood")
SPARSITY_BLAME = ("group", "cause")
_EPS = 1e-6  # slack on comparisons, so that e.g. 3 of 15 active counts as exactly 20 %


@register_reward("task")
@tick_local
def task(state: NetworkState) -> torch.Tensor:
    """The task reward, given to every neuron: ``r_i = r_task``; [B] -> [B, N]."""
    spikes = state.spikes
    return state.task_reward.to(spikes.dtype).unsqueeze(1).expand_as(spikes)


@register_reward("activity")
@tick_local
def activity(state: NetworkState, fire: float = 1.0, silent: float = -1.0) -> torch.Tensor:
    """Reward firing, punish silence: ``r_i = fire * s_i + silent * (1 - s_i)``; [B, N]."""
    spikes = state.spikes
    return silent + (fire - silent) * spikes


class LayerIndex:
    """Compact layer ids ``[N]`` of a wiring and their count, computed once per wiring (the only host sync, at
    setup); call it with the wiring on every tick."""

    def __init__(self) -> None:
        self._wiring: Wiring | None = None
        self._layer_id = torch.zeros(0, dtype=torch.long)
        self._num_layers = 0

    def __call__(self, wiring: Wiring) -> tuple[torch.Tensor, int]:
        if self._wiring is not wiring:
            values, self._layer_id = torch.unique(wiring.layer, return_inverse=True)
            self._num_layers, self._wiring = values.numel(), wiring
        return self._layer_id, self._num_layers


@register_reward("sparsity")
@tick_local
class Sparsity:
    """Reward a neuron when the fraction of active neurons around it is on target.

    ``f_i = (sum_{j in G(i)} s_j) / |G(i)|``; on target (``|f_i - target| <= tolerance``) ``r_i = reward``.
    Off target, ``blame`` says who is penalized:

    - ``"group"`` (default, as in NaRLA): every neuron of the group, ``r_i = penalty``;
    - ``"cause"``: only the neurons that pushed the fraction the wrong way, ``r_i = penalty`` if
      ``f_i > target`` and ``s_i = 1`` or ``f_i < target`` and ``s_i = 0``, else 0. A neuron's own choice
      then changes its reward directly (with ``"group"`` one neuron of 15 rarely moves the layer into or out
      of a narrow band, so its policy gradient from sparsity is almost zero).

    The group ``G(i)`` is, by ``scope``:

    - ``"layer"``: the neurons of i's layer (``wiring.layer``);
    - ``"neighbourhood"``: i itself, its presynaptic and its postsynaptic neurons (feedforward edges).

    Motor neurons are excluded by default (``include_motor=False``): they neither count in any group nor
    get this reward (``r = 0``), because NaRLA applies sparsity to hidden layers only and a motor layer of
    one neuron can never be 20 % active. With ``include_motor=True`` they count and are rewarded like any
    other neuron. Shapes: spikes [B, N] -> reward [B, N].
    """

    def __init__(
        self,
        target: float = 0.2,
        tolerance: float = 0.05,
        reward: float = 1.0,
        penalty: float = -1.0,
        scope: str = "layer",
        include_motor: bool = False,
        blame: str = "group",
    ) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target must be in [0, 1], got {target!r}")
        if tolerance < 0.0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        if scope not in SPARSITY_SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SPARSITY_SCOPES)}; got {scope!r}")
        self.target = float(target)
        self.tolerance = float(tolerance)
        self.reward = float(reward)
        self.penalty = float(penalty)
        if blame not in SPARSITY_BLAME:
            raise ValueError(f"blame must be one of {', '.join(SPARSITY_BLAME)}; got {blame!r}")
        self.scope = scope
        self.include_motor = include_motor
        self.blame = blame
        self._layers = LayerIndex()

    def __call__(self, state: NetworkState) -> torch.Tensor:
        spikes, wiring = state.spikes, state.wiring
        member = torch.ones_like(spikes[0]) if self.include_motor else (~wiring.motor).to(spikes.dtype)  # [N]
        active = spikes * member  # [B, N]
        if self.scope == "layer":
            layer_id, num_layers = self._layers(wiring)
            by_neuron = active.T.contiguous()  # [N, B]: index_add_ along dim 0 adds whole rows, the same sums in order
            count = by_neuron.new_zeros(num_layers, by_neuron.shape[1]).index_add_(0, layer_id, by_neuron)
            count = count.index_select(0, layer_id).T.contiguous()  # [B, N] as the spikes lie (mixed layouts: slow)
            size = member.new_zeros(num_layers).index_add_(0, layer_id, member)[layer_id]
        else:
            src, dst = wiring.edge_src, wiring.edge_dst
            count = active.clone().index_add_(1, dst, active[:, src]).index_add_(1, src, active[:, dst])
            size = member.clone().index_add_(0, dst, member[src]).index_add_(0, src, member[dst])
        fraction = count / size.clamp_min(1.0)  # [B, N]
        on_target = (fraction - self.target).abs() <= self.tolerance + _EPS
        blamed = ~on_target
        if self.blame == "cause":
            blamed = blamed & ((fraction > self.target) == (spikes > 0.5))
        value = torch.where(on_target, self.reward, torch.where(blamed, self.penalty, 0.0)).to(spikes.dtype)
        return value * member


@register_reward("prediction")
@tick_local
def prediction(state: NetworkState, hit: float = 1.0, miss: float = -1.0, mean: bool = True) -> torch.Tensor:
    """Reward a firing neuron for each postsynaptic neuron that fires with it.

    ``r_i = s_i * A_i * sum_{j in post(i)} (hit * s_j + miss * (1 - s_j))`` with ``A_i = 1 / |post(i)|`` when
    ``mean`` (the default: the reward stays in [miss, hit] whatever the fan-out) and ``A_i = 1`` otherwise.
    Silent neurons and neurons without postsynaptic neurons (the motor layer) get 0.
    "Postsynaptic activity" is read from the *same* sweep: feedforward targets come later in topological
    order, so their spikes are already in this tick's ``state.spikes``. Shapes: spikes [B, N], edges [E] -> [B, N].
    """
    spikes, wiring = state.spikes, state.wiring
    src, dst = wiring.edge_src, wiring.edge_dst
    by_neuron = spikes.T.contiguous()  # [N, B]
    scored = hit * by_neuron + miss * (1.0 - by_neuron)  # [N, B]: what each neuron's spike is worth
    # Edge-major [E, B], so that whole rows add up below; each edge's term is its target's value, in edge order.
    total = spikes.new_zeros(spikes.shape[1], spikes.shape[0]).index_add_(0, src, scored.index_select(0, dst))
    if mean:
        fan_out = torch.zeros_like(spikes[0]).index_add_(0, src, torch.ones_like(src, dtype=spikes.dtype))  # [N]
        total = total / fan_out.clamp_min(1.0).unsqueeze(1)
    return spikes * total.T.contiguous()  # both [B, N] in memory: an elementwise product over mixed layouts is slow


@register_reward("trace")
@tick_local
class Trace:
    """Punish neurons pinned always-off or always-on, judged by their activity trace.

    ``r_i = penalty if x_i < low or x_i > high else 0``, with the engine's trace
    ``x_i <- d * x_i + (1 - d) * s_i`` (``d = scheme.trace_decay``; before an episode's first tick
    ``x_i = x_0 = scheme.trace_init``, default 0.5). From the midpoint, constant firing passes ``high`` after
    ``log((1 - high) / (1 - x_0)) / log(d)`` ticks and constant silence passes ``low`` after
    ``log(low / x_0) / log(d)`` ticks: about 22 each for the defaults (``d = 0.9``, band 0.05-0.95), so the
    two ways of being pinned are penalized alike. (A start at 0 would count every neuron as silent until it
    fires, penalizing silence from the first tick but constant firing only after 29 ticks.)
    Shapes: trace [B, N] -> reward [B, N].
    """

    def __init__(self, low: float = 0.05, high: float = 0.95, penalty: float = -1.0) -> None:
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"need 0 <= low <= high <= 1, got low={low!r}, high={high!r}")
        self.low = float(low)
        self.high = float(high)
        self.penalty = float(penalty)

    def __call__(self, state: NetworkState) -> torch.Tensor:
        trace = state.trace
        pinned = (trace < self.low) | (trace > self.high)
        return pinned.to(state.spikes.dtype) * self.penalty


@register_reward("relay")
@tick_local
class Relay:
    """Reward a neuron for agreeing with its relay source, so that activity is carried from layer to layer.

    ``r_i = agree if s_i == s_src(i) else disagree`` for neurons with a source, 0 for the others.
    ``src(i)`` is the presynaptic neuron (a feedforward edge ``src -> i``) that holds the same rank within
    its layer as ``i`` within its own: in a ``layered`` graph, neuron ``n{L}_{p}`` relays ``n{L-1}_{p}``. The
    first layer (only sensors below it) has no source; motor neurons are excluded unless ``include_motor``.
    The source's spike is read from the same sweep (as :func:`prediction` does), which is what the neuron
    saw under ``propagation: sweep``.

    Not one of the paper's rewards: a local reward of our own. Without it, a deep ``layered`` network starts
    with every hidden neuron firing at random, independent of its input, and the task reward cannot reach
    the first layer through the noise; a neuron that learns to repeat its source opens that path.
    Shapes: spikes [B, N] -> reward [B, N].
    """

    def __init__(self, agree: float = 1.0, disagree: float = -1.0, include_motor: bool = False) -> None:
        self.agree = float(agree)
        self.disagree = float(disagree)
        self.include_motor = include_motor
        self._wiring: Wiring | None = None
        self._source = torch.zeros(0, dtype=torch.long)

    def sources(self, wiring: Wiring) -> torch.Tensor:
        """``src[N]``: each neuron's relay source (engine index), -1 where it has none; cached per wiring."""
        if self._wiring is not wiring:
            layer = wiring.layer
            n = layer.numel()
            index = torch.arange(n, device=layer.device)
            # neurons are ordered by layer, so a neuron's rank is its index minus its layer's first index
            first = torch.full((int(layer.max()) + 1 if n else 1,), n, dtype=torch.long, device=layer.device)
            first = first.scatter_reduce(0, layer, index, reduce="amin")
            rank = index - first[layer]
            src, dst = wiring.edge_src, wiring.edge_dst
            match = rank[src] == rank[dst]
            if not self.include_motor:
                match = match & ~wiring.motor[dst]
            source = torch.full((n,), -1, dtype=torch.long, device=layer.device)
            source[dst[match]] = src[match]
            self._source, self._wiring = source, wiring
        return self._source

    def __call__(self, state: NetworkState) -> torch.Tensor:
        spikes = state.spikes
        source = self.sources(state.wiring)
        has = (source >= 0).to(spikes.dtype)  # [N]
        same = spikes == spikes[:, source.clamp_min(0)]  # [B, N]
        return torch.where(same, self.agree, self.disagree).to(spikes.dtype) * has
