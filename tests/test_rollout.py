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
                          "prediction", "trace", "relay", "paper_firing", "paper_sparsity", "paper_prediction",
                          "paper_trace", "dilemma"],
                "phases": [{"until_episode": 32, "terms": ["activity", "trace", "relay"]}, {"terms": "all"}]}


@pytest.mark.parametrize("window", [1 << 22, 4000, 100])
def test_scoring_a_rollout_at_once_gives_the_tick_by_tick_rewards_bit_for_bit(window, monkeypatch):
    import narla.rollout
    from narla.rewards import RewardScheme

    # 1 << 22: the whole rollout in one window; 4000: windows of 5 ticks (32 copies x 25 neurons); 100: one tick
    monkeypatch.setattr(narla.rollout, "SCORE_AT_ONCE_ELEMENTS", window)
    scenario = {**SCENARIO, "rewards": BULK_REWARDS}
    runs = [build(from_dict(scenario)) for _ in range(2)]
    assert runs[0].scheme.scores_in_bulk
    got = [collect(runs[0].engine, runs[0].task, runs[0].scheme, episode, per_tick_components=True)
           for episode in (0, 32)]
    monkeypatch.setattr(RewardScheme, "scores_in_bulk", property(lambda self: False))
    want = [collect(runs[1].engine, runs[1].task, runs[1].scheme, episode, per_tick_components=True)
            for episode in (0, 32)]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.actions, b.actions) and torch.equal(a.valid, b.valid)
        assert torch.equal(a.rewards, b.rewards)
        assert a.component_sums.keys() == b.component_sums.keys() == a.components.keys()
        for name in a.component_sums:
            assert torch.equal(a.component_sums[name], b.component_sums[name]), name
            assert torch.equal(a.components[name], b.components[name]), name


def test_a_scheme_with_a_users_stateful_reward_is_scored_tick_by_tick_and_paper_trace_in_bulk():
    from narla.rewards import RewardScheme

    wiring = build(from_dict(SCENARIO)).wiring
    assert RewardScheme.from_config(["task", "trace"], wiring).tick_local
    paper = RewardScheme.from_config(["task", "paper_trace"], wiring)
    assert not paper.tick_local and paper.scores_in_bulk  # stateful, but it scores consecutive ticks in order
    assert not RewardScheme.from_config(["task", "narla.rewards.examples:curiosity"], wiring).scores_in_bulk


@pytest.mark.parametrize("rewards", [SCENARIO["rewards"], ["task", "paper_trace"]])
def test_a_rollout_is_ordinary_tensors_and_leaves_the_task_usable_outside_inference_mode(rewards):
    run = build(from_dict({**SCENARIO, "rewards": rewards}))
    rollout = collect(run.engine, run.task, run.scheme, per_tick_components=True)
    tensors = [rollout.obs, rollout.actions, rollout.first, rollout.valid, rollout.done, rollout.task_reward,
               rollout.rewards, *rollout.component_sums.values(), *rollout.components.values()]
    assert not any(t.is_inference() for t in tensors)
    run.task.reset(seed=0)  # the task's state is updated in place, outside inference mode
    run.learner.update(rollout)  # autograd may save what the rollout holds


@pytest.mark.cpu_only("Bernoulli feed-forward neurons and skipped ticks are the CPU's")
@pytest.mark.parametrize("copies,rewards", [(1, None), (32, None), (8, ["paper_trace", "activity"])])
def test_ticks_after_every_episode_ended_are_zeros_skipped_with_their_draws_and_change_nothing_else(monkeypatch,
                                                                                                   copies, rewards):
    scenario = {**SCENARIO, "task": {"id": "cartpole", "num_envs": copies}}
    if rewards is not None:  # paper_trace is scored tick by tick, in collect's loop
        scenario["rewards"] = rewards

    def play(skip: bool):
        if not skip:
            monkeypatch.setattr(Engine, "skip_ticks", lambda self, ticks, width: False)
        run = build(from_dict(scenario))
        assert run.engine.bernoulli_feedforward
        out = []
        for i in range(4):
            out.append(collect(run.engine, run.task, run.scheme, i * copies, per_tick_components=rewards is not None))
            run.learner.update(out[-1])
        monkeypatch.undo()
        return out, run

    skipped, run_a = play(True)
    computed, run_b = play(False)
    padded = 0
    for a, b in zip(skipped, computed, strict=True):
        assert a.obs.shape == b.obs.shape and a.obs.shape[0] % 16 == 0  # the clock's length, as before
        assert torch.equal(a.valid, b.valid)
        valid = a.valid
        assert torch.equal(a.obs[valid], b.obs[valid]) and torch.equal(a.actions[valid], b.actions[valid])
        assert torch.equal(a.rewards, b.rewards) and torch.equal(a.task_reward, b.task_reward)
        for name, total in a.component_sums.items():
            assert torch.equal(total, b.component_sums[name]), name
        for name, per_tick in a.components.items():
            assert torch.equal(per_tick[valid], b.components[name][valid]), name
        after = int(valid.any(1).nonzero().max()) + 2  # the tick after the one that saw the last episode end
        assert not a.obs[after:].any() and not a.actions[after:].any()
        padded += a.obs.shape[0] - after
    assert padded > 0  # some batch ended before its clock's stop
    assert torch.equal(run_a.engine.generator.get_state(), run_b.engine.generator.get_state())
    assert torch.equal(run_a.task.generator.get_state(), run_b.task.generator.get_state())
    for p, q in zip(run_a.engine.population.parameters(), run_b.engine.population.parameters(), strict=True):
        assert torch.equal(p, q)
