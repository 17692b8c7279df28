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


def test_file_outputs_go_into_new_folders_as_they_are_named(run_dir, tmp_path):
    assert cli_main(["record", str(run_dir), "--out", str(tmp_path / "new" / "r.npz")]) == 0
    assert cli_main(["eval", str(run_dir), "--episodes", "1", "--json", str(tmp_path / "other" / "e.json")]) == 0
    assert cli_main(["schema", "--out", str(tmp_path / "third" / "s.json")]) == 0
    assert all((tmp_path / p).is_file() for p in ("new/r.npz", "other/e.json", "third/s.json"))


@pytest.mark.parametrize("argv", [["record", "{run}", "--out", "{tmp}"], ["eval", "{run}", "--json", "{tmp}"],
                                  ["schema", "--out", "{tmp}"]])
def test_a_folder_given_where_a_file_goes_is_one_message_and_nothing_is_written(run_dir, tmp_path, capsys, argv):
    before = sorted(tmp_path.parent.iterdir())
    argv = [a.format(run=run_dir, tmp=tmp_path) for a in argv]
    assert cli_main(argv) == 2
    assert f"'{tmp_path}': is a folder; give a file name" in capsys.readouterr().err
    assert sorted(tmp_path.parent.iterdir()) == before and not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["run", "scenarios/cartpole_1layer.yaml", "--out", "{file}"],
                                  ["analyze", "{run}", "--out", "{file}"], ["plot", "{run}", "--out", "{file}"]])
def test_a_file_given_where_a_folder_goes_is_one_message(run_dir, tmp_path, capsys, argv):
    (tmp_path / "a_file").write_text("mine")
    assert cli_main([a.format(run=run_dir, file=tmp_path / "a_file") for a in argv]) == 2
    assert "a_file': is a file; give a folder" in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "mine"


def test_eval_refuses_a_negative_count_of_noise_features(run_dir, capsys):
    assert cli_main(["eval", str(run_dir), "--noise-features", "-1"]) == 2
    assert "--noise-features: must be >= 0, got -1" in capsys.readouterr().err


def test_eval_with_noise_features_on_a_network_with_per_input_parameters_is_one_short_message(tmp_path, capsys):
    cooperator = {"name": "coop", "task": {"id": "cartpole", "num_envs": 4, "max_episode_steps": 10},
                  "network": {"builder": "cooperator", "latent": 4, "msg_dim": 4, "state_dim": 2, "pos_dim": 2},
                  "readout": {"kind": "value"}, "learning": {"rule": "cma_es", "population": 2, "sigma": 0.1},
                  "training": {"max_episodes": 4}}
    Trainer(scenarios.from_dict(cooperator), tmp_path / "coop", progress=False).train()
    assert cli_main(["eval", str(tmp_path / "coop"), "--episodes", "1", "--noise-features", "2"]) == 2
    said = capsys.readouterr().err
    assert "--noise-features: this network's parameters depend on its number of inputs (context_weight" in said
    assert said.count("\n") == 1 and "size mismatch" not in said


def test_a_command_that_fails_leaves_no_folder_for_its_output(tmp_path, capsys):
    assert cli_main(["eval", str(tmp_path / "no_run"), "--json", str(tmp_path / "new" / "e.json")]) == 2
    assert cli_main(["record", str(tmp_path / "no_run"), "--out", str(tmp_path / "other" / "r.npz")]) == 2
    assert not (tmp_path / "new").exists() and not (tmp_path / "other").exists()


def test_an_output_under_a_file_is_one_message(tmp_path, capsys):
    (tmp_path / "a_file").write_text("mine")
    assert cli_main(["schema", "--out", str(tmp_path / "a_file" / "s.json")]) == 2
    assert "a_file/s.json': a part of its folder is a file" in capsys.readouterr().err
