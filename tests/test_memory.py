"""narla.memory: a batch's rollout record is sized before training, and a record that cannot fit is said early."""

import warnings

import pytest

import narla.memory
from narla import scenario as scenarios
from narla.memory import record_bytes
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
    with pytest.warns(RuntimeWarning, match=r"task\.num_envs: the rollout record of 4 copies"):
        Trainer(scenarios.from_dict(SCENARIO), progress=False)


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
