"""The NaRLA paper's rewards, as its code computed them (REFERENCES.md, "The code behind Table 1").

Each is a variant beside narla's own rewards (:mod:`narla.rewards.builtin`), registered under its own name;
in the paper all of them are summed with weight 1. Per neuron per tick, ``s_i`` its spike (0 or 1):

- ``paper_firing``: ``r_i = s_i`` (1 if it fired, else 0).
- ``paper_sparsity`` (hidden layers; 0 for motor neurons): ``f`` the fraction of i's layer firing,
  ``e = f − target`` (target 0.2) and ``o_i = +1`` if it fired, ``−1`` if silent:
  ``r_i = −e·o_i`` if ``e > 0``, ``+e·o_i`` if ``e < 0``, ``target·|o_i|`` if ``e = 0``.
  As written this is ``−|e|·o_i`` off target: a firing neuron loses ``|e|`` and a silent one gains it whether
  the layer is too active or too quiet.
- ``paper_prediction`` (0 for neurons without postsynaptic neurons): ``r_i = s_i · Σ_{j ∈ post(i)} (2 s_j − 1)``.
- ``paper_trace``: ``r_i = f(|m_i − 0.5|)`` with ``m_i`` neuron i's mean firing over its episode so far (this
  tick included) and ``f(x) = −1746463 + (0.9256812 + 1746463) / (1 + (x / 236.1357)^2.160334)``: about +0.93
  at ``m = 0.5``, about −2.0 at ``m = 0`` or ``1``.
"""

from __future__ import annotations

import torch

from narla.rewards.builtin import LayerIndex, activity, prediction
from narla.rewards.registry import register_reward, tick_local, ticks_in_order
from narla.rewards.state import NetworkState

TRACE_A = -1746463.0
TRACE_D = 0.9256812
TRACE_C = 236.1357
TRACE_B = 2.160334
_EXACT = 1e-6  # |e| below this counts as on target: 3 of 15 firing is exactly 20 %


@register_reward("paper_firing")
@tick_local
def paper_firing(state: NetworkState) -> torch.Tensor:
    """``r_i = 1`` if neuron i fired, else 0; [B, N]."""
    return activity(state, fire=1.0, silent=0.0)


@register_reward("paper_prediction")
@tick_local
def paper_prediction(state: NetworkState) -> torch.Tensor:
    """``r_i = s_i · Σ_{j ∈ post(i)} (+1 if j fired else −1)`` (a sum, not a mean); [B, N]."""
    return prediction(state, hit=1.0, miss=-1.0, mean=False)


@register_reward("paper_sparsity")
@tick_local
class PaperSparsity:
    """The paper's layer sparsity reward (formula in the module docstring); spikes [B, N] -> reward [B, N]."""

    def __init__(self, target: float = 0.2) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target must be in [0, 1], got {target!r}")
        self.target = float(target)
        self._layers = LayerIndex()

    def __call__(self, state: NetworkState) -> torch.Tensor:
        spikes, wiring = state.spikes, state.wiring
        hidden = (~wiring.motor).to(spikes.dtype)  # [N]
        layer_id, num_layers = self._layers(wiring)
        by_neuron = (spikes * hidden).T.contiguous()  # [N, B]: whole rows add up, the same sums in the same order
        count = by_neuron.new_zeros(num_layers, by_neuron.shape[1]).index_add_(0, layer_id, by_neuron)
        count = count.index_select(0, layer_id).T  # [B, N]
        size = hidden.new_zeros(num_layers).index_add_(0, layer_id, hidden)[layer_id]
        e = count / size.clamp_min(1.0) - self.target  # [B, N]
        o = 2.0 * spikes - 1.0
        value = torch.where(e > _EXACT, -e * o, torch.where(e < -_EXACT, e * o, self.target * o.abs()))
        return value * hidden


def trace_curve(x: torch.Tensor) -> torch.Tensor:
    """``f(x)`` of the paper's trace reward, computed in float64 (the constants cancel to ~1e-6)."""
    x64 = x.to(torch.float64)
    return TRACE_A + (TRACE_D - TRACE_A) / (1.0 + (x64 / TRACE_C) ** TRACE_B)


@register_reward("paper_trace")
@ticks_in_order
class PaperTrace:
    """``r_i = f(|m_i − 0.5|)``, ``m_i`` the mean of neuron i's spikes over its episode so far (this tick included).

    Keeps the running firing count per copy and neuron (``[B, N]``), restarted on each episode's first tick
    (``state.first``); so it must see every tick of an episode in order: one at a time, as
    :func:`narla.rollout.finish_tick` calls it, or several at once (``state.ticks``, as
    :func:`narla.rollout.score_ticks` calls it), when the counts are carried tick by tick (three small calls a tick)
    and the curve is evaluated on all the ticks together.
    """

    def __init__(self) -> None:
        self._fired: torch.Tensor | None = None
        self._ticks: torch.Tensor | None = None

    def __call__(self, state: NetworkState) -> torch.Tensor:
        k = state.ticks
        spikes = state.spikes.view(k, -1, state.spikes.shape[1])  # [K, B, N]
        first = state.first.view(k, -1, 1)
        if self._fired is None or self._fired.shape != spikes.shape[1:] or self._fired.device != spikes.device:
            self._fired = torch.zeros_like(spikes[0])
            self._ticks = torch.zeros_like(spikes[0, :, :1])
        m = torch.empty_like(spikes)
        for t in range(k):
            self._fired = torch.where(first[t], 0.0, self._fired) + spikes[t]
            self._ticks = torch.where(first[t], 0.0, self._ticks) + 1.0
            torch.div(self._fired, self._ticks, out=m[t])
        return trace_curve((m - 0.5).abs()).to(spikes.dtype).view_as(state.spikes)

    def select_columns(self, columns: torch.Tensor) -> None:
        """Keep the running counts of the copies ``columns`` only (:meth:`RewardScheme.select_columns`)."""
        if self._fired is not None:
            self._fired = self._fired.index_select(0, columns)
            self._ticks = self._ticks.index_select(0, columns)
