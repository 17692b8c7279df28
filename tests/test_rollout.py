"""Collection drops finished copies from the engine's batch without changing any live copy's episode."""

import pytest
import torch

from narla.engine import Engine
from narla.rollout import collect
from narla.scenario import from_dict
from narla.training import build

SCENARIO = {
    "name": "compact",
    "seed": 3,
    "task": {"id": "cartpole", "num_envs": 32},
    "network": {"builder": "layered", "layers": 3, "width": 8},
    "neuron": {"hidden": [16]},
    "rewards": ["task", "activity", "sparsity", "prediction"],
    "learning": {"rule": "reinforce", "lr": 0.01},
}


def batches(monkeypatch, compact: bool, count: int = 3):
    if not compact:
        monkeypatch.setattr(Engine, "compactable", property(lambda self: False))
    run = build(from_dict(SCENARIO))
    out = []
    for i in range(count):
        rollout = collect(run.engine, run.task, run.scheme, i * 32)
        run.learner.update(rollout)
        out.append(rollout)
    monkeypatch.undo()
    return out, run


def test_dropping_finished_copies_leaves_every_live_tick_bit_for_bit_the_same(monkeypatch):
    compacted, run_a = batches(monkeypatch, True)
    full, run_b = batches(monkeypatch, False)
    assert compacted[0].valid.float().mean() < 0.5  # the episodes' lengths differ: copies were dropped
    for a, b in zip(compacted, full, strict=True):
        assert torch.equal(a.valid, b.valid)
        valid = a.valid
        assert torch.equal(a.obs[valid], b.obs[valid])
        assert torch.equal(a.actions[valid], b.actions[valid])
        assert torch.equal(a.rewards, b.rewards) and torch.equal(a.task_reward, b.task_reward)
    for (name, p), q in zip(run_a.engine.population.named_parameters(), run_b.engine.population.parameters(),
                            strict=True):
        assert torch.equal(p, q), name


def test_evolution_strategies_never_drop_copies_since_columns_belong_to_members():
    run = build(from_dict({**SCENARIO, "task": {"id": "cartpole", "num_envs": 4},
                           "learning": {"rule": "es", "population": 2}}))
    assert not run.engine.compactable


@pytest.mark.parametrize("at_once_bytes", [0, 1 << 40])
def test_stacking_a_record_tick_by_tick_or_at_once_gives_the_same_tensor_and_empties_the_list(at_once_bytes,
                                                                                              monkeypatch):
    import narla.rollout

    monkeypatch.setattr(narla.rollout, "STACK_AT_ONCE_BYTES", at_once_bytes)
    ticks = [torch.randn(3, 5) for _ in range(7)]
    expected = torch.stack(ticks)
    held = list(ticks)
    assert torch.equal(narla.rollout.stack_freeing(held), expected)
    assert held == [None] * 7


def test_a_spiking_rollout_records_actions_in_one_byte_and_components_as_episode_sums():
    run = build(from_dict(SCENARIO))
    rollout = collect(run.engine, run.task, run.scheme)
    assert rollout.actions.dtype == torch.int8 and rollout.components == {}
    again = build(from_dict(SCENARIO))
    kept = collect(again.engine, again.task, again.scheme, per_tick_components=True)
    assert torch.equal(kept.actions, rollout.actions)  # same seed, same episodes
    assert set(kept.components) == set(rollout.component_sums) == set(run.scheme.names)
    for name, per_tick in kept.components.items():
        torch.testing.assert_close(rollout.component_sums[name], per_tick.sum(0), rtol=1e-6, atol=1e-5)


BULK_REWARDS = {"terms": ["task", "activity", {"name": "sparsity", "params": {"scope": "neighbourhood"}},
                          "prediction", "trace", "relay", "paper_firing", "paper_sparsity", "paper_prediction"],
                "phases": [{"until_episode": 32, "terms": ["activity", "trace", "relay"]}, {"terms": "all"}]}


@pytest.mark.parametrize("window", [1 << 22, 100])
def test_scoring_a_rollout_at_once_gives_the_tick_by_tick_rewards_bit_for_bit(window, monkeypatch):
    import narla.rollout
    from narla.rewards import RewardScheme

    monkeypatch.setattr(narla.rollout, "SCORE_AT_ONCE_ELEMENTS", window)  # 100: a window of one tick
    scenario = {**SCENARIO, "rewards": BULK_REWARDS}
    runs = [build(from_dict(scenario)) for _ in range(2)]
    assert runs[0].scheme.tick_local
    got = [collect(runs[0].engine, runs[0].task, runs[0].scheme, episode, per_tick_components=True)
           for episode in (0, 32)]
    monkeypatch.setattr(RewardScheme, "tick_local", property(lambda self: False))
    want = [collect(runs[1].engine, runs[1].task, runs[1].scheme, episode, per_tick_components=True)
            for episode in (0, 32)]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.actions, b.actions) and torch.equal(a.valid, b.valid)
        assert torch.equal(a.rewards, b.rewards)
        assert a.component_sums.keys() == b.component_sums.keys() == a.components.keys()
        for name in a.component_sums:
            assert torch.equal(a.component_sums[name], b.component_sums[name]), name
            assert torch.equal(a.components[name], b.components[name]), name


def test_a_scheme_with_a_stateful_or_users_reward_is_scored_tick_by_tick():
    from narla.rewards import RewardScheme

    wiring = build(from_dict(SCENARIO)).wiring
    assert RewardScheme.from_config(["task", "trace"], wiring).tick_local
    assert not RewardScheme.from_config(["task", "paper_trace"], wiring).tick_local
    assert not RewardScheme.from_config(["task", "narla.rewards.examples:curiosity"], wiring).tick_local


@pytest.mark.parametrize("rewards", [SCENARIO["rewards"], ["task", "paper_trace"]])
def test_a_rollout_is_ordinary_tensors_and_leaves_the_task_usable_outside_inference_mode(rewards):
    run = build(from_dict({**SCENARIO, "rewards": rewards}))
    rollout = collect(run.engine, run.task, run.scheme, per_tick_components=True)
    tensors = [rollout.obs, rollout.actions, rollout.first, rollout.valid, rollout.done, rollout.task_reward,
               rollout.rewards, *rollout.component_sums.values(), *rollout.components.values()]
    assert not any(t.is_inference() for t in tensors)
    run.task.reset(seed=0)  # the task's state is updated in place, outside inference mode
    run.learner.update(rollout)  # autograd may save what the rollout holds
