"""A batch too large to record every tick's rewards keeps what scores them again, and REINFORCE learns from it window
by window as from the record."""

import pytest
import torch

import narla.learning.reinforce
import narla.rollout
from narla import scenario as scenarios
from narla.learning.reinforce import WindowAdvantages
from narla.memory import record_bytes
from narla.rollout import collect
from narla.training import Trainer, build, collect_options

REWARDS = ["task", "activity", "sparsity", "prediction", "trace"]  # all tick-local
SCENARIO = {"name": "lean", "seed": 2, "task": {"id": "cartpole", "num_envs": 8},
            "network": {"builder": "layered", "hidden_layers": 2, "width": 5}, "neuron": {"hidden": [8]},
            "rewards": REWARDS, "learning": {"rule": "reinforce", "lr": 0.01}}


@pytest.fixture
def windows_of_three_ticks(monkeypatch):
    monkeypatch.setattr(narla.rollout, "SCORE_AT_ONCE_ELEMENTS", 8 * 11 * 3)  # 8 copies x 11 neurons x 3 ticks
    monkeypatch.setattr(narla.rollout, "RESCORE_GROUP_TICKS", 5)  # rescored two windows (six ticks) at a time


def twin_rollouts(learning=None):
    """The same run twice, and one batch of each: rewards recorded, and not."""
    scenario = {**SCENARIO, "learning": {**SCENARIO["learning"], **(learning or {})}}
    runs = [build(scenarios.from_dict(scenario)) for _ in range(2)]
    recorded = collect(runs[0].engine, runs[0].task, runs[0].scheme)
    rescored = collect(runs[1].engine, runs[1].task, runs[1].scheme, record_rewards=False)
    return runs, recorded, rescored


def test_a_rollout_without_recorded_rewards_scores_every_window_again_bit_for_bit(windows_of_three_ticks):
    _, recorded, rescored = twin_rollouts()
    assert rescored.rewards is None and len(rescored.reward_windows()) > 2
    assert torch.equal(rescored.all_rewards(), recorded.rewards)
    for k, (lo, hi) in enumerate(rescored.reward_windows()):
        assert torch.equal(rescored.window_rewards(k), recorded.rewards[lo:hi])
    assert rescored.component_sums.keys() == recorded.component_sums.keys()
    for name, value in recorded.component_sums.items():
        assert torch.equal(rescored.component_sums[name], value), name
    for name in ("obs", "actions", "first", "valid", "done", "task_reward"):
        assert torch.equal(getattr(rescored, name), getattr(recorded, name)), name


def test_its_neuron_returns_are_the_rewards_summed_over_each_episode(windows_of_three_ticks):
    _, recorded, rescored = twin_rollouts()
    assert torch.allclose(rescored.neuron_returns(), recorded.rewards.sum(0), rtol=1e-6, atol=1e-5)


def test_its_record_takes_the_bytes_memory_counts_without_rewards():
    runs, _, rescored = twin_rollouts()
    kept = [rescored.obs, rescored.actions, rescored.first, rescored.valid, rescored.done, rescored.task_reward]
    ticks = rescored.obs.shape[0]
    assert record_bytes(runs[1].engine, 4, 8, ticks, rewards=False) == sum(t.numel() * t.element_size() for t in kept)


def test_a_reward_that_carries_state_from_tick_to_tick_keeps_the_record():
    scenario = {**SCENARIO, "rewards": ["task", "paper_trace"]}
    run = build(scenarios.from_dict(scenario))
    assert not run.scheme.tick_local
    assert collect(run.engine, run.task, run.scheme, record_rewards=False).rewards is not None
    assert run.learner.records_rewards(run.scheme, 10**9, 64, 500)


def test_the_window_advantages_are_the_whole_batchs_to_float_rounding(windows_of_three_ticks):
    runs, recorded, rescored = twin_rollouts()
    whole = runs[0].learner.advantages(recorded)
    windows = WindowAdvantages(runs[1].learner, rescored)
    t, b, _ = whole.shape
    ticks, copies = torch.arange(t).repeat_interleave(b), torch.arange(b).repeat(t)
    assert torch.allclose(windows.columns(ticks, copies), whole.reshape(t * b, -1), rtol=1e-4, atol=1e-5)
    inside = (ticks >= 4) & (ticks < 9)  # across a group's edge
    assert torch.allclose(windows.columns(ticks[inside], copies[inside]), whole[4:9].reshape(5 * b, -1),
                          rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("learning", [{}, {"chunk_columns": 20}, {"chunk_columns": 2}, {"chunk_ticks": 4},
                                      {"normalize_returns": False}])
def test_learning_from_rewards_scored_again_in_windows_equals_learning_from_the_record(learning,
                                                                                        windows_of_three_ticks):
    runs, recorded, rescored = twin_rollouts(learning)
    for _ in range(2):
        runs[0].learner.update(recorded)
        runs[1].learner.update(rescored)
        recorded = collect(runs[0].engine, runs[0].task, runs[0].scheme)
        rescored = collect(runs[1].engine, runs[1].task, runs[1].scheme, record_rewards=False)
    for a, b in zip(runs[0].engine.population.parameters(), runs[1].engine.population.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_rewards_scored_again_in_one_window_give_the_records_update_bit_for_bit():
    runs, recorded, rescored = twin_rollouts()
    assert len(rescored.reward_windows()) == 1
    runs[0].learner.update(recorded)
    runs[1].learner.update(rescored)
    for a, b in zip(runs[0].engine.population.parameters(), runs[1].engine.population.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_trainer_records_no_rewards_where_a_batchs_would_pass_the_limit(monkeypatch, windows_of_three_ticks,
                                                                               tmp_path):
    run = build(scenarios.from_dict(SCENARIO))
    assert collect_options(run)["record_rewards"]
    monkeypatch.setattr(narla.learning.reinforce, "LEAN_REWARD_BYTES", 0)
    assert collect_options(run) == {"keep_hidden": False, "hidden_columns": None, "record_rewards": False}
    scenario = {**SCENARIO, "training": {"max_episodes": 16, "log_neurons": True}}
    summary = Trainer(scenarios.from_dict(scenario), out_dir=tmp_path / "run", progress=False).train()
    assert summary["status"] == "max_episodes"
    assert (tmp_path / "run" / "neurons.csv").read_text().count("\n") == 17  # a header and each episode's returns


def test_a_network_scored_tick_by_tick_is_told_to_record_its_rewards(monkeypatch):
    monkeypatch.setattr(narla.learning.reinforce, "LEAN_REWARD_BYTES", 0)
    scenario = {**SCENARIO, "neuron": {"hidden": [8], "output": {"hidden": "rate", "motor": "spike"}}}
    run = build(scenarios.from_dict(scenario))  # rate neurons: collect scores each tick as it goes
    assert collect_options(run)["record_rewards"]
    assert collect(run.engine, run.task, run.scheme, record_rewards=False).rewards is not None
