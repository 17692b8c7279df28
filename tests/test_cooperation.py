"""Specification of two-point neurons: the AMTFs, their numerical safety, the permutation-invariant
Cooperator network, the squash readout and the attention baseline at equal parameter count."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch

from narla import cooperation as coop
from narla.context import add_context
from narla.cooperator import cooperator, input_pooling, tied_slots
from narla.engine import Engine
from narla.neurons import Population
from narla.neurons.attention import AttentionPopulation
from narla.readout import Readout
from narla.scenario import load
from narla.training import build
from narla.wiring import compile_graph

R = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
C = torch.tensor([1.0, -1.0, 0.5, 0.0, -0.5])


def test_cooperation_equals_its_formula():
    expected = torch.tensor([4 - 4 + 2 * 3, 0.25 - 1 - 2 * 1.5, 0 + 0 + 1.0, 0.25 + 1 + 0, 4 + 4 - 1 * 3])
    torch.testing.assert_close(coop.cooperation(R, C), expected)


def test_cooperation_relu6_is_the_bounded_authors_variant():
    raw = R * R + 2 * R + C * (1 + R.abs())
    torch.testing.assert_close(coop.cooperation_relu6(R, C), raw.clamp(0, 6))
    assert float(coop.cooperation_relu6(torch.tensor(5.0), torch.tensor(5.0))) == 6.0


def test_linear_and_gain_amtfs_equal_their_formulas():
    torch.testing.assert_close(coop.additive(R, C), R + C)
    torch.testing.assert_close(coop.feedforward(R, C), R)
    torch.testing.assert_close(coop.gain(R, C), R * 2 * torch.sigmoid(C))


def test_cooperation_gradients_match_the_analytic_derivatives():
    r = R.clone().requires_grad_(True)
    c = C.clone().requires_grad_(True)
    coop.cooperation(r, c).sum().backward()
    torch.testing.assert_close(r.grad, 2 * R + 2 + 2 * C * torch.sign(R))
    torch.testing.assert_close(c.grad, 2 * (1 + R.abs()))


def test_gain_gradients_match_the_analytic_derivatives():
    r = R.clone().requires_grad_(True)
    c = C.clone().requires_grad_(True)
    coop.gain(r, c).sum().backward()
    s = torch.sigmoid(C)
    torch.testing.assert_close(r.grad, 2 * s)
    torch.testing.assert_close(c.grad, 2 * R * s * (1 - s))


@pytest.mark.parametrize("name", ["cooperation", "cooperation_relu6", "gain"])
def test_agreeing_context_amplifies_and_disagreeing_context_suppresses(name):
    f = coop.get_amtf(name)
    r = torch.tensor(1.0)
    assert f(r, torch.tensor(1.0)) > f(r, torch.tensor(0.0)) > f(r, torch.tensor(-1.0))


def test_cooperation_context_matters_more_with_strong_drive():
    def lift(r: float) -> torch.Tensor:
        r_ = torch.tensor(r)
        return coop.cooperation(r_, torch.tensor(1.0)) - coop.cooperation(r_, torch.tensor(0.0))

    assert lift(2.0) == 3 * lift(0.0) > 0


def test_additive_context_effect_does_not_depend_on_drive():
    for r in (0.0, 2.0):
        lift = coop.additive(torch.tensor(r), torch.tensor(1.0)) - coop.additive(torch.tensor(r), torch.tensor(0.0))
        assert lift == 1


def test_unknown_amtf_lists_the_allowed_names():
    with pytest.raises(ValueError, match="cooperation_relu6"):
        coop.get_amtf("nope")


def test_soft_bound_is_identity_near_zero_and_saturates_at_the_scale():
    x = torch.tensor([1e-4, 1e6, -1e6])
    out = coop.soft_bound(x, 3.0)
    torch.testing.assert_close(out, torch.tensor([1e-4, 3.0, -3.0]))
    assert coop.soft_bound(x, None) is x


def _toy_population(amtf: str) -> tuple[Population, torch.Tensor, torch.Tensor]:
    graph = add_context(cooperator(3, ["0"], channels=1), proximal=True, feedback=True)
    wiring = compile_graph(graph)
    pop = Population(wiring, hidden=(8,), amtf=amtf)
    n, f = wiring.ff_idx.shape
    return pop, torch.randn(n, f, 5), torch.randn(n, wiring.ctx_idx.shape[1], 5)


@pytest.mark.parametrize("name", ["cooperation", "cooperation_relu6"])
def test_quadratic_amtfs_stay_finite_for_huge_inputs(name):
    pop, x, c = _toy_population(name)
    out = pop(x * 1e8, c * 1e8)
    out.sum().backward()
    s = coop.DEFAULT_SCALES[name]
    assert torch.isfinite(out).all()
    assert out.abs().max() <= s * s + 2 * s + 2 * s * (1 + s)
    assert all(torch.isfinite(p.grad).all() for p in pop.parameters() if p.grad is not None)


def test_cooperation_output_is_unbounded_without_the_soft_bound():
    pop, x, c = _toy_population("cooperation")
    pop.amtf_scale = None
    assert pop(x * 1e4, c).abs().max() > 1e3


# -- the permutation-invariant Cooperator -------------------------------------------------------------


def _cartpole_engine(context: bool, channels: int = 1, tied: bool = True) -> Engine:
    graph = cooperator(4, ["0"], channels=channels)
    if context:
        graph = add_context(graph, proximal=True, distal=True, feedback=True)
    wiring = compile_graph(graph)
    ff_pool, ctx_pool = input_pooling(graph, wiring)
    torch.manual_seed(0)
    pop = Population(
        wiring, hidden=(8,), amtf="cooperation", action_dim=2, slots=tied_slots(graph, wiring) if tied else None,
        ff_pool=ff_pool, ctx_pool=ctx_pool,
    )
    return Engine(wiring, pop, Readout("choice", gym.spaces.Discrete(2)))


def _motor_fire_probability(engine: Engine, obs: torch.Tensor) -> torch.Tensor:
    """P(motor fires | obs) on an episode's first tick, summing over all sensory spike patterns exactly."""
    n_sense = engine.num_neurons - 1
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=n_sense)))
    actions = torch.cat([patterns, torch.ones(len(patterns), 1, dtype=torch.long)], 1).unsqueeze(0)
    with torch.no_grad():
        first = torch.ones(1, len(patterns), dtype=torch.bool)
        logp, _, _ = engine.evaluate(obs.expand(1, len(patterns), -1), actions, first)
    return logp[0].sum(1).exp().sum()


def test_shuffling_the_observation_leaves_the_action_distribution_unchanged():
    engine = _cartpole_engine(context=True)
    obs = torch.tensor([[0.3, -1.2, 0.05, 0.7]])
    base = _motor_fire_probability(engine, obs)
    for perm in ([3, 2, 1, 0], [1, 3, 0, 2]):
        torch.testing.assert_close(_motor_fire_probability(engine, obs[:, perm]), base)
    assert 0.0 < float(base) < 1.0


def test_shuffling_permutes_sensory_spikes_and_keeps_every_log_prob_with_context():
    engine = _cartpole_engine(context=True, channels=2)
    perm = torch.tensor([2, 0, 3, 1])
    t, b = 3, 4
    obs = torch.randn(t, b, 4)
    actions = torch.randint(0, 2, (t, b, engine.num_neurons))
    first = torch.zeros(t, b, dtype=torch.bool)
    first[0] = True
    lp, _, _ = engine.evaluate(obs, actions, first)
    # sensory neuron (i, k) sits at engine index 2 i + k; after the shuffle feature perm[i] is read by sensor i.
    sense = torch.arange(8).view(4, 2)
    moved = actions.clone()
    moved[..., sense.flatten()] = actions[..., sense[perm].flatten()]
    lp_perm, _, _ = engine.evaluate(obs[..., perm], moved, first)
    torch.testing.assert_close(lp_perm[..., 8:], lp[..., 8:])
    torch.testing.assert_close(lp_perm.sum(-1), lp.sum(-1))


def test_private_sensory_neurons_are_not_permutation_invariant():
    engine = _cartpole_engine(context=False, tied=False)
    obs = torch.tensor([[0.3, -1.2, 0.05, 0.7]])
    shuffled = obs[:, [3, 2, 1, 0]]
    assert not torch.allclose(_motor_fire_probability(engine, obs), _motor_fire_probability(engine, shuffled))


def test_tied_sensory_neurons_share_one_parameter_row_per_channel():
    graph = cooperator(5, ["0", "0"], channels=3)
    wiring = compile_graph(graph)
    slots = tied_slots(graph, wiring)
    assert slots.tolist() == [0, 1, 2] * 5 + [3, 4]
    pop = Population(wiring, hidden=(4,), slots=slots)
    assert pop.policy.weights[0].shape[0] == 5


def test_motor_neurons_read_the_mean_of_each_channel():
    graph = cooperator(3, ["0"], channels=2)
    wiring = compile_graph(graph)
    ff_pool, _ = input_pooling(graph, wiring)
    x = torch.arange(6.0).view(1, 6, 1)  # sensory spikes in engine order (feature-major, channel-minor)
    pooled = torch.bmm(ff_pool[-1:], x)[0, :, 0]
    torch.testing.assert_close(pooled[:2], torch.tensor([(0 + 2 + 4) / 3, (1 + 3 + 5) / 3]))
    torch.testing.assert_close(pooled[2:], torch.zeros(4))


# -- readout -------------------------------------------------------------------------------------------


def test_squash_readout_maps_unanimous_groups_to_the_bounds_and_balance_to_the_middle():
    space = gym.spaces.Box(np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 1.0], dtype=np.float32))
    readout = Readout("squash", space, motor_per_group=4)
    graph = cooperator(2, readout.motor_groups(), channels=1)
    readout.bind(compile_graph(graph))
    spikes = torch.zeros(10, 3, dtype=torch.long)
    spikes[2:6, 0] = 1  # group 0 all firing, group 1 silent
    spikes[2:4, 1] = 1  # group 0 half
    spikes[6:10, 1] = 1  # group 1 all
    spikes[[2, 6, 7, 8], 2] = 1  # group 0 one of four, group 1 three of four
    action = readout(spikes)
    torch.testing.assert_close(action[0], torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(action[1], torch.tensor([0.0, 1.0]))
    squashed = float(torch.tanh(torch.tensor(-1.0)) / torch.tanh(torch.tensor(2.0)))
    torch.testing.assert_close(action[2], torch.tensor([2.0 * squashed, 0.5 - 0.5 * squashed]))


def test_squash_readout_needs_a_box_action_space():
    with pytest.raises(ValueError, match="squash"):
        Readout("squash", gym.spaces.Discrete(2))


# -- attention baseline --------------------------------------------------------------------------------


def _count(run) -> int:
    return sum(p.numel() for p in run.engine.population.parameters())


@pytest.mark.parametrize("task", ["swingup", "cartpole"])
def test_attention_baseline_parameter_count_is_within_two_percent(task):
    sets = ["task.num_envs=1"]
    coop_run = build(load(f"scenarios/{task}_cooperator.yaml", sets))
    attn_run = build(load(f"scenarios/{task}_cooperator.yaml", [*sets, "context.integration=attention"]))
    point_run = build(load(f"scenarios/{task}_cooperator.yaml", [*sets, "neuron.amtf=additive"]))
    assert isinstance(attn_run.engine.population, AttentionPopulation)
    assert abs(_count(attn_run) - _count(coop_run)) / _count(coop_run) < 0.02
    assert _count(point_run) == _count(coop_run)


def test_swingup_attention_scenario_matches_the_cooperator_parameter_count():
    a = build(load("scenarios/swingup_attention.yaml", ["task.num_envs=1"]))
    c = build(load("scenarios/swingup_cooperator.yaml", ["task.num_envs=1"]))
    assert abs(_count(a) - _count(c)) / _count(c) < 0.02


@pytest.mark.parametrize("kind", ["softmax", "expressive"])
def test_attention_context_ignores_padding_and_is_permutation_invariant_over_sources(kind):
    graph = add_context(cooperator(3, ["0", "0"], channels=1), proximal=True, feedback=True)
    wiring = compile_graph(graph)
    pop = AttentionPopulation(wiring, hidden=(4,), attention=kind, action_dim=1)
    n, fc = wiring.ctx_idx.shape
    c_in = pop.context_inputs(torch.randn(n, fc, 6) * wiring.ctx_mask.unsqueeze(-1), prev_action=torch.randn(6, 1))
    out = pop.context(c_in)
    assert out.shape == (n, 1, 6) and torch.isfinite(out).all()
    swapped = c_in.clone()
    swapped[:, [0, 1]] = c_in[:, [1, 0]]
    sensory = slice(0, 3)  # pooled sources of a sensory neuron: its channel's mean, then the two motor neurons
    torch.testing.assert_close(pop.context(swapped)[sensory], out[sensory])


def test_swingup_cooperator_scenario_trains_one_batch():
    from narla.training import Trainer

    scenario = load(
        "scenarios/swingup_cooperator.yaml",
        ["task.num_envs=2", "task.max_episode_steps=20", "training.max_episodes=2"],
    )
    summary = Trainer(scenario, None, progress=False).train()
    assert summary["episodes"] == 2 and summary["final_mean_return"] is not None
