"""narla.memory: a batch's rollout record and its update are sized before training, and what cannot fit is said
early."""

import warnings

import pytest
import torch

import narla.memory
from narla import scenario as scenarios
from narla.memory import ADVANTAGE_BYTES, check_update, record_bytes, update_column_bytes
from narla.rollout import collect
from narla.runs import RunsTrainer
from narla.training import Trainer, build

SCENARIO = {"name": "mem", "task": {"id": "cartpole", "num_envs": 4},
            "network": {"builder": "layered", "hidden_layers": 1, "width": 3}, "neuron": {"hidden": [8]}}


@pytest.mark.parametrize(("neuron", "context"), [
    ({"hidden": [8]}, {}),
    ({"hidden": [8], "head": "softmax"}, {}),  # the paper's neurons
    ({"hidden": [8], "amtf": "cooperation"}, {"universal_action": True}),  # the previous task action recorded too
])
def test_record_bytes_are_the_bytes_a_collected_rollout_records(neuron, context):
    run = build(scenarios.from_dict({**SCENARIO, "neuron": neuron, "context": context}))
    rollout = collect(run.engine, run.task, run.scheme)
    ticks = rollout.obs.shape[0]
    recorded = [rollout.obs, rollout.actions, rollout.first, rollout.valid, rollout.done, rollout.task_reward,
                rollout.rewards] + ([rollout.prev_action] if rollout.prev_action is not None else [])
    assert (rollout.prev_action is not None) == bool(context)
    assert record_bytes(run.engine, run.task.obs_dim, 4, ticks) == sum(t.numel() * t.element_size() for t in recorded)


def test_a_run_whose_record_may_not_fit_warns_naming_the_settings(monkeypatch):
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: 1000)
    with pytest.warns(RuntimeWarning) as caught:
        Trainer(scenarios.from_dict(SCENARIO), progress=False)
    said = [str(w.message) for w in caught]
    assert len(said) == 2
    assert said[0].startswith("task.num_envs: the rollout record of 4 copies")
    assert said[1].startswith("task.num_envs: an update could re-evaluate 2,000 columns")  # nor its update


def test_a_run_whose_record_fits_does_not_warn(monkeypatch):
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: 1 << 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(scenarios.from_dict(SCENARIO), progress=False)


def test_batched_runs_whose_records_cannot_fit_refuse_to_start(monkeypatch):
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: 1000)
    runs = [scenarios.from_dict({**SCENARIO, "seed": s}) for s in (0, 1)]
    with pytest.raises(MemoryError, match=r"rollout record of 8 copies"):
        RunsTrainer(runs)


@pytest.mark.parametrize(("hidden", "network"), [
    ([8], SCENARIO["network"]),
    ([16, 16], {"builder": "random_sparse", "n_neurons": 300, "fan_in": 16, "layers": 4}),
    ([64, 64], {"builder": "random_sparse", "n_neurons": 300, "fan_in": 16, "layers": 4}),
])
def test_the_update_estimate_covers_what_autograd_saves_for_the_backward_pass_without_doubling_it(hidden, network):
    run = build(scenarios.from_dict({**SCENARIO, "network": network, "neuron": {"hidden": hidden}}))
    rollout = collect(run.engine, run.task, run.scheme)
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run.learner.loss(rollout)
    for p in run.learner.params:  # the parameters' own storage is not the update's to add
        storages.pop(p.untyped_storage().data_ptr(), None)
    estimate = update_column_bytes(run.engine) * int(rollout.valid.sum())
    assert sum(storages.values()) <= estimate <= 2 * sum(storages.values())


def update_check_scenario():
    """A run whose record, advantages, gradients and Adam moments take a known size, and whose update's activations
    take much more."""
    run = build(scenarios.from_dict(SCENARIO))
    task = run.task
    fixed = record_bytes(run.engine, task.obs_dim, task.num_envs, task.max_episode_steps)
    fixed += ADVANTAGE_BYTES * run.engine.num_neurons * task.num_envs * task.max_episode_steps
    fixed += 3 * sum(p.numel() * p.element_size() for p in run.learner.params)
    return run, fixed, update_column_bytes(run.engine)


def warns_then_fits(run, match, setting, value):
    """``check_update`` warns with ``match``; with the learner's ``setting`` at the ``value`` it names, it is silent."""
    with pytest.warns(RuntimeWarning, match=match):
        check_update(run.engine, run.task, run.learner)
    setattr(run.learner, setting, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_update(run.engine, run.task, run.learner)


def test_an_update_that_may_not_fit_warns_naming_chunk_columns_and_the_most_that_fits(monkeypatch):
    run, fixed, per_column = update_check_scenario()
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: fixed + 10 * per_column)
    warns_then_fits(run, r"^learning\.chunk_columns: an update could re-evaluate 2,000 columns "
                         r".* set learning\.chunk_columns to at most 10 ", "chunk_columns", 10)


def test_an_update_that_fits_a_few_columns_but_not_a_tick_of_every_copy_names_chunk_columns(monkeypatch):
    run, fixed, per_column = update_check_scenario()
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: fixed + 3 * per_column)  # below 4 copies
    warns_then_fits(run, r"^learning\.chunk_columns: .* set learning\.chunk_columns to at most 3 ", "chunk_columns", 3)


def test_an_update_whose_smallest_window_cannot_fit_names_task_num_envs(monkeypatch):
    run, fixed, per_column = update_check_scenario()
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: fixed + per_column // 2)  # not one column
    with pytest.warns(RuntimeWarning, match=r"^task\.num_envs: an update could re-evaluate .* lower task\.num_envs"):
        check_update(run.engine, run.task, run.learner)


def test_an_update_chunked_by_ticks_is_told_the_most_ticks_that_fit(monkeypatch):
    run, fixed, per_column = update_check_scenario()
    run.learner.chunk_ticks = 50  # 50 ticks x 4 copies a window
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: fixed + 100 * per_column)
    warns_then_fits(run, r"^learning\.chunk_ticks: an update could re-evaluate 200 columns "
                         r".* set learning\.chunk_ticks to at most 25 ", "chunk_ticks", 25)


def test_an_update_chunked_by_ticks_where_no_tick_of_every_copy_fits_is_told_to_use_chunk_columns(monkeypatch):
    run, fixed, per_column = update_check_scenario()
    run.learner.chunk_ticks = 50
    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: fixed + 3 * per_column)  # below 4 copies
    with pytest.warns(RuntimeWarning, match=r"^learning\.chunk_columns: .* set learning\.chunk_columns to at most 3 "
                                            r"instead of learning\.chunk_ticks "):
        check_update(run.engine, run.task, run.learner)
    run.learner.chunk_ticks, run.learner.chunk_columns = None, 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_update(run.engine, run.task, run.learner)
