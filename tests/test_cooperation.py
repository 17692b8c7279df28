"""Specification of two-point neurons: the AMTFs, their numerical safety, and the squash readout.

The permutation-invariant networks (AttentionNeuron, the Cooperator) are specified in test_attention_neuron.py."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from narla import cooperation as coop
from narla.context import add_context
from narla.graph import from_networkx
from narla.neurons import Population
from narla.readout import Readout
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
    graph = add_context(_motor_graph(3, ["0", "0", "0"]), proximal=True)
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


def _motor_graph(n_obs: int, groups: list[str]):
    """Sensors read by one motor neuron per entry of ``groups`` (engine order: the motor neurons in order)."""
    import networkx as nx

    graph = nx.DiGraph()
    for i in range(n_obs):
        graph.add_node(f"s{i}", kind="sensor", index=i)
    for j, g in enumerate(groups):
        graph.add_node(f"m{j}", kind="neuron", layer=1, role="motor", group=g)
        graph.add_edges_from(((f"s{i}", f"m{j}") for i in range(n_obs)), kind="feedforward")
    return from_networkx(graph)


def test_squash_readout_maps_unanimous_groups_to_the_bounds_and_balance_to_the_middle():
    space = gym.spaces.Box(np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 1.0], dtype=np.float32))
    readout = Readout("squash", space, motor_per_group=4)
    readout.bind(compile_graph(_motor_graph(2, readout.motor_groups())))
    spikes = torch.zeros(8, 3, dtype=torch.long)
    spikes[0:4, 0] = 1  # group 0 all firing, group 1 silent
    spikes[0:2, 1] = 1  # group 0 half
    spikes[4:8, 1] = 1  # group 1 all
    spikes[[0, 4, 5, 6], 2] = 1  # group 0 one of four, group 1 three of four
    action = readout(spikes)
    torch.testing.assert_close(action[0], torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(action[1], torch.tensor([0.0, 1.0]))
    squashed = float(torch.tanh(torch.tensor(-1.0)) / torch.tanh(torch.tensor(2.0)))
    torch.testing.assert_close(action[2], torch.tensor([2.0 * squashed, 0.5 - 0.5 * squashed]))


def test_squash_readout_needs_a_box_action_space():
    with pytest.raises(ValueError, match="squash"):
        Readout("squash", gym.spaces.Discrete(2))
