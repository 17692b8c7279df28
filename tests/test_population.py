"""Specification: the batched population is exactly N independent neurons (narla.reference is the oracle)."""

import gymnasium as gym
import pytest
import torch

from narla.engine import Engine
from narla.graph import layered, random_sparse, small_world
from narla.learning.clip import clip_per_neuron
from narla.neurons import Population
from narla.readout import Readout
from narla.reference import ReferenceNetwork
from narla.wiring import compile_graph

HIDDEN = (16, 16)


def build(graph, out_dim: int = 1, amtf: str = "feedforward", propagation: str = "sweep", seed: int = 0, **options):
    """Engine and reference network with the same (copied) weights."""
    torch.manual_seed(seed)
    wiring = compile_graph(graph)
    population = Population(wiring, out_dim=out_dim, hidden=HIDDEN, amtf=amtf, **options)
    with torch.no_grad():  # context weights are random, biases too, so every path of the AMTF is exercised
        population.context_bias.normal_()
    readout = Readout("choice", gym.spaces.Discrete(out_dim if out_dim > 1 else 2))
    engine = Engine(wiring, population, readout, propagation, torch.Generator().manual_seed(seed))
    return engine, ReferenceNetwork.from_population(population, wiring, propagation)


def random_rollout(engine: Engine, t: int = 4, b: int = 3, seed: int = 1):
    """``t`` ticks of ``b`` copies acted by the engine on random observations; the second copy restarts at tick 2."""
    torch.manual_seed(seed)
    obs = torch.randn(t, b, engine.wiring.num_sensors)
    first = torch.zeros(t, b, dtype=torch.bool)
    first[0] = True
    first[2, 1] = True
    prev = torch.zeros(engine.num_sensors + engine.num_neurons, b)
    actions = []
    for k in range(t):
        prev = prev * (~first[k]).float()
        prev, acts = engine.tick(obs[k], prev)
        actions.append(acts.T)
    return obs, torch.stack(actions), first


def random_activity(engine: Engine, cols: int = 5, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random activity vectors ``act, prev [S + N, cols]``: real-valued sensors, binary spikes."""
    g = torch.Generator().manual_seed(seed)
    s, n = engine.num_sensors, engine.num_neurons

    def one() -> torch.Tensor:
        return torch.cat([torch.randn(s, cols, generator=g), (torch.rand(n, cols, generator=g) < 0.5).float()])

    return one(), one()


NETWORKS = {
    "layered-3-local": lambda: build(layered(4, layers=3, width=15, connectivity="local")),
    "random-sparse": lambda: build(random_sparse(4, 60, fan_in=5, layers=4, seed=3)),
    "context-cooperation": lambda: build(
        small_world(4, 30, k=4, p=0.2, layers=3, seed=1), amtf="cooperation", position_dim=4
    ),
    "categorical-motor": lambda: build(layered(4, layers=3, width=6), out_dim=3, amtf="additive"),
    # rate neurons (Gaussian values around tanh(z)) in every other row, spiking neurons between them
    "rate-and-spike": lambda: build(
        small_world(4, 20, k=4, p=0.2, layers=3, seed=2), amtf="cooperation", rate=torch.arange(20) % 2 == 0
    ),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_batched_logits_equal_per_neuron_reference(name):
    engine, reference = NETWORKS[name]()
    act, prev = random_activity(engine)
    with torch.no_grad():
        stacked = engine.stage_logits(act, prev, 0, engine.num_neurons)  # [N, D, cols]
        for col in range(act.shape[1]):
            ref = reference.logits(act[:, col], prev[:, col])  # [N, D]
            torch.testing.assert_close(stacked[:, :, col], ref, atol=1e-5, rtol=1e-5)


def test_context_graph_really_uses_context():
    engine, reference = NETWORKS["context-cooperation"]()
    assert engine.wiring.ctx_mask.sum() > 0
    act, prev = random_activity(engine, cols=1)
    with torch.no_grad():
        assert not torch.allclose(reference.logits(act[:, 0], prev[:, 0]), reference.logits(act[:, 0], 0 * prev[:, 0]))


@pytest.mark.parametrize("name", NETWORKS)
def test_evaluate_log_probs_of_recorded_ticks_equal_reference(name):
    engine, reference = NETWORKS[name]()
    obs, actions, first = random_rollout(engine)
    with torch.no_grad():
        logp, ent, _ = engine.evaluate(obs, actions, first)
        ref_logp, ref_ent = reference.evaluate(obs, actions, first)
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)


def stacked_slices(engine: Engine, i: int, grads: bool) -> list[torch.Tensor | None]:
    """Neuron ``i``'s slices of the stacked policy and context parameters (or their gradients), reference layout."""
    pop, fm, cm = engine.population, engine.wiring.ff_mask[i] > 0, engine.wiring.ctx_mask[i] > 0
    cm = torch.cat([cm, torch.ones(pop.position_dim + pop.action_dim, dtype=torch.bool)])  # then the universal context
    out = []
    for j in range(len(pop.policy.weights)):
        w, b = pop.policy.neuron_linear(j, i, grad=grads)
        out += [w[:, fm] if j == 0 else w, b]
    cw, cb = (pop.context_weight.grad, pop.context_bias.grad) if grads else (pop.context_weight, pop.context_bias)
    out += [None if cw is None else cw[i][:, cm], None if cb is None else cb[i, :, 0]]
    return out


def reference_params(reference: ReferenceNetwork, i: int) -> list[torch.nn.Parameter]:
    neuron = reference.neurons[i]
    params = [p for layer in neuron.layers for p in (layer.weight, layer.bias)]
    return params + [neuron.context.weight, neuron.context.bias]


def reinforce_losses(engine: Engine, reference: ReferenceNetwork, seed: int = 5):
    """``-Σ log π(a) · A`` over a random rollout with random advantages: the stacked total and one per neuron."""
    obs, actions, first = random_rollout(engine)
    adv = torch.randn(actions.shape, generator=torch.Generator().manual_seed(seed))
    logp, _, _ = engine.evaluate(obs, actions, first)
    ref_logp, _ = reference.evaluate(obs, actions, first)
    per_neuron = -(ref_logp * adv).sum((0, 1))  # [N]
    return -(logp * adv).sum(), per_neuron


@pytest.mark.parametrize("name", NETWORKS)
def test_gradient_of_stacked_loss_is_each_neurons_own_gradient(name):
    engine, reference = NETWORKS[name]()
    total, per_neuron = reinforce_losses(engine, reference)
    total.backward()
    for i in range(engine.num_neurons):
        own = torch.autograd.grad(per_neuron[i], reference_params(reference, i), retain_graph=True, allow_unused=True)
        for got, want in zip(stacked_slices(engine, i, grads=True), own, strict=True):
            if want is None:  # a parameter the AMTF ignores (feedforward: no context path)
                assert got is None or torch.count_nonzero(got) == 0
            else:
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_padded_synapses_get_no_gradient():
    engine, reference = NETWORKS["random-sparse"]()
    engine2, _ = NETWORKS["layered-3-local"]()
    for eng in (engine, engine2):
        total, _ = reinforce_losses(eng, ReferenceNetwork.from_population(eng.population, eng.wiring))
        total.backward()
        pad = eng.wiring.ff_mask == 0  # [N, F]
        assert pad.any()
        grad = eng.population.policy.weights[0].grad  # [N, F, H]
        assert torch.count_nonzero(grad[pad]) == 0


def test_neuron_parameter_slices_are_disjoint():
    engine, _ = NETWORKS["context-cooperation"]()
    obs, actions, first = random_rollout(engine)
    logp, _, _ = engine.evaluate(obs, actions, first)
    i = 7
    logp[..., i].sum().backward()
    for p in engine.population.parameters():
        if p.grad is None:
            continue
        others = torch.cat([p.grad[:i], p.grad[i + 1 :]])
        assert torch.count_nonzero(others) == 0
    assert torch.count_nonzero(engine.population.policy.weights[1].grad[i]) > 0


def test_one_adam_over_the_stack_equals_one_adam_per_neuron():
    engine, reference = NETWORKS["context-cooperation"]()
    stacked_opt = torch.optim.Adam(engine.population.parameters(), lr=1e-2)
    own_opts = [torch.optim.Adam(reference_params(reference, i), lr=1e-2) for i in range(engine.num_neurons)]
    for step in range(2):
        total, per_neuron = reinforce_losses(engine, reference, seed=step)
        stacked_opt.zero_grad()
        total.backward()
        stacked_opt.step()
        for opt in own_opts:
            opt.zero_grad()
        per_neuron.sum().backward()  # each neuron's loss only reaches its own module
        for opt in own_opts:
            opt.step()
    for i in range(engine.num_neurons):
        for got, want in zip(stacked_slices(engine, i, grads=False), reference_params(reference, i), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_sampled_firing_rates_match_reference_probabilities():
    engine, reference = NETWORKS["layered-3-local"]()
    obs = torch.randn(1, engine.wiring.num_sensors).expand(4000, -1)
    prev = torch.zeros(engine.num_sensors + engine.num_neurons, 4000)
    act, _ = engine.tick(obs, prev)
    layer1 = engine.wiring.layer == 1  # their inputs are the (fixed) observation only
    with torch.no_grad():
        p = torch.sigmoid(reference.logits(act[:, 0], prev[:, 0])[:, 0])
    rate = act[engine.num_sensors :].mean(1)
    assert torch.allclose(rate[layer1], p[layer1], atol=0.04)


def test_delay_mode_reads_last_ticks_spikes_and_sweep_mode_this_ticks():
    graph = layered(4, layers=3, width=5, connectivity="full")
    obs = torch.randn(2, 1, 4)
    first = torch.tensor([[True], [False]])
    base = torch.zeros(2, 1, 11, dtype=torch.long)
    layer1 = slice(0, 5)
    layer2 = slice(5, 10)
    for propagation in ("sweep", "delay"):
        engine, reference = build(graph, propagation=propagation)
        assert engine.wiring.layer[layer2].eq(2).all()
        changed_now, changed_before = base.clone(), base.clone()
        changed_now[1, 0, layer1] = 1  # layer-1 spikes at tick 1
        changed_before[0, 0, layer1] = 1  # layer-1 spikes at tick 0
        with torch.no_grad():
            lp = {
                k: engine.evaluate(obs, a, first)[0][1, 0, layer2]
                for k, a in (("base", base), ("now", changed_now), ("before", changed_before))
            }
            ref = reference.evaluate(obs, changed_before, first)[0][1, 0, layer2]
        torch.testing.assert_close(lp["before"], ref, atol=1e-5, rtol=1e-5)
        if propagation == "sweep":
            assert not torch.allclose(lp["now"], lp["base"])
            assert torch.allclose(lp["before"], lp["base"])
        else:
            assert torch.allclose(lp["now"], lp["base"])
            assert not torch.allclose(lp["before"], lp["base"])


def test_tick_runs_one_policy_call_per_stage_whatever_the_width(monkeypatch):
    from narla.neurons.population import StackedMLP

    calls = []
    original = StackedMLP.act

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StackedMLP, "act", counting)
    for width in (15, 150):
        engine, _ = build(layered(4, layers=5, width=width))
        calls.clear()
        engine.tick(torch.randn(2, 4), torch.zeros(engine.num_sensors + engine.num_neurons, 2))
        assert len(calls) == len(engine.wiring.stages) == 5


def test_clip_per_neuron_clips_each_neuron_by_its_own_norm():
    w = torch.nn.Parameter(torch.zeros(3, 2, 2))
    b = torch.nn.Parameter(torch.zeros(3, 2, 1))
    w.grad = torch.zeros(3, 2, 2)
    b.grad = torch.zeros(3, 2, 1)
    w.grad[0, 0, 0] = 30.0  # neuron 0: norm 50 -> clipped to 1
    b.grad[0, 0, 0] = 40.0
    w.grad[1, 1, 1] = 0.5  # neuron 1: norm 0.5 -> untouched
    w.grad[2] = 2.0  # neuron 2: norm 4 -> clipped to 1
    before_w, before_b = w.grad.clone(), b.grad.clone()
    norms = clip_per_neuron([w, b], 1.0)
    torch.testing.assert_close(norms, torch.tensor([50.0, 0.5, 4.0]))
    after = (w.grad.pow(2).sum((1, 2)) + b.grad.pow(2).sum((1, 2))).sqrt()
    torch.testing.assert_close(after, torch.tensor([1.0, 0.5, 1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(w.grad[1], before_w[1])
    torch.testing.assert_close(w.grad[0] / after[0], before_w[0] / 50.0, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.grad[2], before_b[2])


def test_evaluate_on_valid_ticks_only_matches_the_full_evaluation_there():
    engine, _ = NETWORKS["context-cooperation"]()
    obs, actions, first = random_rollout(engine)
    valid = torch.ones(first.shape, dtype=torch.bool)
    valid[3, 0] = valid[1:, 2] = False
    full = engine.evaluate(obs, actions, first)
    part = engine.evaluate(obs, actions, first, valid=valid)
    for a, b in zip(full[:2], part[:2], strict=True):
        assert torch.allclose(a[valid], b[valid], atol=1e-6)
        assert torch.count_nonzero(b[~valid]) == 0


def test_evaluating_valid_columns_builds_their_activity_alone_and_gives_the_full_evaluations_values(monkeypatch):
    engine, _ = NETWORKS["context-cooperation"]()
    obs, actions, first = random_rollout(engine, t=6, b=5)
    valid = torch.zeros(first.shape, dtype=torch.bool)
    valid[0, 1] = valid[3, 4] = valid[5, 0] = True  # a copy's first tick, and two with a previous tick
    built = []
    activity = Engine._recorded_activity
    monkeypatch.setattr(Engine, "_recorded_activity",
                        lambda self, o, a, columns: built.append(columns.numel()) or activity(self, o, a, columns))
    keep, logp, entropy, _ = engine.evaluate_columns(obs, actions, first, valid=valid)
    assert built == [3, 3]  # the columns and their previous ticks: not the 30 columns of every tick
    assert keep.tolist() == [1, 19, 25]  # tick-major: tick x 5 + copy
    full_logp, full_entropy, _ = engine.evaluate(obs, actions, first)  # kernels may sum 3 columns in another order
    assert torch.allclose(logp, full_logp[valid].T, atol=1e-6) and torch.allclose(entropy, full_entropy[valid].T,
                                                                                  atol=1e-6)


def test_re_evaluation_merges_stages_while_their_activations_fit_the_group_budget(monkeypatch):
    engine, _ = NETWORKS["context-cooperation"]()
    widths = sum(w.shape[-1] for w in engine.population.policy.weights[:-1])
    sizes = [b - a for a, b in engine.stages]
    monkeypatch.setattr("narla.engine.EVALUATION_GROUP_ELEMENTS", (sizes[0] + sizes[1]) * 10 * widths)
    groups = engine.evaluation_stages(10)
    assert groups[0] == (0, engine.stages[1][1]) and groups[-1][1] == engine.num_neurons
    monkeypatch.setattr("narla.engine.EVALUATION_GROUP_ELEMENTS", 1)
    assert engine.evaluation_stages(10) == engine.stages


def test_evaluating_all_neurons_at_once_gives_the_stage_by_stage_log_probs_and_gradients(monkeypatch):
    engine, _ = NETWORKS["context-cooperation"]()
    assert len(engine.stages) > 1
    obs, actions, first = random_rollout(engine)
    params = list(engine.population.parameters())

    def evaluated():
        logp, entropy, _ = engine.evaluate(obs, actions, first)
        return logp, entropy, torch.autograd.grad((logp + entropy).sum(), params, allow_unused=True)

    at_once = evaluated()
    assert engine.evaluation_stages(obs.shape[0] * obs.shape[1]) == [(0, engine.num_neurons)]
    monkeypatch.setattr(Engine, "evaluation_stages", lambda self, cols: self.stages)
    by_stage = evaluated()
    for a, b in zip(at_once[:2], by_stage[:2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for a, b in zip(at_once[2], by_stage[2], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


OUT_OF_PLACE = {
    "leaky_relu": torch.nn.functional.leaky_relu,
    "leaky_relu_0.3": lambda h: torch.nn.functional.leaky_relu(h, 0.3),
    "relu": torch.relu,
    "tanh": torch.tanh,
}


@pytest.mark.parametrize("activation", OUT_OF_PLACE)
@pytest.mark.parametrize(("fan_in", "columns"), [(4, 5), (10, 12), (10, 1)])  # a narrow W^T, one column: other kernels
@pytest.mark.parametrize("in_place_backward", [False, True])  # a small layer's plain autograd, or _HiddenLayer
def test_in_place_activations_give_the_out_of_place_outputs_and_gradients(activation, fan_in, columns,
                                                                         in_place_backward, monkeypatch):
    import narla.neurons.population
    from narla.neurons.population import StackedMLP

    if in_place_backward:
        monkeypatch.setattr(narla.neurons.population, "IN_PLACE_BACKWARD_ELEMENTS", 0)
    torch.manual_seed(0)
    mlp = StackedMLP(3, fan_in, (8, 8), 2, activation, torch.tensor([fan_in, 2, 3]))
    x = torch.randn(3, fan_in, columns, requires_grad=True)  # the inputs' gradient too (every hidden layer's dh)
    inputs = [x, *mlp.parameters()]
    out = mlp(x)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    h = x.transpose(1, 2)
    for layer, (w, b) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
        h = torch.baddbmm(b, h, w)
        if layer < len(mlp.weights) - 1:
            h = OUT_OF_PLACE[activation](h)
    want = h.transpose(1, 2)
    assert torch.equal(out, want)
    for got, expected in zip(grads, torch.autograd.grad(want.square().sum(), inputs), strict=True):
        assert torch.equal(got, expected)


@pytest.mark.parametrize("out_dim", [1, 2])
def test_column_form_output_layer_gives_the_row_forms_outputs_and_gradients(out_dim):
    from narla.neurons.population import COLUMN_FORM_COLS, StackedMLP

    torch.manual_seed(0)
    mlp = StackedMLP(3, 4, (8, 8), out_dim, "leaky_relu", torch.tensor([4, 2, 3]))
    x = torch.randn(3, 4, 2 * COLUMN_FORM_COLS, requires_grad=True)  # enough columns for the column form
    weight = torch.randn(3, out_dim, 2 * COLUMN_FORM_COLS)
    out = mlp(x)
    h = x.transpose(1, 2)
    for layer, (w, b) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
        h = torch.baddbmm(b, h, w)
        if layer < len(mlp.weights) - 1:
            h = torch.nn.functional.leaky_relu(h)
    want = h.transpose(1, 2)
    assert torch.allclose(out, want, atol=1e-6)
    inputs = [x, *mlp.parameters()]
    got = torch.autograd.grad((out * weight).sum(), inputs)
    expected = torch.autograd.grad((want * weight).sum(), inputs)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert torch.allclose(g, e, atol=1e-5)


def short_and_general_ticks(engine: Engine, obs: torch.Tensor, prev: torch.Tensor, monkeypatch) -> tuple:
    """One tick on the feedforward Bernoulli short path, then the same tick (the same random numbers) on the general
    path."""
    state = engine.generator.get_state()
    with torch.inference_mode():
        short = engine.tick(obs, prev)
        engine.generator.set_state(state)
        with monkeypatch.context() as patch:
            patch.setattr(Engine, "bernoulli_feedforward", property(lambda self: False))
            general = engine.tick(obs, prev)
    return short, general


@pytest.mark.parametrize("propagation", ["sweep", "delay"])
@pytest.mark.parametrize("columns", [None, [0, 3, 4]])
@pytest.mark.parametrize("head", [None, "softmax"])  # softmax: the paper's neurons, two output units each
def test_a_feedforward_bernoulli_tick_takes_the_short_path_to_the_general_paths_spikes(propagation, columns, head,
                                                                                       monkeypatch):
    from narla.neurons.heads import SoftmaxHeadPopulation

    readout = Readout("vote", gym.spaces.Discrete(2))
    wiring = compile_graph(random_sparse(4, 24, 5, n_motor=2, motor_groups=readout.motor_groups(), layers=3, seed=1))
    kind = Population if head is None else SoftmaxHeadPopulation
    population = kind(wiring, out_dim=readout.out_dim, hidden=(16, 16))
    engine = Engine(wiring, population, readout, propagation, torch.Generator().manual_seed(0))
    assert engine.bernoulli_feedforward
    obs = torch.randn(6, 4)
    prev = (torch.rand(engine.num_sensors + engine.num_neurons, 6) < 0.5).float()
    if columns is not None:  # a compacted tick: three of six copies, random numbers drawn for all six
        engine.columns = (6, torch.tensor(columns))
        obs, prev = obs[columns], prev[:, columns]
    short, general = short_and_general_ticks(engine, obs, prev, monkeypatch)
    assert torch.equal(short[0], general[0]) and torch.equal(short[1], general[1])
    assert short[1].dtype == general[1].dtype


def test_an_acting_forward_reads_parameters_updated_in_place_or_given_new_storage():
    from narla.neurons.population import StackedMLP

    torch.manual_seed(0)
    mlp = StackedMLP(3, 4, (8, 8), 1, "leaky_relu", torch.tensor([4, 2, 3]))
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        assert torch.equal(mlp(x, 1, 3, acting=True), mlp(x, 1, 3))
        for p in mlp.parameters():
            p.mul_(1.5)  # an optimizer step: the same storage
        assert torch.equal(mlp(x, 1, 3, acting=True), mlp(x, 1, 3))
        for p in mlp.parameters():
            p.data = torch.randn_like(p)  # new storage, as a batch of runs restacks its parameters
        assert torch.equal(mlp(x, 1, 3, acting=True), mlp(x, 1, 3))


def test_a_feedforward_bernoulli_tick_reads_parameters_given_new_storage_since_the_last_tick(monkeypatch):
    readout = Readout("choice", gym.spaces.Discrete(2))
    wiring = compile_graph(layered(4, layers=3, width=6))
    population = Population(wiring, out_dim=readout.out_dim, hidden=(16, 16))
    engine = Engine(wiring, population, readout, "sweep", torch.Generator().manual_seed(0))
    obs = torch.randn(5, 4)
    prev = torch.zeros(engine.num_sensors + engine.num_neurons, 5)
    with torch.inference_mode():
        engine.tick(obs, prev)  # fills the acting cache of parameter rows
    with torch.no_grad():
        for p in population.parameters():
            p.data = 3 * torch.randn_like(p)  # new storage, as a batch of runs restacks its parameters
    short, general = short_and_general_ticks(engine, obs, prev, monkeypatch)
    assert torch.equal(short[0], general[0])


def test_tied_neurons_take_the_short_path_to_the_general_paths_spikes(monkeypatch):
    readout = Readout("vote", gym.spaces.Discrete(2))
    wiring = compile_graph(random_sparse(4, 24, 5, n_motor=2, motor_groups=readout.motor_groups(), layers=3, seed=1))
    slots = torch.arange(wiring.num_neurons) // 2  # neighbours share a parameter row
    population = Population(wiring, out_dim=readout.out_dim, hidden=(16, 16), slots=slots)
    engine = Engine(wiring, population, readout, "sweep", torch.Generator().manual_seed(0))
    assert engine.bernoulli_feedforward
    obs = torch.randn(6, 4)
    prev = torch.zeros(engine.num_sensors + engine.num_neurons, 6)
    short, general = short_and_general_ticks(engine, obs, prev, monkeypatch)
    assert torch.equal(short[0], general[0]) and torch.equal(short[1], general[1])
