"""Checkpoints, `narla run --resume` and `narla eval`."""

import csv
import json

import pytest
import torch
import yaml

from narla.checkpoint import CHECKPOINT
from narla.cli import main
from narla.scenario import ScenarioError, from_dict
from narla.training import Trainer, resume

SMALL = {
    "name": "ck",
    "seed": 2,
    "task": {"id": "cartpole", "num_envs": 4},
    "network": {"builder": "layered", "layers": 2, "width": 5},
    "neuron": {"hidden": [16]},
    "learning": {"lr": 0.003},
    "training": {"max_episodes": 24, "checkpoint_every": 12, "stop_when_solved": False},
}


def scenario(**training):
    data = json.loads(json.dumps(SMALL))
    data["training"].update(training)
    return from_dict(data)


def csv_returns(path):
    with open(path, newline="") as f:
        return [(int(r["episode"]), float(r["return"])) for r in csv.DictReader(f)]


def test_checkpoint_then_resume_matches_a_straight_run(tmp_path):
    straight = Trainer(scenario(), tmp_path / "straight", progress=False)
    straight.train()

    first = Trainer(scenario(max_episodes=12), tmp_path / "split", progress=False)
    first.train()
    assert (tmp_path / "split" / CHECKPOINT).is_file()
    resumed = resume(tmp_path / "split", ["training.max_episodes=24"], progress=False)
    assert resumed.returns == first.returns
    resumed.train()

    assert resumed.returns == straight.returns
    for key, value in straight.run.engine.population.state_dict().items():
        assert torch.equal(value, resumed.run.engine.population.state_dict()[key]), key
    rows = csv_returns(tmp_path / "split" / "episodes.csv")
    assert rows == csv_returns(tmp_path / "straight" / "episodes.csv")
    assert [e for e, _ in rows] == list(range(1, 25))


def test_a_resumed_runs_summary_gives_the_wall_time_of_this_call_and_of_all_calls(tmp_path):
    Trainer(scenario(max_episodes=12), tmp_path, progress=False).train()
    before = json.loads((tmp_path / "summary.json").read_text())
    resume(tmp_path, ["training.max_episodes=24"], progress=False).train()
    after = json.loads((tmp_path / "summary.json").read_text())
    assert before["total_wall_time_s"] == before["wall_time_s"]
    assert after["total_wall_time_s"] == pytest.approx(before["total_wall_time_s"] + after["wall_time_s"], abs=0.01)


def test_resume_cuts_rows_written_after_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    Trainer(scenario(max_episodes=12), out, progress=False).train()
    with open(out / "episodes.csv", "a") as f:  # a crash after the checkpoint leaves extra rows behind
        f.write(f"13,{','.join(['0'] * (len(open(out / 'episodes.csv').readline().split(',')) - 1))}\n")
    trainer = resume(out, ["training.max_episodes=16"], progress=False)
    trainer.train()
    assert [e for e, _ in csv_returns(out / "episodes.csv")] == list(range(1, 17))


def test_checkpoints_are_written_every_k_episodes(tmp_path, monkeypatch):
    written = []
    original = Trainer.save_checkpoint

    def spy(self, wall_time_s=0.0):
        written.append(len(self.returns))
        original(self, wall_time_s)

    monkeypatch.setattr(Trainer, "save_checkpoint", spy)
    Trainer(scenario(max_episodes=20, checkpoint_every=8), tmp_path / "run", progress=False).train()
    assert written == [8, 16, 20]  # every 8 episodes (B = 4 divides 8), and at the end
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_cli_resume(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "training": {**SMALL["training"], "max_episodes": 8}}))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert main(["run", "--resume", str(out), "--set", "training.max_episodes=16", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["episodes"] == 16
    assert len(csv_returns(out / "episodes.csv")) == 16


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    data = {**SMALL, "training": {"max_episodes": 4}}
    Trainer(from_dict(data), tmp_path / "run", progress=False).train()
    with pytest.raises(ScenarioError, match="checkpoint_every"):
        resume(tmp_path / "run")
    assert main(["run", "--resume", str(tmp_path / "run")]) == 2
    assert "checkpoint.pt" in capsys.readouterr().err


def test_eval_replays_the_learned_policy(tmp_path, capsys):
    out = tmp_path / "run"
    Trainer(scenario(max_episodes=8), out, progress=False).train()
    assert main(["eval", str(out), "--episodes", "6"]) == 0
    stats = json.loads((out / "eval.json").read_text())
    assert stats["episodes"] == 6 and len(stats["returns"]) == 6
    assert stats["mean_return"] == pytest.approx(sum(stats["returns"]) / 6)
    assert main(["eval", str(out), "--episodes", "6"]) == 0
    assert json.loads((out / "eval.json").read_text())["returns"] == stats["returns"]  # seeded replay
    assert "mean return" in capsys.readouterr().out


def test_eval_distance_on_a_task_without_a_walker_is_a_clear_error_that_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    Trainer(scenario(max_episodes=4), out, progress=False).train()
    assert main(["eval", str(out), "--episodes", "2", "--distance"]) == 2
    assert "--distance: needs a PyBullet walker" in capsys.readouterr().err
    assert not (out / "eval.json").exists()


def _tests_csv(path):
    with open(path, newline="") as f:
        return [(int(r["update"]), int(r["episodes"]), float(r["test_mean"])) for r in csv.DictReader(f)]


def test_test_scores_are_logged_every_k_updates_and_survive_a_resume(tmp_path):
    straight = tmp_path / "straight"
    Trainer(scenario(test_every=2, test_episodes=3), straight, progress=False).train()
    rows = _tests_csv(straight / "tests.csv")
    assert [(u, e) for u, e, _ in rows] == [(2, 8), (4, 16), (6, 24)]
    assert all(1 <= m <= 500 for _, _, m in rows)

    split = tmp_path / "split"
    Trainer(scenario(test_every=2, test_episodes=3, max_episodes=12), split, progress=False).train()
    with open(split / "tests.csv", "a") as f:  # a row written after the checkpoint, before a crash
        f.write("4,16,1.0,0.0,9.9\n")
    resume(split, ["training.max_episodes=24"], progress=False).train()
    assert _tests_csv(split / "tests.csv") == rows


def test_a_policy_test_plays_the_mean_of_an_evolution_strategy_deterministically():
    from narla.evaluate import PolicyTest
    from narla.scenario import load
    from narla.training import build

    run = build(load("scenarios/swingup_cooperator.yaml", ["task.num_envs=4", "learning.population=2",
                                                           "task.max_episode_steps=50"]))
    tester = PolicyTest(run, 3, seed=5)
    first = tester()
    assert tester() == first  # same start states, no perturbation, deterministic rate neurons
    assert tester.engine.population is run.learner.model


def csv_lengths(path):
    with open(path, newline="") as f:
        return [int(float(r["length"])) for r in csv.DictReader(f)]


def test_a_run_stops_at_its_environment_step_budget_and_keeps_the_count_across_a_resume(tmp_path):
    out = tmp_path / "run"
    first = Trainer(scenario(max_episodes=1000, max_env_steps=150), out, progress=False)
    summary = first.train()
    lengths = csv_lengths(out / "episodes.csv")
    assert summary["status"] == "max_env_steps"
    assert summary["env_steps"] == sum(lengths) >= 150
    assert sum(lengths[:-4]) < 150  # it stopped after the first batch (4 copies) that reached the budget

    resumed = resume(out, ["training.max_env_steps=400"], progress=False)
    assert resumed.env_steps == summary["env_steps"]
    again = resumed.train()
    assert again["env_steps"] == sum(csv_lengths(out / "episodes.csv")) >= 400
