"""Keeping acting's last hidden layer for the update (narla.hidden): the gradients of re-evaluating, bit for bit."""

from dataclasses import replace

import pytest
import torch

import narla.engine
import narla.hidden
from narla import scenario as scenarios
from narla.rollout import collect
from narla.runs import RunsTrainer
from narla.scenario import from_dict
from narla.training import Trainer, build

LIBRARY_MIN_INPUTS = narla.hidden.MIN_INPUTS

SCENARIO = {
    "name": "kept",
    "seed": 4,
    "task": {"id": "cartpole", "num_envs": 32},
    "network": {"builder": "layered", "layers": 3, "width": 6},
    "neuron": {"hidden": [24, 24]},
    "rewards": ["task", "activity", "sparsity", "prediction"],
    "learning": {"rule": "reinforce", "lr": 0.01},
}


@pytest.fixture(autouse=True)
def keep_narrow_layers(monkeypatch):
    """These networks are small, for speed: let their 24-unit layers be kept, which the library skips as too narrow
    to pay (one test restores that)."""
    monkeypatch.setattr(narla.hidden, "MIN_INPUTS", 1)


def scenario(**changes) -> dict:
    out = {**SCENARIO}
    for key, value in changes.items():
        out[key] = {**SCENARIO.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def kept_rollout(run):
    rollout = collect(run.engine, run.task, run.scheme, keep_hidden=True)
    if run.engine.device.type != "cpu":
        pytest.skip(f"hidden layers are kept only on the CPU ({run.engine.device} given)")
    if rollout.hidden is None and narla.hidden.HiddenRecord.start(run.engine, run.task.num_envs) is None:
        pytest.skip("this machine's matrix products round by column count up to 64 columns: nothing is kept")
    return rollout


def gradients(run, rollout) -> dict[str, torch.Tensor]:
    run.learner.optimizer.zero_grad(set_to_none=True)
    run.learner.loss(rollout).backward()
    return {name: p.grad.clone() for name, p in run.engine.population.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("activation", ["leaky_relu", "leaky_relu_0.3", "relu", "tanh"])
@pytest.mark.parametrize("hidden", [[24], [24, 24]])
@pytest.mark.parametrize("merged", [True, False])
def test_kept_last_hidden_layer_gives_the_re_evaluated_gradients_bit_for_bit(activation, hidden, merged, monkeypatch):
    if not merged:
        monkeypatch.setattr(narla.engine, "EVALUATION_GROUP_ELEMENTS", 1)  # one evaluation group per stage
    run = build(from_dict(scenario(neuron={"hidden": hidden, "activation": activation})))
    groups = run.engine.evaluation_stages(100)
    assert (len(groups) == 1) == merged and len(run.engine.stages) > 1
    collect(run.engine, run.task, run.scheme)  # a batch of full-width ticks first, so the next one compacts
    rollout = kept_rollout(run)
    assert rollout.valid.float().mean() < 0.6  # episodes of different lengths: late ticks ran on a few copies
    handed = []
    take = rollout.hidden.take
    monkeypatch.setattr(rollout.hidden, "take", lambda *a: handed.append(take(*a)) or handed[-1])
    kept = gradients(run, rollout)
    assert rollout.hidden.pieces == {}  # every group took its kept output
    # a stage alone in its group whose columns fit one buffer is handed over as a view of it, not a copy
    assert all((h._base is not None) == (not merged) for h in handed)
    rollout.hidden = None
    assert kept.keys() == gradients(run, rollout).keys()
    for name, grad in gradients(run, rollout).items():
        assert torch.equal(kept[name], grad), name


def test_training_on_kept_outputs_reaches_the_parameters_of_training_that_re_evaluates():
    runs = [build(from_dict(SCENARIO)) for _ in range(2)]
    for episode in range(0, 96, 32):
        for run, keep in zip(runs, (True, False), strict=True):
            rollout = collect(run.engine, run.task, run.scheme, episode, keep_hidden=keep)
            assert (rollout.hidden is not None) == keep or narla.hidden.HiddenRecord.start(run.engine, 32) is None
            run.learner.update(rollout)
    for (name, p), q in zip(runs[0].engine.population.named_parameters(), runs[1].engine.population.parameters(),
                            strict=True):
        assert torch.equal(p, q), name


@pytest.mark.cpu_only("hidden layers are kept only on the CPU")
def test_a_run_in_a_batch_equals_the_same_seed_trained_alone_when_the_lone_run_keeps_its_outputs():
    base = scenarios.from_dict(scenario(training={"max_episodes": 64}))
    seeds = [0, 1]
    batch = RunsTrainer([replace(base, seed=s) for s in seeds])
    batch.train()
    for r, seed in enumerate(seeds):
        alone = Trainer(replace(base, seed=seed), progress=False)
        assert alone.run.learner.keeps_hidden
        alone.train()
        assert batch.returns[r] == alone.returns
        for name, p in alone.run.engine.population.named_parameters():
            assert torch.equal(batch.final_parameters[r][name], p.detach()), name


def test_a_record_is_not_used_once_the_parameters_have_changed():
    run = build(from_dict(SCENARIO))
    rollout = kept_rollout(run)
    with torch.no_grad():
        for p in run.engine.population.parameters():
            p.mul_(1.5)
    kept = gradients(run, rollout)
    assert rollout.hidden.pieces  # nothing was taken: the outputs belong to the old parameters
    rollout.hidden = None
    for name, grad in gradients(run, rollout).items():
        assert torch.equal(kept[name], grad), name


def test_a_record_past_its_budget_is_dropped_and_the_update_re_evaluates(monkeypatch):
    run = build(from_dict(SCENARIO))
    width = run.engine.population.policy.weights[-1].shape[1]
    monkeypatch.setattr(narla.hidden, "RECORD_BYTES", 16 * 32 * run.engine.num_neurons * width * 4)
    rollout = collect(run.engine, run.task, run.scheme, keep_hidden=True)
    assert rollout.obs.shape[0] > 16 and rollout.hidden is None
    assert torch.isfinite(run.learner.update(rollout)["loss"])


def test_a_record_past_hidden_columns_is_dropped_and_one_within_them_is_kept():
    run = build(from_dict(SCENARIO))
    kept_rollout(run)  # skips where this machine keeps nothing
    assert collect(run.engine, run.task, run.scheme, keep_hidden=True, hidden_columns=10**9).hidden is not None
    first_tick = run.task.num_envs  # every copy runs the first tick, and the episodes last longer than one
    for most in (first_tick - 1, first_tick + 1):  # passed on the first tick (not started), on the second (dropped)
        assert collect(run.engine, run.task, run.scheme, keep_hidden=True, hidden_columns=most).hidden is None


@pytest.mark.parametrize("changes", [
    {"task": {"num_envs": narla.hidden.MIN_COPIES - 1}},  # too narrow to pay
    {"learning": {"rule": "es", "population": 2}},  # the engine's columns are members
    {"neuron": {"hidden": []}},  # no hidden layer
    {"neuron": {"hidden": [24, 24]}},  # a last hidden layer too narrow to pay
])
def test_batches_that_would_not_gain_keep_nothing(changes, monkeypatch):
    monkeypatch.setattr(narla.hidden, "MIN_INPUTS", LIBRARY_MIN_INPUTS)
    run = build(from_dict(scenario(**changes)))
    assert collect(run.engine, run.task, run.scheme, keep_hidden=True).hidden is None


def test_an_update_in_chunks_of_ticks_asks_for_nothing_to_be_kept():
    run = build(from_dict(scenario(learning={"chunk_ticks": 8})))
    assert not run.learner.keeps_hidden
    assert build(from_dict(SCENARIO)).learner.keeps_hidden


@pytest.mark.cpu_only("hidden layers are kept only on the CPU")
def test_the_keep_hidden_example_times_both_arms_of_interleaved_batches():
    from examples.keep_hidden import batch_times

    times = batch_times(narla.hidden.MIN_COPIES, seconds=0.0)
    assert len(times[True]) == len(times[False]) >= 2
    assert all(c > 0 and u > 0 for arm in times.values() for c, u in arm)
