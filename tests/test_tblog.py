"""TensorBoard logging beside the CSV: written during training and read back."""

import csv

import pytest

from narla import scenario as scenarios
from narla.training import Trainer

SMALL = {
    "name": "board",
    "task": {"id": "cartpole", "num_envs": 4, "max_episode_steps": 50},
    "network": {"builder": "layered", "hidden_layers": 1, "width": 5},
    "rewards": ["task", "activity"],
    "training": {"max_episodes": 12, "log": ["csv", "tensorboard"], "test_every": 1, "test_episodes": 2},
}


def test_tensorboard_scalars_are_written_and_read_back_equal_to_the_csv(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(scenarios.from_dict(SMALL), tmp_path / "run", progress=False).train()
    board = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"return/batch_mean", "return/window_mean", "train/loss", "episode/length", "firing/L1", "firing/L2",
            "reward/task/L1", "reward/activity/L2", "test/mean", "test/std"} <= tags
    with open(tmp_path / "run" / "episodes.csv", newline="") as f:
        returns = [float(r["return"]) for r in csv.DictReader(f)]
    batch_means = [sum(returns[i : i + 4]) / 4 for i in range(0, 12, 4)]
    points = board.Scalars("return/batch_mean")
    assert [p.step for p in points] == [4, 8, 12]
    assert [p.value for p in points] == pytest.approx(batch_means)


@pytest.mark.parametrize("log, message", [
    (["csv", "wandb"], r"training.log\[1\]: 'wandb' is not allowed; allowed: csv, tensorboard"),
    (["tensorboard"], r"training.log: must be a list that includes csv"),
])
def test_an_unknown_or_incomplete_log_list_names_the_field(log, message):
    with pytest.raises(scenarios.ScenarioError, match=message):
        scenarios.from_dict({**SMALL, "training": {"log": log}})
