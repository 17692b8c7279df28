"""Looking at runs without writing code: narla plot, narla record and per-neuron logs."""

import csv

import numpy as np
import pytest

from narla import scenario as scenarios
from narla.cli import main as cli_main
from narla.sweep import make_trials, run_sweep
from narla.training import Trainer

SMALL = {
    "name": "look",
    "task": {"id": "cartpole", "num_envs": 4, "max_episode_steps": 50},
    "network": {"builder": "layered", "hidden_layers": 1, "width": 5},
    "rewards": ["task", "activity"],
    "training": {"max_episodes": 12, "log_neurons": True, "test_every": 1, "test_episodes": 2},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("look") / "run"
    Trainer(scenarios.from_dict(SMALL), out, progress=False).train()
    return out


def test_log_neurons_writes_each_neurons_firing_and_return_per_episode(run_dir):
    with open(run_dir / "neurons.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(run_dir / "episodes.csv", newline="") as f:
        episodes = list(csv.DictReader(f))
    assert [int(r["episode"]) for r in rows] == list(range(1, 13))
    names = [k[len("fire:"):] for k in rows[0] if k.startswith("fire:")]
    assert len(names) == 6 and all(f"return:{n}" in rows[0] for n in names)
    hidden = [n for n in names if n != "motor_0"]
    for row, episode in zip(rows, episodes, strict=True):  # the per-layer log is the mean of the per-neuron one
        mean = sum(float(row[f"fire:{n}"]) for n in hidden) / len(hidden)
        assert mean == pytest.approx(float(episode["firing_L1"]), abs=1e-6)


def test_record_saves_spikes_rewards_per_component_and_observations(run_dir, tmp_path):
    assert cli_main(["record", str(run_dir), "--episodes", "3", "--out", str(tmp_path / "r.npz")]) == 0
    rec = np.load(tmp_path / "r.npz")
    e, t, n = rec["spikes"].shape
    assert (e, n) == (3, 6) and rec["obs"].shape == (3, t, 4) and rec["length"].max() == t
    assert list(rec["components"]) == ["task", "activity"]
    total = rec["reward_task"] + rec["reward_activity"]
    assert np.allclose(total, rec["reward"])
    for i, length in enumerate(rec["length"]):  # the task pays 1 per real tick, nothing after the episode
        assert rec["task_reward"][i, :length].sum() == length and rec["task_reward"][i, length:].sum() == 0


def test_plot_of_a_run_writes_its_learning_curve_and_a_raster(run_dir, tmp_path):
    assert cli_main(["plot", str(run_dir), "--out", str(tmp_path)]) == 0
    for name in ("learning_curve.png", "raster.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_plot_of_a_sweep_writes_one_figure_with_a_panel_per_cell(tmp_path):
    import yaml

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "training": {"max_episodes": 8}}))
    trials = make_trials([path], {"learning.lr": [0.01, 0.001]}, [0, 1], tmp_path / "sweep")
    run_sweep(trials, workers=1, progress=False)
    assert cli_main(["plot", str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "plots" / "sweep_curves.png").stat().st_size > 5000


def test_plot_of_a_folder_without_runs_is_one_clear_error(tmp_path, capsys):
    assert cli_main(["plot", str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_a_results_directory_explains_every_file_in_it(run_dir):
    from narla.results import FILES

    index = (run_dir / "README.md").read_text()
    present = [p.name for p in run_dir.iterdir() if p.name != "README.md"]
    assert present and all(f"`{name}`" in index for name in present)
    assert all(f"`{name}`" in index for name in FILES)
