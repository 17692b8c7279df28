"""Rewards: every built-in formula on hand-made spike patterns, the registry, and reward schemes."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from narla.rewards import (
    NetworkState,
    Relay,
    RewardError,
    RewardScheme,
    Sparsity,
    Trace,
    activity,
    prediction,
    register_reward,
    registry,
    resolve_reward,
    task,
)
from narla.wiring import Wiring, compile_graph

# Hand-made network: sensors s0, s1 -> layer 1 {a, b, c} -> layer 2 {d, e} -> motor m (layer 3).
# Feedforward neuron edges: a->d, b->d, b->e, c->e, d->m, e->m. Engine order is a b c d e m.
ORDER = ["a", "b", "c", "d", "e", "m"]


def small_wiring() -> Wiring:
    g = nx.DiGraph()
    g.add_node("s0", kind="sensor", index=0)
    g.add_node("s1", kind="sensor", index=1)
    for name in "abc":
        g.add_node(name, kind="neuron", layer=1, role="hidden", group="left" if name == "a" else "right")
    for name in "de":
        g.add_node(name, kind="neuron", layer=2, role="hidden", group="right")
    g.add_node("m", kind="neuron", layer=3, role="motor", group="action")
    for src in ("s0", "s1"):
        for dst in "abc":
            g.add_edge(src, dst, kind="feedforward")
    for src, dst in [("a", "d"), ("b", "d"), ("b", "e"), ("c", "e"), ("d", "m"), ("e", "m")]:
        g.add_edge(src, dst, kind="feedforward")
    g.add_edge("m", "a", kind="context")
    wiring = compile_graph(g)
    assert wiring.neuron_names == ORDER
    return wiring


WIRING = small_wiring()


def make_state(
    spikes: list[list[float]],
    trace: list[list[float]] | None = None,
    task_reward: list[float] | None = None,
    episode: int = 0,
    prev_spikes: list[list[float]] | None = None,
    wiring: Wiring = WIRING,
) -> NetworkState:
    s = torch.tensor(spikes, dtype=torch.float32)
    batch = s.shape[0]
    return NetworkState(
        spikes=s,
        prev_spikes=torch.zeros_like(s) if prev_spikes is None else torch.tensor(prev_spikes),
        trace=torch.zeros_like(s) if trace is None else torch.tensor(trace),
        task_reward=torch.ones(batch) if task_reward is None else torch.tensor(task_reward),
        done=torch.zeros(batch, dtype=torch.bool),
        first=torch.zeros(batch, dtype=torch.bool),
        wiring=wiring,
        episode=episode,
    )


SILENT = [0.0] * 6
ACTIVE = [1.0] * 6


# ---- task ---------------------------------------------------------------------------------------


def test_task_broadcasts_each_copys_reward_to_every_neuron():
    r = task(make_state([SILENT, ACTIVE], task_reward=[2.0, -0.5]))
    assert r.shape == (2, 6) and r.dtype == torch.float32
    assert torch.equal(r, torch.tensor([[2.0] * 6, [-0.5] * 6]))


# ---- activity -----------------------------------------------------------------------------------


def test_activity_rewards_firing_and_punishes_silence():
    r = activity(make_state([[1, 0, 1, 0, 0, 1]]))
    assert torch.equal(r, torch.tensor([[1.0, -1, 1, -1, -1, 1]]))


def test_activity_uses_custom_magnitudes_for_all_silent_and_all_active():
    r = activity(make_state([SILENT, ACTIVE]), fire=0.5, silent=-0.25)
    assert torch.equal(r, torch.tensor([[-0.25] * 6, [0.5] * 6]))


# ---- sparsity -----------------------------------------------------------------------------------


def test_sparsity_layer_rewards_on_target_layers_and_penalizes_others():
    # layer 1: 1 of 3 active (0.33, target 1/3 met); layer 2: 2 of 2 active (1.0, missed); motor excluded -> 0
    r = Sparsity(target=1 / 3, tolerance=0.05)(make_state([[1, 0, 0, 1, 1, 1]]))
    assert torch.equal(r, torch.tensor([[1.0, 1, 1, -1, -1, 0]]))


def test_sparsity_all_silent_and_all_active_miss_a_20_percent_target():
    r = Sparsity()(make_state([SILENT, ACTIVE]))
    assert torch.equal(r, torch.tensor([[-1.0] * 5 + [0.0], [-1.0] * 5 + [0.0]]))


def test_sparsity_target_exactly_met_despite_float_rounding():
    wiring = compile_graph(layer_of(15))
    spikes = [[1.0] * 3 + [0.0] * 12 + [0.0]]  # 3 of 15 hidden neurons = 20 %
    r = Sparsity(target=0.2, tolerance=0.0)(make_state(spikes, wiring=wiring))
    assert torch.equal(r[0, :15], torch.ones(15)) and r[0, 15] == 0


def test_sparsity_excludes_motor_neurons_by_default():
    r = Sparsity(target=0.0, tolerance=0.0)(make_state([[0, 0, 0, 0, 0, 1]]))
    assert r[0, 5] == 0 and torch.equal(r[0, :5], torch.ones(5))


def test_sparsity_include_motor_scores_a_single_neuron_motor_layer():
    r = Sparsity(target=0.2, include_motor=True)(make_state([SILENT, ACTIVE]))
    assert r[0, 5] == -1 and r[1, 5] == -1  # a one-neuron layer is 0 % or 100 %, never 20 %


def test_sparsity_neighbourhood_counts_the_neuron_and_its_pre_and_post_neurons():
    # include_motor: neighbourhoods a:{a,d} b:{b,d,e} c:{c,e} d:{d,a,b,m} e:{e,b,c,m} m:{m,d,e}
    spikes = [[1, 0, 0, 0, 0, 0]]
    r = Sparsity(target=0.5, tolerance=0.01, scope="neighbourhood", include_motor=True)(make_state(spikes))
    # active fractions: a 1/2, b 0/3, c 0/2, d 1/4, e 0/4, m 0/3
    assert torch.equal(r, torch.tensor([[1.0, -1, -1, -1, -1, -1]]))
    r = Sparsity(target=0.25, tolerance=0.01, scope="neighbourhood", include_motor=True)(make_state(spikes))
    assert torch.equal(r, torch.tensor([[-1.0, -1, -1, 1, -1, -1]]))


def test_sparsity_neighbourhood_without_motor_drops_the_motor_from_counts():
    # d's neighbourhood without m is {d, a, b}: with d and a active that is 2/3
    r = Sparsity(target=2 / 3, tolerance=0.01, scope="neighbourhood")(make_state([[1, 0, 0, 1, 0, 1]]))
    assert r[0, 3] == 1 and r[0, 5] == 0


def test_sparsity_blame_cause_penalizes_firing_in_an_overactive_layer_and_silence_in_a_quiet_one():
    # layer 1 = a b c, layer 2 = d e; target 1/3 +- 0.05: layer 1 has 2 of 3 active, layer 2 none of 2
    r = Sparsity(target=1 / 3, tolerance=0.05, blame="cause")(make_state([[1, 1, 0, 0, 0, 1]]))
    assert torch.equal(r, torch.tensor([[-1.0, -1, 0, -1, -1, 0]]))


def test_sparsity_blame_cause_rewards_every_member_of_an_on_target_layer():
    r = Sparsity(target=1 / 3, tolerance=0.05, blame="cause")(make_state([[0, 1, 0, 1, 1, 0]]))
    assert torch.equal(r[0, :3], torch.ones(3))


def test_sparsity_rejects_an_unknown_blame():
    with pytest.raises(RewardError, match=r"reward 'sparsity'.*blame must be one of group, cause"):
        resolve_reward("sparsity", {"blame": "everyone"})


def test_sparsity_rejects_an_unknown_scope():
    with pytest.raises(RewardError, match=r"reward 'sparsity'.*scope must be one of layer, neighbourhood"):
        resolve_reward("sparsity", {"scope": "column"})


def layer_of(n: int) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node("s", kind="sensor", index=0)
    g.add_node("m", kind="neuron", layer=2, role="motor", group="")
    for i in range(n):
        g.add_node(f"h{i}", kind="neuron", layer=1, role="hidden", group="")
        g.add_edge("s", f"h{i}", kind="feedforward")
        g.add_edge(f"h{i}", "m", kind="feedforward")
    return g


# ---- prediction ---------------------------------------------------------------------------------


def test_prediction_hand_counted_hits_and_misses_as_mean_over_postsynaptic_neurons():
    #          a  b  c  d  e  m
    spikes = [[1, 1, 1, 0, 1, 0]]
    # a->d miss: -1; b->{d miss, e hit}: 0; c->e hit: +1; d silent: 0; e->m miss: -1; m has no post: 0
    r = prediction(make_state(spikes))
    assert torch.equal(r, torch.tensor([[-1.0, 0, 1, 0, -1, 0]]))


def test_prediction_sum_mode_counts_every_postsynaptic_neuron():
    spikes = [[0, 1, 0, 1, 1, 0]]  # b->{d hit, e hit}: 2 * hit; d->m miss; e->m miss
    r = prediction(make_state(spikes), hit=1.5, miss=-0.5, mean=False)
    assert torch.equal(r, torch.tensor([[0.0, 3.0, 0, -0.5, -0.5, 0]]))


def test_prediction_and_layer_sparsity_add_their_terms_edge_by_edge_in_order_bit_for_bit():
    """Their sums run over whole rows of copies; each copy's terms still add up one by one in edge (neuron) order,
    so rate-valued activity, whose float sums depend on the order, gets the bits of a plain loop."""
    g = torch.Generator().manual_seed(0)
    values = torch.rand(300, 6, generator=g)  # rate-like activity of 300 copies
    state = make_state(values.tolist())
    src, dst = WIRING.edge_src.tolist(), WIRING.edge_dst.tolist()
    total = torch.zeros(300, 6)
    for i, j in zip(src, dst, strict=True):
        total[:, i] += 1.5 * values[:, j] + -0.5 * (1.0 - values[:, j])
    assert torch.equal(prediction(state, hit=1.5, miss=-0.5, mean=False), values * total)
    hidden = ~WIRING.motor
    layer = WIRING.layer.tolist()
    count = torch.zeros(300, 6)
    for i in range(6):
        for j in range(6):
            if layer[j] == layer[i] and hidden[j]:
                count[:, i] += values[:, j]
    fraction = count / torch.tensor([3.0, 3, 3, 2, 2, 0]).clamp_min(1.0)
    on_target = ((fraction - 0.2).abs() <= 0.3 + 1e-6) & hidden
    expected = torch.where(on_target, 1.0, torch.where(hidden, -1.0, 0.0))
    assert torch.equal(Sparsity(tolerance=0.3)(state), expected)


def test_prediction_all_silent_gives_zero_and_all_active_gives_hits_except_motor():
    r = prediction(make_state([SILENT, ACTIVE]))
    assert torch.equal(r, torch.tensor([[0.0] * 6, [1.0] * 5 + [0.0]]))


# ---- trace --------------------------------------------------------------------------------------


def test_trace_penalizes_traces_outside_low_high():
    traces = [[0.0, 0.04, 0.05, 0.5, 0.95, 0.99]]
    r = Trace(low=0.05, high=0.95, penalty=-2.0)(make_state([SILENT], trace=traces))
    assert torch.equal(r, torch.tensor([[-2.0, -2.0, 0, 0, 0, -2.0]]))


def test_trace_starts_each_episode_at_trace_init():
    scheme = RewardScheme.from_config({"trace_decay": 0.9, "trace_init": 0.5, "terms": ["trace"]}, WIRING)
    old = torch.tensor([[0.99, 0.0]])
    spikes = torch.tensor([[1.0, 0.0]])
    first = scheme.update_trace(old, spikes, torch.tensor([True]))
    later = scheme.update_trace(old, spikes, torch.tensor([False]))
    assert torch.allclose(first, torch.tensor([[0.9 * 0.5 + 0.1, 0.9 * 0.5]]))
    assert torch.allclose(later, torch.tensor([[0.9 * 0.99 + 0.1, 0.0]]))


def test_trace_ticks_equal_update_trace_tick_by_tick_bit_for_bit():
    scheme = RewardScheme.from_config({"trace_decay": 0.83, "trace_init": 0.37, "terms": ["trace"]}, WIRING)
    g = torch.Generator().manual_seed(3)
    spikes = (torch.rand(30, 5, 6, generator=g) < 0.4).float()
    first = torch.rand(30, 5, generator=g) < 0.1  # restarts at scattered ticks, some ticks with none
    first[0] = True
    start = torch.rand(5, 6, generator=g)
    trace, expected = start, []
    for k in range(30):
        trace = scheme.update_trace(trace, spikes[k], first[k])
        expected.append(trace)
    assert torch.equal(scheme.trace_ticks(start, spikes, first), torch.stack(expected))


def test_trace_penalizes_constant_firing_and_constant_silence_after_the_same_number_of_ticks():
    scheme = RewardScheme.from_config(["trace"], WIRING)  # defaults: decay 0.9, init 0.5, band 0.05-0.95
    spikes = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]])  # a, c, e always fire; b, d, m never
    trace = torch.zeros_like(spikes)
    first_penalty = []
    for tick in range(40):
        trace = scheme.update_trace(trace, spikes, torch.tensor([tick == 0]))
        total, _ = scheme(make_state(spikes.tolist(), trace=trace.tolist()))
        first_penalty.append(total[0] < 0)
    ticks = torch.stack(first_penalty).float().argmax(0)  # first penalized tick, per neuron
    assert torch.all(ticks == ticks[0]) and 15 < int(ticks[0]) < 30


def test_trace_rejects_low_above_high():
    with pytest.raises(RewardError, match=r"reward 'trace'.*low <= high"):
        resolve_reward("trace", {"low": 0.8, "high": 0.2})


def test_scheme_exposes_its_trace_decay_and_init():
    scheme = RewardScheme.from_config({"trace_decay": 0.75, "trace_init": 0.2, "terms": ["trace"]}, WIRING)
    assert (scheme.trace_decay, scheme.trace_init) == (0.75, 0.2)
    default = RewardScheme.from_config(["trace"], WIRING)
    assert (default.trace_decay, default.trace_init) == (0.9, 0.5)


def test_scheme_rejects_a_trace_init_outside_0_1():
    with pytest.raises(RewardError, match=r"rewards\.trace_init: must be a number in \[0, 1\]"):
        RewardScheme.from_config({"trace_init": 1.5, "terms": ["trace"]}, WIRING)


# ---- relay --------------------------------------------------------------------------------------
# ranks within layers: a b c = 0 1 2, d e = 0 1, m = 0; so d relays a (edge a->d), e relays b (edge b->e)


def test_relay_sources_are_the_same_rank_presynaptic_neurons():
    names = [ORDER[i] if i >= 0 else None for i in Relay().sources(WIRING).tolist()]
    assert names == [None, None, None, "a", "b", None]


def test_relay_rewards_agreement_and_penalizes_disagreement_with_the_source():
    r = Relay(agree=1.0, disagree=-2.0)(make_state([[1, 0, 0, 1, 1, 0]]))
    assert torch.equal(r, torch.tensor([[0.0, 0, 0, 1, -2, 0]]))


def test_relay_all_silent_and_all_active_agree_everywhere():
    r = Relay()(make_state([SILENT, ACTIVE]))
    assert torch.equal(r, torch.tensor([[0.0, 0, 0, 1, 1, 0]] * 2))


def test_relay_include_motor_makes_the_motor_neuron_relay_its_same_rank_input():
    r = Relay(include_motor=True)(make_state([[0, 0, 0, 1, 0, 0]]))
    assert torch.equal(r, torch.tensor([[0.0, 0, 0, -1, 1, -1]]))


# ---- scheme -------------------------------------------------------------------------------------


def test_scheme_weights_terms_and_sums_them():
    scheme = RewardScheme.from_config({"terms": [{"name": "task", "weight": 2.0}, {"name": "activity"}]}, WIRING)
    total, parts = scheme(make_state([[1, 0, 0, 0, 0, 1]], task_reward=[0.5]))
    assert scheme.names == ["task", "activity"]
    assert torch.equal(parts["task"], torch.full((1, 6), 1.0))
    assert torch.equal(parts["activity"], torch.tensor([[1.0, -1, -1, -1, -1, 1]]))
    assert torch.equal(total, parts["task"] + parts["activity"])


def test_scheme_shorthand_list_form():
    scheme = RewardScheme.from_config(["task", "activity"], WIRING)
    total, _ = scheme(make_state([ACTIVE], task_reward=[1.0]))
    assert scheme.names == ["task", "activity"] and torch.equal(total, torch.full((1, 6), 2.0))


def test_scheme_where_roles_masks_motor_neurons():
    scheme = RewardScheme.from_config([{"name": "activity", "where": {"roles": ["hidden"]}}], WIRING)
    _, parts = scheme(make_state([ACTIVE]))
    assert torch.equal(parts["activity"], torch.tensor([[1.0] * 5 + [0.0]]))


def test_scheme_where_layers_counts_negative_layers_from_the_last():
    scheme = RewardScheme.from_config(
        [{"name": "activity", "where": {"layers": [2, -1]}}, {"name": "task", "where": {"layers": [1]}}], WIRING
    )
    _, parts = scheme(make_state([ACTIVE], task_reward=[3.0]))
    assert torch.equal(parts["activity"], torch.tensor([[0.0, 0, 0, 1, 1, 1]]))
    assert torch.equal(parts["task"], torch.tensor([[3.0, 3, 3, 0, 0, 0]]))


def test_scheme_where_groups_and_neurons_combine_with_and():
    where = {"groups": ["right"], "neurons": ["a", "b", "d"]}  # right = b c d e; AND names -> b d
    scheme = RewardScheme.from_config([{"name": "activity", "where": where}], WIRING)
    _, parts = scheme(make_state([ACTIVE]))
    assert torch.equal(parts["activity"], torch.tensor([[0.0, 1, 0, 1, 0, 0]]))


def test_scheme_phases_switch_at_the_episode_boundary():
    config = {
        "terms": ["task", "activity"],
        "phases": [{"until_episode": 1000, "terms": ["activity"]}, {"terms": "all"}],
    }
    scheme = RewardScheme.from_config(config, WIRING)
    total, parts = scheme(make_state([ACTIVE], task_reward=[5.0], episode=999))
    assert scheme.active_terms(999) == ["activity"]
    assert torch.equal(parts["task"], torch.zeros(1, 6)) and torch.equal(total, torch.ones(1, 6))
    total, parts = scheme(make_state([ACTIVE], task_reward=[5.0], episode=1000))
    assert scheme.active_terms(1000) == ["task", "activity"] and torch.equal(total, torch.full((1, 6), 6.0))


def test_scheme_terms_mask_gives_each_copy_its_own_phase_exactly():
    config = {
        "terms": ["task", "activity"],
        "phases": [{"until_episode": 1000, "terms": ["activity"]}, {"terms": "all"}],
    }
    scheme = RewardScheme.from_config(config, WIRING)
    spikes, rewards = [ACTIVE, SILENT], [5.0, -3.0]
    before = scheme(make_state(spikes, task_reward=rewards, episode=999))
    after = scheme(make_state(spikes, task_reward=rewards, episode=1000))
    state = make_state(spikes, task_reward=rewards)
    state.terms_mask = torch.tensor([[False, True], [True, True]])  # copy 0 before the switch, copy 1 after it
    total, parts = scheme(state)
    assert torch.equal(total[0], before[0][0]) and torch.equal(total[1], after[0][1])
    for name in ("task", "activity"):
        assert torch.equal(parts[name][0], before[1][name][0]) and torch.equal(parts[name][1], after[1][name][1])


def test_paper_trace_keeps_the_counts_of_the_selected_copies():
    scheme = RewardScheme.from_config({"terms": ["paper_trace"]}, WIRING)
    first = make_state([ACTIVE, SILENT, ACTIVE])
    first.first = torch.ones(3, dtype=torch.bool)
    scheme(first)
    scheme.select_columns(torch.tensor([1, 2]))
    _, parts = scheme(make_state([ACTIVE, SILENT]))
    lone = RewardScheme.from_config({"terms": ["paper_trace"]}, WIRING)
    start = make_state([SILENT, ACTIVE])
    start.first = torch.ones(2, dtype=torch.bool)
    lone(start)
    _, expect = lone(make_state([ACTIVE, SILENT]))
    assert torch.equal(parts["paper_trace"], expect["paper_trace"])


def test_scheme_after_the_last_bounded_phase_all_terms_are_active():
    config = {"terms": ["task", "activity"], "phases": [{"until_episode": 10, "terms": ["task"]}]}
    scheme = RewardScheme.from_config(config, WIRING)
    assert scheme.active_terms(9) == ["task"] and scheme.active_terms(10) == ["task", "activity"]


def test_scheme_custom_reward_registered_by_decorator_function_and_class():
    @register_reward("test_double_spikes")
    def double_spikes(state: NetworkState, factor: float = 2.0) -> torch.Tensor:
        return factor * state.spikes

    @register_reward("test_constant")
    class Constant:
        def __init__(self, value: float = 1.0) -> None:
            self.value = value

        def __call__(self, state: NetworkState) -> torch.Tensor:
            return torch.full_like(state.spikes, self.value)

    config = [
        {"name": "test_double_spikes", "params": {"factor": 3.0}},
        {"name": "test_constant", "params": {"value": 4}},
    ]
    _, parts = RewardScheme.from_config(config, WIRING)(make_state([[1, 0, 0, 0, 0, 0]]))
    assert torch.equal(parts["test_double_spikes"], torch.tensor([[3.0, 0, 0, 0, 0, 0]]))
    assert torch.equal(parts["test_constant"], torch.full((1, 6), 4.0))


def test_scheme_custom_reward_by_dotted_path():
    config = [{"name": "narla.rewards.examples:curiosity", "params": {"scale": 0.5}}]
    scheme = RewardScheme.from_config(config, WIRING)
    _, parts = scheme(make_state([[1, 1, 0, 0, 0, 0]], prev_spikes=[[0, 1, 1, 0, 0, 0]]))
    assert scheme.names == ["curiosity"]
    assert torch.equal(parts["curiosity"], torch.tensor([[0.5, 0, 0.5, 0, 0, 0]]))


def test_scheme_same_reward_twice_with_labels():
    config = [
        {"name": "sparsity", "label": "sparse_l1", "params": {"target": 0.2}, "where": {"layers": [1]}},
        {"name": "sparsity", "label": "sparse_l2", "params": {"target": 0.5}, "where": {"layers": [2]}},
    ]
    assert RewardScheme.from_config(config, WIRING).names == ["sparse_l1", "sparse_l2"]


# ---- errors -------------------------------------------------------------------------------------


def test_error_unknown_reward_lists_registered_names_and_dotted_form():
    with pytest.raises(RewardError) as info:
        RewardScheme.from_config(["task", "activty"], WIRING)
    message = str(info.value)
    assert message.startswith("rewards.terms[1].name: unknown reward 'activty'")
    assert all(name in message for name in ("activity", "prediction", "sparsity", "task", "trace"))
    assert "dotted path 'package.module:attr'" in message


def test_error_dotted_path_that_cannot_be_imported():
    with pytest.raises(RewardError, match=r"reward 'no_such_pkg.mod:fn': cannot import module 'no_such_pkg.mod'"):
        resolve_reward("no_such_pkg.mod:fn", {})


def test_error_dotted_path_to_a_missing_attribute():
    with pytest.raises(RewardError, match=r"module 'narla.rewards.examples' has no attribute 'nope'"):
        resolve_reward("narla.rewards.examples:nope", {})


def test_error_dotted_path_to_a_non_callable():
    with pytest.raises(RewardError, match=r"reward 'narla.rewards.scheme:DEFAULT_TRACE_DECAY'.*not a callable"):
        resolve_reward("narla.rewards.scheme:DEFAULT_TRACE_DECAY", {})


def test_error_unknown_parameter_names_it_and_the_allowed_ones():
    with pytest.raises(RewardError) as info:
        RewardScheme.from_config([{"name": "activity", "params": {"fired": 2.0}}], WIRING)
    expected = "rewards.terms[0].params: reward 'activity' has no parameter 'fired'; allowed: fire, silent"
    assert str(info.value) == expected


def test_error_parameter_of_the_wrong_type():
    with pytest.raises(RewardError, match=r"parameter 'target' must be a number, got 'high'"):
        resolve_reward("sparsity", {"target": "high"})


def test_error_weight_not_a_number_names_the_field_path():
    config = {"terms": ["task", "activity", {"name": "trace", "weight": "x"}]}
    with pytest.raises(RewardError, match=r"^rewards\.terms\[2\]\.weight: must be a number, got 'x'$"):
        RewardScheme.from_config(config, WIRING)


def test_error_unknown_keys_in_term_and_where():
    with pytest.raises(RewardError, match=r"rewards\.terms\[0\]: unknown key 'weigth'; allowed: name, weight"):
        RewardScheme.from_config([{"name": "task", "weigth": 1}], WIRING)
    with pytest.raises(RewardError, match=r"rewards\.terms\[0\]\.where\.roles\[0\]: unknown role 'sensor'"):
        RewardScheme.from_config([{"name": "task", "where": {"roles": ["sensor"]}}], WIRING)


def test_error_where_layer_out_of_range():
    with pytest.raises(RewardError, match=r"rewards\.terms\[0\]\.where\.layers\[0\]: must be a layer number 1\.\.3"):
        RewardScheme.from_config([{"name": "task", "where": {"layers": [4]}}], WIRING)


def test_error_phase_names_an_unknown_term():
    config = {"terms": ["task"], "phases": [{"until_episode": 5, "terms": ["activity"]}]}
    with pytest.raises(RewardError, match=r"rewards\.phases\[0\]\.terms\[0\]: unknown term 'activity'; allowed: task"):
        RewardScheme.from_config(config, WIRING)


def test_error_duplicate_term_asks_for_a_label():
    with pytest.raises(RewardError, match=r"rewards\.terms\[1\]: duplicate term 'task'; give each a distinct 'label'"):
        RewardScheme.from_config(["task", "task"], WIRING)


def bad_shape(state: NetworkState) -> torch.Tensor:
    return state.spikes[:, :1]


def bad_device(state: NetworkState) -> torch.Tensor:
    return torch.zeros(state.spikes.shape, device="meta")


def bad_dtype(state: NetworkState) -> torch.Tensor:
    return state.spikes.long()


def nan_reward(state: NetworkState) -> torch.Tensor:
    return state.spikes * float("nan")




@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the built-ins plus a few broken rewards; what it registers is dropped afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_reward("test_bad_shape")(bad_shape)
    register_reward("test_bad_device")(bad_device)
    register_reward("test_bad_dtype")(bad_dtype)
    register_reward("test_nan")(nan_reward)


def test_error_reward_with_the_wrong_shape():
    scheme = RewardScheme.from_config(["task", "test_bad_shape"], WIRING)
    with pytest.raises(RewardError, match=r"reward 'test_bad_shape'.*shape \[2, 1\]; expected \[B, N\] = \[2, 6\]"):
        scheme(make_state([SILENT, ACTIVE]))


def test_error_reward_on_the_wrong_device():
    scheme = RewardScheme.from_config(["test_bad_device"], WIRING)
    with pytest.raises(RewardError, match=r"reward 'test_bad_device'.*on meta; expected cpu"):
        scheme(make_state([SILENT]))


def test_error_reward_with_an_integer_dtype():
    scheme = RewardScheme.from_config(["test_bad_dtype"], WIRING)
    with pytest.raises(RewardError, match=r"reward 'test_bad_dtype'.*dtype torch.int64; expected a floating dtype"):
        scheme(make_state([SILENT]))


def test_check_finite_names_the_first_component_with_nan():
    scheme = RewardScheme.from_config(["task", "test_nan", "activity"], WIRING)
    _, parts = scheme(make_state([ACTIVE]))
    with pytest.raises(RewardError, match=r"reward 'test_nan' produced 6 non-finite value"):
        scheme.check_finite(parts)
    scheme.check_finite({"task": parts["task"], "activity": parts["activity"]})


def test_error_empty_where_selection():
    with pytest.raises(RewardError, match=r"rewards\.terms\[0\]\.where\.layers: must list at least one"):
        RewardScheme.from_config([{"name": "task", "where": {"layers": []}}], WIRING)
