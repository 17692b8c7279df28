"""Collecting a batch of episodes: ``B`` copies each play one episode, as ``[T, B, ...]`` tensors.

Collection is episode-synchronous (what REINFORCE needs): every copy starts an episode together;
a copy whose episode ends stays masked out (``valid`` is False) until the slowest copy finishes, so
a batch holds exactly ``B`` complete episodes. With ``B = 1`` this is NaRLA's one-episode update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from narla.capture import GraphTick, graph_tick
from narla.context import action_features
from narla.engine import Engine
from narla.hidden import HiddenRecord
from narla.rewards.scheme import RewardScheme
from narla.rewards.state import NetworkState
from narla.tasks.base import Task
from narla.wiring import Wiring


@dataclass
class Rollout:
    """``B`` complete episodes padded to ``T`` ticks.

    Memory per neuron and tick is what learning needs: the action (one byte in spiking networks) and the total
    reward (four; none where :func:`collect` was asked not to record it: ``rewards`` is then None and ``rescoring``
    scores any window of ticks again). Each reward component is kept as its per-episode sum ``component_sums``; its
    per-tick values ``components`` only when :func:`collect` is asked for them (``per_tick_components=True``, as
    ``narla record`` does).
    """

    obs: torch.Tensor  # [T, B, obs_dim] observation each tick acted on
    actions: torch.Tensor  # [T, B, N] every neuron's choice: int8 in spiking networks (Engine.record_dtype), else float
    first: torch.Tensor  # [T, B] bool, first tick of an episode
    valid: torch.Tensor  # [T, B] bool, the tick belongs to the copy's episode
    done: torch.Tensor  # [T, B] bool, the episode ended with this tick
    task_reward: torch.Tensor  # [T, B]
    rewards: torch.Tensor | None  # [T, B, N] each neuron's total reward, zero on invalid ticks; None: see rescoring
    component_sums: dict[str, torch.Tensor]  # name -> [B, N], each component summed over the copy's episode
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [T, B, N] when asked for
    prev_action: torch.Tensor | None = None  # [T, B, A] previous task action features (universal context)
    hidden: HiddenRecord | None = None  # the policies' last hidden output, when collect kept it (keep_hidden)
    rescoring: Rescoring | None = None  # instead of ``rewards`` (collect(..., record_rewards=False))

    def reward_windows(self) -> list[tuple[int, int]]:
        """The tick windows ``[lo, hi)`` :meth:`window_rewards` gives, in order: one of all ticks when ``rewards`` is
        recorded, else its rescoring groups (:class:`Rescoring`)."""
        if self.rescoring is None:
            return [(0, self.valid.shape[0])]
        return [self.rescoring.ticks(g) for g in range(len(self.rescoring.groups))]

    def window_rewards(self, k: int) -> torch.Tensor:
        """Each neuron's total reward ``[hi - lo, B, N]`` over window ``k`` of :meth:`reward_windows` (zero on invalid
        ticks): the record's, or scored again, bit for bit what a record would hold."""
        if self.rescoring is None:
            return self.rewards
        return self.rescoring.score(self, k)

    def all_rewards(self) -> torch.Tensor:
        """``[T, B, N]`` each neuron's total reward: ``rewards``, or every window scored again into a new tensor."""
        if self.rescoring is None:
            return self.rewards
        out = torch.empty(self.actions.shape, device=self.valid.device)
        for g, (lo, hi) in enumerate(self.reward_windows()):
            out[lo:hi] = self.rescoring.score(self, g)
        return out

    def neuron_returns(self) -> torch.Tensor:
        """``[B, N]`` each neuron's total reward summed over its copy's episode (undiscounted)."""
        return self.rewards.sum(0) if self.rescoring is None else self.rescoring.total_sums

    @property
    def spikes(self) -> torch.Tensor:
        """``[T, B, N]`` float spikes (a new tensor, four bytes per neuron-tick)."""
        return (self.actions > 0).float()

    def spike_counts(self) -> torch.Tensor:
        """``[B, N]`` float: each neuron's spikes over its copy's episode (without a float ``[T, B, N]``)."""
        return ((self.actions > 0) & self.valid.unsqueeze(-1)).sum(0).float()

    @property
    def num_episodes(self) -> int:
        return self.valid.shape[1]


@dataclass
class Rescoring:
    """What scoring a rollout's ticks again needs, kept instead of its ``[T, B, N]`` per-tick rewards (four bytes per
    neuron and copy-tick): the scheme (its terms all tick-local), the wiring and episode it scored with, its scoring
    windows (:func:`score_windows`), grouped into runs of at least :data:`RESCORE_GROUP_TICKS` ticks, the activity
    trace before each group (``[B, N]``: a quarter byte per neuron and copy-tick at 16 ticks a group), and each
    neuron's total reward summed over the episode (``[B, N]``, summed tick by tick). A group is scored again as a
    whole (:meth:`score`), its previous spikes read from the recorded actions."""

    scheme: RewardScheme
    wiring: Wiring
    episode: int
    windows: list[tuple[int, int]]  # the scoring windows [lo, hi) of ticks
    groups: list[tuple[int, int]]  # [first, last) scoring windows of each group
    traces: list[torch.Tensor]  # [B, N] the trace before each group's first tick
    total_sums: torch.Tensor

    def ticks(self, g: int) -> tuple[int, int]:
        """The ticks ``[lo, hi)`` of group ``g``."""
        first, last = self.groups[g]
        return self.windows[first][0], self.windows[last - 1][1]

    def score(self, rollout: Rollout, g: int) -> torch.Tensor:
        """Group ``g``'s total rewards ``[hi - lo, B, N]``, its windows scored in order from the state before it: the
        same numbers as scoring every window of the rollout in order."""
        lo, hi = self.ticks(g)
        b, n = self.total_sums.shape
        prev = (rollout.actions[lo - 1] > 0).float() if lo > 0 else torch.zeros(b, n, device=rollout.valid.device)
        scorer = TickScorer(self.scheme, self.wiring, self.episode, b, n, rollout.valid.device,
                            start=(self.traces[g], prev))
        out = torch.empty(hi - lo, b, n, device=rollout.valid.device)
        for first, last in self.windows[self.groups[g][0] : self.groups[g][1]]:
            out[first - lo : last - lo] = scorer.score(rollout.actions[first:last], rollout.first[first:last],
                                                       rollout.valid[first:last], rollout.done[first:last],
                                                       rollout.task_reward[first:last])[0]
        return out


RESCORE_GROUP_TICKS = 16  # scoring windows are grouped for rescoring into runs of at least this many ticks


@dataclass
class Carry:
    """What one tick of ``B`` copies hands the next: the state a :class:`NetworkState` and the engine read."""

    prev: torch.Tensor  # [S + N, B] the activity vector of the tick before (zeros at an episode's start)
    prev_spikes: torch.Tensor  # [B, N] that tick's neuron activity
    trace: torch.Tensor  # [B, N] the reward scheme's activity trace
    first: torch.Tensor  # [B] bool, the next tick is an episode's first
    prev_action: torch.Tensor | None  # [B, A] previous task action features, or None without universal context


@dataclass
class TickOutcome:
    """What one finished tick of ``B`` copies produced."""

    next_obs: torch.Tensor  # [B, obs_dim] the observation the next tick acts on (a new episode's, after done)
    task_action: torch.Tensor  # the readout's task action, [B] or [B, A]
    reward: torch.Tensor  # [B] task reward
    terminated: torch.Tensor  # [B] bool
    truncated: torch.Tensor  # [B] bool
    total: torch.Tensor | None  # [B, N] each neuron's total reward (None: the tick was not scored)
    parts: dict[str, torch.Tensor]  # reward component -> [B, N]
    done: torch.Tensor  # [B] bool, terminated | truncated


def start_carry(engine: Engine, batch: int) -> Carry:
    """The carry at the start of an episode in every copy; also zeroes the engine's memory for ``batch`` copies."""
    s, n, device = engine.num_sensors, engine.num_neurons, engine.device
    engine.reset_memory(batch)
    a = engine.population.action_dim
    return Carry(
        prev=torch.zeros(s + n, batch, device=device),
        prev_spikes=torch.zeros(batch, n, device=device),
        trace=torch.zeros(batch, n, device=device),
        first=torch.ones(batch, dtype=torch.bool, device=device),
        prev_action=torch.zeros(batch, a, device=device) if a > 0 else None,
    )


def finish_tick(
    engine: Engine, task: Task, scheme, carry: Carry, act: torch.Tensor, actions: torch.Tensor, episode: int,
    obs: torch.Tensor | None = None, terms_mask: torch.Tensor | None = None,
) -> tuple[TickOutcome, Carry]:
    """Every neuron has acted (``act[S + N, B]``, ``actions[N, B]``, on observations ``obs[B, obs_dim]``): read the
    task action out of the motor neurons, step the task, pay every neuron from ``scheme`` and hand the next tick its
    carry. ``terms_mask`` ``[K, B]`` (optional) says which reward terms apply in which copy, for copies at
    different episodes of a phased scheme (:mod:`narla.runs`); without it ``episode`` decides.

    This is the one place a tick ends, for :func:`collect` and for the PettingZoo views alike. The memory of the
    copies whose episode ended is cleared, and so is their previous task action. With ``scheme`` None the tick is
    not scored (``total`` None, no ``parts``, the trace carried unchanged): :func:`collect` then scores the whole
    rollout at once (:func:`score_ticks`).
    """
    task_action = engine.readout(actions)
    with torch.inference_mode(False):  # a task's own state stays ordinary tensors, even while collect ticks
        next_obs, reward, terminated, truncated = task.step(task_action)
    done = terminated | truncated
    spikes = act[engine.num_sensors :].T
    total, parts, trace = None, {}, carry.trace
    if scheme is not None:
        trace = scheme.update_trace(carry.trace, spikes, carry.first)
        state = NetworkState(spikes, carry.prev_spikes, trace, reward, done, carry.first, engine.wiring, episode,
                             engine.memory, obs=obs, task_action=task_action, next_obs=next_obs,
                             terminated=terminated, truncated=truncated, activity=act, terms_mask=terms_mask)
        total, parts = scheme(state)
    if engine.memory is not None:
        engine.keep_memory(~done)
    prev_action = None
    if carry.prev_action is not None:
        prev_action = action_features(task_action, engine.readout.action_space) * (~done).float().unsqueeze(1)
    outcome = TickOutcome(next_obs, task_action, reward, terminated, truncated, total, parts, done)
    return outcome, Carry(act, spikes, trace, done, prev_action)


def _tick(
    engine: Engine, obs: torch.Tensor, carry: Carry, active: torch.Tensor | None, use_action: bool,
    graph: GraphTick | None = None, dropped: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``engine.tick`` of every copy, or only of the ``active`` ones, their results placed in ``B`` columns (the
    others zero). ``graph``: replays the full-width tick; with ``dropped[B]`` (bool, the copies outside ``active``) it
    also stands in for the compacted tick, its dropped columns zeroed after the replay."""
    prev_action = carry.prev_action if use_action else None
    if graph is not None and (active is None or dropped is not None):
        act, actions = graph(obs, carry.prev)
        if dropped is not None:
            act.masked_fill_(dropped, 0.0)
            actions.masked_fill_(dropped, 0)
        return act, actions
    if active is None:
        return engine.tick(obs, carry.prev, prev_action=prev_action)
    engine.columns = (obs.shape[0], active)
    try:
        part_action = prev_action.index_select(0, active) if prev_action is not None else None
        act, actions = engine.tick(obs.index_select(0, active), carry.prev.index_select(1, active),
                                   prev_action=part_action)
    finally:
        engine.columns = None
    full_act = act.new_zeros(act.shape[0], obs.shape[0]).index_copy_(1, active, act)
    return full_act, actions.new_zeros(actions.shape[0], obs.shape[0]).index_copy_(1, active, actions)


def collect(
    engine: Engine,
    task: Task,
    scheme,
    episode: int = 0,
    sync_every: int = 16,
    per_tick_components: bool = False,
    keep_hidden: bool = False,
    hidden_columns: int | None = None,
    graphs: bool = True,
    record_rewards: bool = True,
) -> Rollout:
    """Play one episode in each of the task's ``B`` copies with the engine's current policies.

    ``scheme`` is a :class:`narla.rewards.RewardScheme` (``scheme(state) -> (total, components)``).
    The loop checks whether any copy is still running every ``sync_every`` ticks on a GPU, so there is no device sync
    inside a tick, and after every tick on the CPU when the engine is :attr:`~narla.engine.Engine.compactable`, where
    a check costs no device sync (:mod:`narla.runs` keeps each batched run on the ``sync_every`` clock, so its runs
    draw the random numbers a lone run draws, padding ticks included). A batch stops on that clock, with one exception:
    on the CPU, a batch of feedforward Bernoulli neurons on a torch-native task stops as soon as every episode has
    ended, the ticks left before the clock's stop are recorded as zeros without being computed, and the engine's and
    task's generators skip the numbers those ticks would have drawn (:meth:`~narla.engine.Engine.skip_ticks`,
    :meth:`~narla.tasks.base.Task.skip_steps`), so the rollout's valid ticks and every later batch are the same bit
    for bit.

    When the engine is :attr:`~narla.engine.Engine.compactable`, a check also drops the finished copies from its
    ticks (:meth:`~narla.engine.Engine.live_columns` says which columns stay): on the CPU as soon as any has ended,
    on a GPU once at most :data:`COMPACT_FRACTION` of the copies it computes still run. Its ticks then compute only
    those, with the random numbers they would have drawn anyway, and the dropped copies' columns hold zeros.
    The task, the rewards and the record keep all ``B`` columns. So a batch of episodes of very different lengths
    costs about the sum of their lengths, not ``B`` times the longest.

    Memory: the record holds ``obs``, the actions (in :attr:`~narla.engine.Engine.record_dtype`) and the total
    reward of every tick, and each component's running sum; a large record is stacked tick by tick as each is freed,
    so the peak is the record plus one tick. ``per_tick_components`` also keeps every component per tick.
    ``keep_hidden`` also keeps the policies' last hidden output for the update that follows (``Rollout.hidden``,
    :mod:`narla.hidden`, where it pays and the engine can): ``H · 4`` bytes per neuron and computed column, and
    only while at most ``hidden_columns`` columns have been computed (give the update's ``learning.chunk_columns``:
    a batch larger than one window is re-evaluated window by window and would not use it).

    On a GPU, where the engine is :attr:`~narla.engine.Engine.capturable` and no hidden layer is kept, the ticks of all
    ``B`` copies are replayed as one CUDA graph each (:func:`narla.capture.graph_tick`; ``graphs=False`` ticks eagerly).
    A compacted tick computed on fewer columns would be an eager one, launch by launch, so a batch of at most
    :data:`GRAPH_WHOLE_BATCH` neuron-copies, whose time the launches set, goes on replaying the full-width graph
    once compacted and zeroes the dropped copies' columns, as the compacted tick leaves them; a larger batch ticks
    its remaining copies eagerly. Either way the finished copies act as without graphs (their zero actions still
    step the task, and a task may fold their observations into shared state such as running normalisation), and a
    replay draws the eager tick's uniforms and runs its kernels, so the rollout is the one eager ticks give.

    ``record_rewards=False``: where the ticks are scored together after collection and every reward term is
    tick-local (:attr:`~narla.rewards.RewardScheme.tick_local`), the rollout keeps no ``[T, B, N]`` rewards
    (``rewards`` None) but what scores any window of its ticks again, bit for bit (``rescoring``,
    :meth:`Rollout.window_rewards`): a learner that reads them window by window then holds one byte per neuron and
    copy-tick (the action) instead of five. Otherwise the rewards are recorded as usual.
    """
    bulk = scores_in_bulk(engine, scheme)
    obs = task.reset()
    record = HiddenRecord.start(engine, task.num_envs, hidden_columns) if keep_hidden else None
    engine.hidden_record = record
    try:
        graph = graph_tick(engine, task.num_envs) if graphs and record is None else None
        rec, sums, comps, prev_actions, use_action = _play(engine, task, scheme, obs, episode, sync_every, bulk,
                                                            per_tick_components, record, graph)
    finally:
        engine.hidden_record = None
    stacked = {k: stack_freeing(v) for k, v in rec.items()}
    components = {k: stack_freeing(v) for k, v in comps.items()}
    sums = {k: v.clone() for k, v in sums.items()}
    rescoring = None
    if bulk and not record_rewards and scheme.tick_local and not per_tick_components:
        stacked["rewards"] = None
        rescoring, sums = _score_lean(scheme, engine.wiring, episode, stacked)
    elif bulk:
        stacked["rewards"], sums, components = score_ticks(
            scheme, engine.wiring, stacked["actions"], stacked["first"], stacked["valid"], stacked["done"],
            stacked["task_reward"], episode, per_tick_components,
        )
    if record is not None:
        record.finish(stacked["valid"])
    return Rollout(
        component_sums=sums,
        components=components,
        prev_action=stack_freeing(prev_actions) if use_action else None,
        hidden=None if record is None or record.dropped else record,
        rescoring=rescoring,
        **stacked,
    )


def scores_in_bulk(engine: Engine, scheme) -> bool:
    """Whether :func:`collect` scores the ticks together after collection (:func:`score_ticks`) rather than tick by
    tick: spiking neurons' spikes are their recorded choices > 0, so a scheme that
    :attr:`~narla.rewards.RewardScheme.scores_in_bulk` can score every tick from the record. Only then can it keep
    no per-tick rewards (``record_rewards=False``)."""
    return scheme.scores_in_bulk and not engine.whole_network and engine.rate is None


def _score_lean(
    scheme: RewardScheme, wiring: Wiring, episode: int, stacked: dict[str, torch.Tensor]
) -> tuple[Rescoring, dict[str, torch.Tensor]]:
    """:func:`score_ticks`'s component sums of a record ``stacked``, keeping no per-tick rewards: the trace before each
    rescoring group instead (a :class:`Rescoring`), and each neuron's total summed over its episode."""
    t, b, n = stacked["actions"].shape
    scorer = TickScorer(scheme, wiring, episode, b, n, stacked["valid"].device)
    windows, groups, traces = score_windows(t, b, n), [], []
    total_sums = torch.zeros(b, n, device=stacked["valid"].device)
    for k, (lo, hi) in enumerate(windows):
        if not groups or lo - windows[groups[-1][0]][0] >= RESCORE_GROUP_TICKS:
            groups.append((k, k))
            traces.append(scorer.trace_before_next())
        groups[-1] = (groups[-1][0], k + 1)
        total, _ = scorer.score(*(stacked[key][lo:hi] for key in ("actions", "first", "valid", "done", "task_reward")))
        for tick in range(hi - lo):
            total_sums += total[tick]
    return Rescoring(scheme, wiring, episode, windows, groups, traces, total_sums), scorer.sums()


def _play(
    engine: Engine, task: Task, scheme, obs: torch.Tensor, episode: int, sync_every: int, bulk: bool,
    per_tick_components: bool, record: HiddenRecord | None, graph: GraphTick | None,
) -> tuple[dict[str, list], dict[str, torch.Tensor], dict[str, list], list[torch.Tensor], bool]:
    """:func:`collect`'s tick loop: the per-tick record, the component sums (tick-by-tick scoring), the per-tick
    components, the previous task actions and whether the population reads them. ``graph``: what replays the
    full-width ticks (None: eager ticks)."""
    b = task.num_envs
    # The ticks run under inference mode, which skips autograd's bookkeeping on each of their small ops (the task
    # steps outside it, in finish_tick); the record is stacked after it, as ordinary tensors a learning update uses.
    with torch.inference_mode():
        carry = start_carry(engine, b)
        alive = torch.ones(b, dtype=torch.bool, device=engine.device)
        use_action = carry.prev_action is not None
        # On the CPU a check costs no device sync: finished copies are dropped after every tick (columns computed for
        # ended episodes cost more than the indexing of a compacted tick).
        every_tick = engine.device.type == "cpu" and engine.compactable
        fraction = 1.0 if every_tick else COMPACT_FRACTION
        # A small batch replays the full-width graph after compaction too (its launch costs less than an eager tick
        # of a few copies), its dropped columns zeroed: `dropped` marks them.
        masked = graph is not None and engine.num_neurons * b <= GRAPH_WHOLE_BATCH
        dropped: torch.Tensor | None = None
        dtype = engine.record_dtype
        prev_actions: list[torch.Tensor] = []
        kept = ("obs", "actions", "first", "valid", "done", "task_reward") + (() if bulk else ("rewards",))
        rec: dict[str, list] = {k: [] for k in kept}
        comps: dict[str, list] = {name: [] for name in scheme.names} if per_tick_components and not bulk else {}
        sums: dict[str, torch.Tensor] = {}
        active: torch.Tensor | None = None  # the copies the engine computes; None: all of them
        # Where the engine and the task can skip their draws (CPU, feedforward Bernoulli neurons, a torch-native
        # task), the batch stops as soon as every episode has ended; the ticks left before the clock's stop are
        # padding, recorded as zeros and never computed (_skip_padding).
        skippable = engine.skip_ticks(0, b) and isinstance(task, Task) and task.skip_steps(0)
        steps = task.max_episode_steps
        boundary = True
        for t in range(steps):
            if use_action:
                prev_actions.append(carry.prev_action)
            act, actions = _tick(engine, obs, carry, active, use_action, graph, dropped)
            if record is not None:
                record.end_tick(active)
            first = carry.first
            out, carry = finish_tick(engine, task, None if bulk else scheme, carry, act, actions, episode, obs)
            rec["obs"].append(obs)
            rec["actions"].append(actions.T if dtype is None else actions.T.to(dtype))
            rec["first"].append(first)
            rec["valid"].append(alive)
            rec["done"].append(out.done & alive)
            rec["task_reward"].append(out.reward * alive)
            if not bulk:
                mask = alive.unsqueeze(1).float()
                rec["rewards"].append(out.total * mask)
                for name in scheme.names:
                    part = out.parts[name] * mask
                    sums[name] = sums[name] + part if name in sums else part
                    if per_tick_components:
                        comps[name].append(part)
            alive = alive & ~out.done
            obs = out.next_obs
            boundary = (t + 1) % sync_every == 0
            if boundary or every_tick:
                if engine.compactable:
                    live = engine.live_columns(alive)  # the one host sync of the check
                    if live.numel() == 0 and (boundary or skippable):
                        break
                    computed = b if active is None else active.numel()
                    if 0 < live.numel() < computed and live.numel() <= computed * fraction:
                        active = live
                        dropped = torch.ones_like(alive).index_fill_(0, live, False) if masked else None
                elif not bool(alive.any()):
                    break
    if skippable and not boundary:  # every episode ended before the clock's stop: the rest of its block is padding
        stop = min(-(-(t + 1) // sync_every) * sync_every, steps)  # where the loop would have stopped
        _skip_padding(engine, task, rec, comps, prev_actions, stop - t - 1)
    return rec, sums, comps, prev_actions, use_action


def _skip_padding(
    engine: Engine, task: Task, rec: dict[str, list], comps: dict[str, list], prev_actions: list[torch.Tensor],
    ticks: int,
) -> None:
    """Record ``ticks`` padding ticks as zeros without computing them, and take their random numbers from the
    engine's and the task's generators, so that the next batch draws what it would have drawn had they run."""
    engine.skip_ticks(ticks, task.num_envs)
    task.skip_steps(ticks)
    for per_tick in [*rec.values(), *comps.values(), prev_actions]:
        if per_tick:
            per_tick.extend([torch.zeros_like(per_tick[-1])] * ticks)


SCORE_AT_ONCE_ELEMENTS = 1 << 22  # [ticks x B x N] elements :func:`score_ticks` scores in one call (16 MiB a tensor)


def score_ticks(
    scheme: RewardScheme, wiring: Wiring, actions: torch.Tensor, first: torch.Tensor, valid: torch.Tensor,
    done: torch.Tensor, task_reward: torch.Tensor, episode: int, per_tick_components: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Score a collected rollout of spiking neurons with a scheme that
    :attr:`~narla.rewards.RewardScheme.scores_in_bulk`: the values :func:`finish_tick` gives tick by tick, bit for
    bit, computed for many ticks at once.

    ``actions[T, B, N]`` (spikes are the choices > 0), ``first``, ``valid``, ``done`` and ``task_reward`` ``[T, B]``
    as :class:`Rollout` records them (``done`` and ``task_reward`` zero on invalid ticks, which are never scored). The
    ticks go to the scheme as the rows of one :class:`NetworkState` (``ticks`` of them, tick-major), windows of at most
    :data:`SCORE_AT_ONCE_ELEMENTS` elements in order (:class:`TickScorer`); the activity trace is run first (a
    recurrence, :meth:`~narla.rewards.RewardScheme.trace_ticks`).
    Returns each neuron's total reward ``[T, B, N]`` and each component's sum over the valid ticks ``[B, N]``
    (and per tick ``[T, B, N]`` with ``per_tick_components``), zero on invalid ticks, as :func:`collect` records.
    """
    t, b, n = actions.shape
    scorer = TickScorer(scheme, wiring, episode, b, n, actions.device)
    rewards = torch.empty(t, b, n, device=actions.device)
    comps: dict[str, list[torch.Tensor]] = {name: [] for name in scheme.names} if per_tick_components else {}
    for lo, hi in score_windows(t, b, n):
        total, stacked = scorer.score(actions[lo:hi], first[lo:hi], valid[lo:hi], done[lo:hi], task_reward[lo:hi])
        rewards[lo:hi] = total
        for i, name in enumerate(comps):
            comps[name].append(stacked[:, i])
    return rewards, scorer.sums(), {name: torch.cat(windows) for name, windows in comps.items()}


def score_windows(ticks: int, batch: int, neurons: int) -> list[tuple[int, int]]:
    """The tick windows ``[lo, hi)`` :func:`score_ticks` scores one after another: at most
    :data:`SCORE_AT_ONCE_ELEMENTS` ticks x copies x neurons each (at least one tick)."""
    window = max(1, SCORE_AT_ONCE_ELEMENTS // max(1, batch * neurons))
    return [(lo, min(lo + window, ticks)) for lo in range(0, ticks, window)]


class TickScorer:
    """Scores a rollout's ticks window after window, in order, carrying what joins them: the activity trace, the
    previous tick's spikes and each component's running sum over the valid ticks (summed tick by tick, as
    :func:`collect` sums them tick by tick: the same rounding). :meth:`trace_before_next` and ``start`` let a later
    pass score windows again from where the first pass entered them (:class:`Rescoring`)."""

    def __init__(self, scheme: RewardScheme, wiring: Wiring, episode: int, batch: int, neurons: int,
                 device: torch.device, start: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.scheme, self.wiring, self.episode = scheme, wiring, episode
        zeros = torch.zeros(batch, neurons, device=device)
        self.trace, self.prev = (zeros, zeros.clone()) if start is None else start
        self.running: torch.Tensor | None = None  # [C, B, N]: each component's sum over the ticks scored so far

    def trace_before_next(self) -> torch.Tensor:
        """The trace ``[B, N]`` before the next window's first tick (a copy: the scorer's own is a view into the last
        window's ``[K, B, N]`` traces, which a kept view would keep whole)."""
        return self.trace.clone()

    def score(self, actions: torch.Tensor, first: torch.Tensor, valid: torch.Tensor, done: torch.Tensor,
              task_reward: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next ``K`` ticks (``actions[K, B, N]``, the rest ``[K, B]``): each neuron's total reward ``[K, B, N]``
        and the components ``[K, C, B, N]`` (None without components), zero on invalid ticks."""
        k, b, n = actions.shape
        scheme = self.scheme
        spikes = (actions > 0).float()  # [K, B, N]
        traces = scheme.trace_ticks(self.trace, spikes, first)
        self.trace = traces[-1]
        before = torch.cat([self.prev.unsqueeze(0), spikes[:-1]])
        self.prev = spikes[-1]
        rows = k * b
        state = NetworkState(spikes.view(rows, n), before.view(rows, n), traces.view(rows, n),
                             task_reward.reshape(rows), done.reshape(rows), first.reshape(rows),
                             self.wiring, self.episode, ticks=k)
        total, parts = scheme(state)
        mask = valid.unsqueeze(-1).float()
        total = total.view(k, b, n) * mask
        if not scheme.names:
            return total, None
        stacked = total.new_empty(k, len(scheme.names), b, n)
        for i, name in enumerate(scheme.names):
            torch.mul(parts[name].view(k, b, n), mask, out=stacked[:, i])
        for tick in range(k):  # tick by tick as collect sums them (the same rounding), all components at once
            self.running = stacked[tick] if self.running is None else self.running + stacked[tick]
        return total, stacked

    def sums(self) -> dict[str, torch.Tensor]:
        """Each component's sum over the valid ticks scored so far, ``[B, N]``."""
        return {name: self.running[i] for i, name in enumerate(self.scheme.names)} if self.running is not None else {}


COMPACT_FRACTION = 0.75  # on a GPU, a check drops the finished copies once at most this fraction of the computed run
# Neurons × copies up to which a batch whose ticks a CUDA graph replays keeps replaying the full-width graph once
# compacted, its dropped columns zeroed, rather than ticking its remaining copies eagerly (collect). On an H200
# (examples/cuda_graph_collect.py at d6cc235, docs/results/bench/gpu/) full training of the NaRLA 5-layer network ran
# 1.4-2.0x faster replaying full width than ticking the remainder eagerly (two runs) at B = 16, 64 and 256 (up to
# 61 x 256 = 15,616 neuron-copies), while a 10,000-neuron network at B = 64 (640,000) ran 6-10 % slower: the limit
# lies between; 2^17 is our choice there.
GRAPH_WHOLE_BATCH = 1 << 17
STACK_AT_ONCE_BYTES = 1 << 26  # records below this size are stacked in one call (faster; their copy is small)


def stack_freeing(ticks: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(ticks)`` that drops each tick from the list once it is copied: the peak is the result plus one
    tick, not twice the result. The list is left holding ``None``. A record under :data:`STACK_AT_ONCE_BYTES` is
    stacked in one call instead (one kernel rather than ``T`` copies)."""
    if len(ticks) * ticks[0].numel() * ticks[0].element_size() < STACK_AT_ONCE_BYTES:
        out = torch.stack(ticks)
        ticks[:] = [None] * len(ticks)
        return out
    out = ticks[0].new_empty(len(ticks), *ticks[0].shape)
    for t in range(len(ticks)):
        out[t] = ticks[t]
        ticks[t] = None
    return out
