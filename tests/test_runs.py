"""Seeds as a batch dimension (narla.runs): each run in a batch is the same seed trained alone, bit for bit."""

import math
from dataclasses import replace

import pytest
import torch

from narla import scenario as scenarios
from narla.runs import RunsTrainer, batchable
from narla.sweep import load_record, make_trials, run_sweep
from narla.training import Trainer

SMALL = {
    "name": "small",
    "task": {"id": "cartpole", "num_envs": 1, "max_episode_steps": 40},
    "network": {"builder": "layered", "hidden_layers": 2, "width": 4, "connectivity": "band"},
    "neuron": {"hidden": [8], "activation": "leaky_relu_0.3", "head": "softmax"},
    "learning": {"lr": 0.01},
    "rewards": {
        "terms": ["task", "paper_firing", "paper_sparsity", "paper_prediction", "paper_trace"],
        "phases": [{"until_episode": 4, "terms": ["paper_firing", "paper_sparsity", "paper_prediction",
                                                  "paper_trace"]}, {"terms": "all"}],
    },
    "training": {"max_episodes": 12, "solve_window": 3, "solve_threshold": 22, "solve_after": 5},
}


@pytest.mark.cpu_only("lone and batched runs draw alike on a CPU: one rand stream, episodes end on their tick")
@pytest.mark.parametrize("num_envs", [1, 2])
# softmax: the paper's neurons; None: one-logit Bernoulli neurons (both take the short stage path); cooperation:
# neurons that read context, whose ticks take the general path
@pytest.mark.parametrize("head", ["softmax", None, "cooperation"])
def test_a_run_in_a_batch_equals_the_same_seed_trained_alone_bit_for_bit(num_envs, head):
    neuron = {k: v for k, v in SMALL["neuron"].items() if k != "head" or head == "softmax"}
    if head == "cooperation":
        neuron["amtf"] = "cooperation"
    base = scenarios.from_dict({**SMALL, "task": {**SMALL["task"], "num_envs": num_envs}, "neuron": neuron})
    seeds = [0, 1, 2]
    batch = RunsTrainer([replace(base, seed=s) for s in seeds])
    summaries = batch.train()
    if num_envs == 1:
        assert len({s["episodes"] for s in summaries}) > 1  # runs stopped at different episodes: the batch shrank
    for r, seed in enumerate(seeds):
        alone = Trainer(replace(base, seed=seed), progress=False)
        summary = alone.train()
        assert batch.returns[r] == alone.returns
        assert summaries[r]["solved_at"] == summary["solved_at"]
        for name, p in alone.run.engine.population.named_parameters():
            assert torch.equal(batch.final_parameters[r][name], p.detach()), name


def test_a_runs_update_reaches_the_parameters_the_ticks_read():
    base = scenarios.from_dict(SMALL)
    batch = RunsTrainer([replace(base, seed=s) for s in (0, 1, 2)])
    engine = batch.engine
    lone = batch.lone[1].engine.population
    with torch.no_grad():
        for p in lone.parameters():
            p.add_(1.0)
    engine.refresh(1)
    for name, p in engine.population.named_parameters():
        assert torch.equal(p.detach()[engine._positions[1]], dict(lone.named_parameters())[name].detach()), name


def test_a_stopped_run_leaves_the_batch_and_its_rows_with_it():
    base = scenarios.from_dict(SMALL)
    batch = RunsTrainer([replace(base, seed=s) for s in (0, 1, 2)])
    engine = batch.engine
    engine.keep_runs([2])
    assert engine.num_runs == 1
    for name, p in engine.population.named_parameters():
        assert torch.equal(p.detach(), dict(batch.lone[2].engine.population.named_parameters())[name].detach())


@pytest.mark.cpu_only("episodes end on the tick they end only on the CPU")
def test_runs_play_on_their_own_episode_clocks_so_a_batch_costs_its_longest_run():
    base = scenarios.from_dict(SMALL)
    batch = RunsTrainer([replace(base, seed=s) for s in (0, 1, 2)])
    batch.train()
    # On the CPU a run's episode ends on the tick its one copy finishes (a return of x is x ticks), and the run
    # starts its next episode on the tick after: a run costs the sum of its episodes, the batch its longest run.
    per_run = [sum(int(x) for x in r) for r in batch.returns]
    assert batch.ticks_played == max(per_run) < sum(per_run)
    assert any(int(x) % 16 for r in batch.returns for x in r)  # episodes that end inside a 16-tick block


@pytest.mark.cpu_only("compares the CPU's every-tick ending with the 16-tick clock")
def test_ending_episodes_on_the_16_tick_clock_as_on_a_gpu_changes_the_ticks_played_but_no_run():
    base = scenarios.from_dict(SMALL)
    every_tick = RunsTrainer([replace(base, seed=s) for s in (0, 1, 2)])
    every_tick.train()
    clocked = RunsTrainer([replace(base, seed=s) for s in (0, 1, 2)])
    clocked.end_every_tick = False  # what a GPU does: a run's episode ends at the first 16-tick check after it
    clocked.train()
    limit = base.task.max_episode_steps
    per_run = [sum(min(limit, math.ceil(x / 16) * 16) for x in r) for r in clocked.returns]
    assert clocked.ticks_played == max(per_run) > every_tick.ticks_played
    assert clocked.returns == every_tick.returns
    for a, b in zip(clocked.final_parameters, every_tick.final_parameters, strict=True):
        assert all(torch.equal(a[name], b[name]) for name in a)


def test_batchable_says_why_a_scenario_cannot_batch():
    es = scenarios.from_dict({**SMALL, "learning": {"rule": "es", "population": 1}, "task": {"num_envs": 2}})
    assert "reinforce" in batchable(es)
    assert batchable(scenarios.from_dict(SMALL)) is None
    normalized = scenarios.from_dict({**SMALL, "task": {**SMALL["task"], "options": {"normalize_obs": True}}})
    assert "task.options.normalize_obs" in batchable(normalized)
    tested = scenarios.from_dict({**SMALL, "training": {**SMALL["training"], "test_every": 2}})
    assert "training.test_every" in batchable(tested)
    with pytest.raises(scenarios.ScenarioError, match="equal except for their seed"):
        RunsTrainer([scenarios.from_dict(SMALL), replace(scenarios.from_dict(SMALL), name="other")])


def test_narla_sweep_trains_the_seeds_of_a_cell_as_one_batch(tmp_path):
    import yaml

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "training": {"max_episodes": 3}}))
    trials = make_trials([path], {}, [0, 1], tmp_path / "out")
    records = run_sweep(trials, workers=1, progress=False)
    assert [r["status"] for r in records] == ["max_episodes", "max_episodes"]
    import json

    for t in trials:
        summary = json.loads((t.dir / "summary.json").read_text())
        assert summary["batched_runs"] == 2 and "cpu_capability" in summary["machine"]
        assert load_record(t)["episodes"] == 3


def test_a_paused_and_resumed_batch_equals_the_uninterrupted_batch_bit_for_bit(tmp_path):
    import csv

    base = scenarios.from_dict(SMALL)
    seeds = [0, 1, 2]
    whole = RunsTrainer([replace(base, seed=s) for s in seeds], [tmp_path / "whole" / f"s{s}" for s in seeds])
    whole.train()
    checkpoint = tmp_path / "paused" / "batch.pt"
    dirs = {s: tmp_path / "paused" / f"s{s}" for s in seeds}
    going, calls = list(seeds), 0
    while going:  # a cap of ~0 s pauses the batch after every episode
        trainer = RunsTrainer([replace(base, seed=s) for s in going], [dirs[s] for s in going],
                              max_wall_s=1e-9, checkpoint=checkpoint)
        summaries = trainer.train()
        going = [s["seed"] for s in summaries if s["status"] == "paused"]
        assert trainer.checkpoint_seeds() == (going or None)
        calls += 1
    assert calls > 5
    for r, s in enumerate(seeds):
        def rows(path):
            with open(path / "episodes.csv", newline="") as f:
                return [{k: v for k, v in row.items() if k != "wall_clock"} for row in csv.DictReader(f)]

        assert rows(dirs[s]) == rows(tmp_path / "whole" / f"s{s}")
        assert len(rows(dirs[s])) == len(whole.returns[r])


def test_a_batch_checkpointing_between_every_episode_trains_as_the_uninterrupted_one(tmp_path):
    base = scenarios.from_dict(SMALL)
    seeds = [0, 1, 2]
    whole = RunsTrainer([replace(base, seed=s) for s in seeds])
    whole.train()
    drained = RunsTrainer([replace(base, seed=s) for s in seeds], checkpoint=tmp_path / "batch.pt",
                          checkpoint_every_s=0.0)  # every run waits for the others at every episode's end
    drained.train()
    assert drained.returns == whole.returns
    assert drained.ticks_played > whole.ticks_played  # the waits cost ticks, not results
    assert not (tmp_path / "batch.pt").exists()  # all runs ended: nothing left to resume


def test_a_checkpoint_of_other_seeds_is_refused_with_the_seeds_it_holds(tmp_path):
    base = scenarios.from_dict(SMALL)
    checkpoint = tmp_path / "batch.pt"
    RunsTrainer([replace(base, seed=s) for s in (0, 1)], max_wall_s=1e-9, checkpoint=checkpoint).train()
    with pytest.raises(scenarios.ScenarioError, match=r"pauses seeds \[0, 1\]"):
        RunsTrainer([replace(base, seed=s) for s in (0, 2)], checkpoint=checkpoint).train()


def test_a_checkpoint_written_before_a_scenario_field_existed_still_resumes(tmp_path):
    base = scenarios.from_dict(SMALL)
    checkpoint = tmp_path / "batch.pt"
    RunsTrainer([replace(base, seed=s) for s in (0, 1)], max_wall_s=1e-9, checkpoint=checkpoint).train()
    state = torch.load(checkpoint, weights_only=False)
    del state["scenario"]["imports"], state["scenario"]["training"]["log"]  # as an older narla wrote it
    torch.save(state, checkpoint)
    summaries = RunsTrainer([replace(base, seed=s) for s in (0, 1)], checkpoint=checkpoint).train()
    assert all(s["status"] in ("solved", "max_episodes") for s in summaries)


def test_a_sweep_resumes_a_paused_batch_even_when_one_seed_is_left(tmp_path):
    import yaml

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    whole = RunsTrainer([replace(scenarios.from_dict(SMALL), seed=s) for s in (0, 1, 2)])
    whole.train()
    assert len({len(r) for r in whole.returns}) > 1  # the seeds stop at different episodes
    trials = make_trials([path], {}, [0, 1, 2], tmp_path / "out", ["training.max_wall_s=0.000001"])
    for _ in range(40):  # a cap of ~0 s: every call plays one episode, then pauses what is left
        records = run_sweep(trials, workers=1, progress=False)
        assert not any(r["status"] == "time_cap" for r in records)  # a lone seed left is paused, not cut off
        if not any(r["status"] == "paused" for r in records):
            break
    assert [r["episodes"] for r in records] == [len(r) for r in whole.returns]


def test_a_lone_seed_under_a_time_cap_is_paused_and_resumed_not_cut_off(tmp_path):
    import yaml

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    alone = Trainer(replace(scenarios.from_dict(SMALL), seed=3), progress=False)
    alone.train()
    trials = make_trials([path], {}, [3], tmp_path / "out", ["training.max_wall_s=0.000001"])
    for _ in range(40):  # a cap of ~0 s: every call plays one episode, then pauses the batch of one
        (record,) = run_sweep(trials, workers=1, progress=False)
        assert record["status"] != "time_cap"
        if record["status"] != "paused":
            break
    assert record["episodes"] == len(alone.returns)


def test_a_custom_reward_keeps_its_seeds_out_of_a_batch():
    from narla.rewards import register_reward

    @register_reward("test_runs_annealed")
    def annealed(state):  # reads state.episode, which a batch of runs at different episodes cannot give
        return torch.full_like(state.spikes, 1.0 / (1 + state.episode))

    custom = scenarios.from_dict({**SMALL, "rewards": ["task", "test_runs_annealed"]})
    assert "rewards.terms[1] 'test_runs_annealed'" in batchable(custom)
    dotted = scenarios.from_dict({**SMALL, "rewards": ["task", {"name": "math:floor"}]})
    assert "rewards.terms[1] 'math:floor'" in batchable(dotted)


def test_a_checkpoint_continues_the_seeds_it_holds_and_starts_the_others_afresh(tmp_path):
    base = scenarios.from_dict(SMALL)
    whole = RunsTrainer([replace(base, seed=s) for s in (0, 1)])
    whole.train()
    checkpoint = tmp_path / "batch.pt"
    RunsTrainer([replace(base, seed=0)], max_wall_s=1e-9, checkpoint=checkpoint).train()  # seed 0 paused
    assert RunsTrainer([replace(base, seed=0)], checkpoint=checkpoint).checkpoint_seeds() == [0]
    both = RunsTrainer([replace(base, seed=s) for s in (0, 1)], checkpoint=checkpoint)
    assert both.can_resume()
    both.train()
    assert both.returns == whole.returns


def test_a_run_that_finished_keeps_its_status_when_another_run_fails_on_the_same_tick(monkeypatch):
    learn = RunsTrainer._learn

    def failing(self, pos, *args):
        if self.scenarios[self.active[pos]].seed == 1:
            raise RuntimeError("run 1's update failed")
        return learn(self, pos, *args)

    monkeypatch.setattr(RunsTrainer, "_learn", failing)
    base = scenarios.from_dict({**SMALL, "task": {**SMALL["task"], "max_episode_steps": 16},
                                "training": {"max_episodes": 1}})
    trainer = RunsTrainer([replace(base, seed=s) for s in (0, 1)])
    with pytest.raises(RuntimeError, match="run 1's update failed"):
        trainer.train()
    assert trainer.summaries[0]["status"] == "max_episodes"
    assert trainer.summaries[1]["status"].startswith("failed: RuntimeError")
