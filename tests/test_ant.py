"""The Ant task through the engine and the trainer (skipped without the `ant` extra: pip install 'narla[ant]')."""

import pytest
import torch

from narla.rollout import collect
from narla.scenario import load
from narla.training import Trainer, build

pytest.importorskip("pybullet_envs_gymnasium", reason="the Ant task needs the 'ant' extra: pip install 'narla[ant]'")

FAST = ["task.num_envs=2", "learning.population=2", "task.options={asynchronous: false}", "task.max_episode_steps=12"]


@pytest.mark.parametrize("name", ["ant_cooperator", "ant_attention"])
def test_ant_steps_through_the_engine_with_two_copies(name):
    run = build(load(f"scenarios/{name}.yaml", FAST))
    try:
        rollout = collect(run.engine, run.task, run.scheme)
    finally:
        run.task.close()
    assert rollout.obs.shape == (12, 2, 28)
    assert rollout.valid.all() and torch.isfinite(rollout.task_reward).all()
    assert run.task.normalizer.count == 2 * 14  # two resets (build, collect) + 12 steps, 2 copies


def test_ant_es_trains_checkpoints_and_restores_the_normalizer(tmp_path):
    overrides = [*FAST, "learning.rule=es", "learning.population=1", "training.max_episodes=4",
                 "training.checkpoint_every=2"]
    trainer = Trainer(load("scenarios/ant_cooperator.yaml", overrides), tmp_path / "run", progress=False)
    trainer.train()
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert torch.equal(saved["normalizer"]["mean"], trainer.run.task.normalizer.mean)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["episodes"] == 4 and checkpoint["normalizer"]["count"] > 0
    trainer.run.task.close()


def test_ant_study_reuses_a_cached_test_only_for_the_same_model_and_number_of_episodes(tmp_path, monkeypatch):
    import json

    import narla.evaluate
    from narla.analysis import ant

    (tmp_path / "summary.json").write_text(json.dumps({"episodes": 160}))
    cached = {"episodes_trained": 160, "plain": {"mean": 1.0, "std": 0.0, "returns": [1.0] * 10},
              "shuffled": {"mean": 1.0, "std": 0.0, "returns": [1.0] * 10}}
    (tmp_path / "test.json").write_text(json.dumps(cached))
    calls = []

    def fake_evaluate(run_dir, episodes, num_envs, shuffle):
        calls.append((episodes, shuffle))
        return {"mean_return": 2.0, "std_return": 0.0, "returns": [2.0] * episodes}

    monkeypatch.setattr(narla.evaluate, "evaluate", fake_evaluate)
    assert ant.test(tmp_path, 10) == cached and calls == []
    assert ant.test(tmp_path, 50)["plain"]["returns"] == [2.0] * 50 and calls == [(50, False), (50, True)]
