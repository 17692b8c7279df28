"""GraphTick: a tick captured as a CUDA graph fires as the eager tick does (its CUDA tests run where a GPU is)."""

import gc
import weakref
from collections.abc import Iterator

import pytest
import torch

import narla.rollout
from narla.bench import Config, acting_engine
from narla.capture import GraphTick, graph_tick
from narla.rollout import collect
from narla.scenario import from_dict
from narla.training import build

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
NETWORK = Config("narla-3layer", {"builder": "layered", "width": 15, "connectivity": "local", "layers": 3},
                 (32, 32), (8,), ())


@pytest.fixture
def captured() -> Iterator[tuple[GraphTick, torch.Tensor, torch.Tensor]]:
    """A GraphTick of 8 copies of a small 3-layer network, CartPole-sized observations and a silent previous tick
    (the fixture holds the engine, which the GraphTick holds weakly)."""
    engine = acting_engine(NETWORK, torch.device("cuda"))
    tick = GraphTick(engine, 8)
    yield tick, torch.randn(8, 4, device="cuda"), torch.zeros(engine.num_sensors + engine.num_neurons, 8,
                                                               device="cuda")


def replay_and_eager(tick: GraphTick, obs: torch.Tensor, prev: torch.Tensor) -> tuple:
    """The replayed tick, and the eager tick on the uniforms the replay drew."""
    act, actions = tick(obs, prev)
    with torch.inference_mode():
        eager_act, eager_actions = tick.engine.bernoulli_tick(obs, prev, tick.u.clone())
    return act, actions, eager_act, eager_actions


def test_graph_tick_refuses_an_engine_off_cuda():
    engine = acting_engine(NETWORK, torch.device("cpu"))
    with pytest.raises(ValueError, match="^GraphTick: the engine is on cpu; CUDA graphs need a cuda device$"):
        GraphTick(engine, 8)


@CUDA
def test_a_replayed_tick_fires_exactly_as_the_eager_tick_on_the_same_uniforms(captured):
    tick, obs, prev = captured
    for _ in range(5):
        act, actions, eager_act, eager_actions = replay_and_eager(tick, obs, prev)
        assert torch.equal(act, eager_act) and torch.equal(actions, eager_actions)
        prev, obs = act, obs + 0.1 * torch.randn_like(obs)
    assert tick.captures == 1


@CUDA
def test_a_replayed_tick_fires_as_the_eager_tick_from_the_same_generator_state(captured):
    tick, obs, prev = captured
    generator = tick.engine.generator
    for _ in range(3):
        state = generator.get_state()
        act, actions = tick(obs, prev)
        after = generator.get_state()
        generator.set_state(state)
        with torch.inference_mode():
            eager_act, eager_actions = tick.engine.tick(obs, prev)
        assert torch.equal(act, eager_act) and torch.equal(actions, eager_actions)
        assert torch.equal(generator.get_state(), after)
        prev = act


def test_no_graph_is_made_for_an_engine_off_cuda():
    engine = acting_engine(NETWORK, torch.device("cpu"))
    assert graph_tick(engine, 8) is None and engine.graph_ticks == {}


@CUDA
def test_an_engine_with_a_graph_tick_is_freed_when_dropped_without_the_cycle_collector():
    engine = acting_engine(NETWORK, torch.device("cuda"))
    obs, prev = torch.zeros(8, 4, device="cuda"), torch.zeros(engine.num_sensors + engine.num_neurons, 8, device="cuda")
    tick = graph_tick(engine, 8)
    tick(obs, prev)
    alive = weakref.ref(engine)
    gc.disable()
    try:
        del engine
        assert alive() is None
    finally:
        gc.enable()
    with pytest.raises(RuntimeError, match="its engine no longer exists"):
        tick(obs, prev)


def full_width_eager_tick(engine, batch: int):
    """A stand-in for a CUDA graph on the CPU: the engine's eager tick of all ``batch`` copies, as a replay computes
    them, with the replay's call signature."""
    return lambda obs, prev: engine.tick(obs, prev)


def three_batches(scenario: dict, graphs: bool = True) -> tuple[list, list[torch.Tensor], object]:
    """Three batches of collect + REINFORCE update of ``scenario``: the rollouts, the parameters after them, the run."""
    run = build(from_dict(scenario))
    rollouts = []
    for i in range(3):
        rollout = collect(run.engine, run.task, run.scheme, i * 16, graphs=graphs)
        run.learner.update(rollout)
        rollouts.append(rollout)
    return rollouts, list(run.engine.population.parameters()), run


def assert_same_training(first: tuple, second: tuple) -> None:
    """Two :func:`three_batches` played the same episodes, every tick of their rollouts alike (a replay zeroes the
    finished copies' columns, as the compacted eager tick leaves them), and reached the same parameters."""
    for a, b in zip(first[0], second[0], strict=True):
        assert torch.equal(a.valid, b.valid) and a.valid.float().mean() < 0.9
        assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions)
        for name in ("done", "task_reward", "rewards"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert all(torch.equal(p, q) for p, q in zip(first[1], second[1], strict=True))


@pytest.mark.parametrize("task", [{"id": "cartpole", "num_envs": 16, "options": {"normalize_obs": True}},
                                  {"id": "gym:CartPole-v1", "num_envs": 16}])
def test_a_full_width_replay_after_compaction_gives_the_compacted_collections_rollouts(task, monkeypatch):
    """Finished copies still step the task, whose running normalisation (or gym's own random state) they feed: a
    replay that computed them would change the live copies' later observations, so their columns are zeroed as a
    compacted tick leaves them."""
    scenario = {"name": "masked", "seed": 3, "device": "cpu", "task": task,
                "network": {"builder": "layered", "layers": 3, "width": 8},
                "neuron": {"hidden": [16]}, "rewards": ["task", "activity"],
                "learning": {"rule": "reinforce", "lr": 0.01}}
    with monkeypatch.context() as patch:
        patch.setattr(narla.rollout, "graph_tick", full_width_eager_tick)
        replayed = three_batches(scenario)
    assert_same_training(replayed, three_batches(scenario))


@CUDA
def test_collection_gives_the_same_rollouts_and_updates_with_or_without_cuda_graphs():
    scenario = {"name": "graphs", "seed": 3, "device": "cuda", "task": {"id": "cartpole", "num_envs": 16},
                "network": {"builder": "layered", "layers": 3, "width": 8}, "neuron": {"hidden": [16]},
                "rewards": ["task", "activity", "sparsity", "prediction"],
                "learning": {"rule": "reinforce", "lr": 0.01}}
    with_graphs, without = three_batches(scenario, graphs=True), three_batches(scenario, graphs=False)
    assert with_graphs[2].engine.graph_ticks and not without[2].engine.graph_ticks
    assert_same_training(with_graphs, without)


@CUDA
def test_each_replay_draws_new_uniforms_from_the_engine_generator(captured):
    tick, obs, prev = captured
    tick(obs, prev)
    first = tick.u.clone()
    tick(obs, prev)
    assert not torch.equal(first, tick.u)


@CUDA
def test_a_replay_sees_parameters_updated_in_place(captured):
    tick, obs, prev = captured
    tick(obs, prev)
    with torch.no_grad():
        for p in tick.engine.population.parameters():
            p.mul_(-3.0)
    act, _, eager_act, _ = replay_and_eager(tick, obs, prev)
    assert torch.equal(act, eager_act)
    assert tick.captures == 1


@CUDA
def test_a_parameter_on_new_storage_makes_the_next_call_capture_again(captured):
    tick, obs, prev = captured
    tick(obs, prev)
    weights = tick.engine.population.policy.weights[0]
    weights.data = -weights.data.clone()
    act, _, eager_act, _ = replay_and_eager(tick, obs, prev)
    assert torch.equal(act, eager_act)
    assert tick.captures == 2


@CUDA
def test_a_graph_tick_refuses_observations_of_another_batch_size(captured):
    tick, _, prev = captured
    with pytest.raises(ValueError, match="captured for 8 copies, got observations of 4"):
        tick(torch.zeros(4, 4, device="cuda"), prev[:, :4])
