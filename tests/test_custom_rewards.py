"""Custom rewards as a user writes them: rewards that see the task, modules named by `imports:`, runs that replay
from anywhere, and one clear message when a reward fails."""

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from narla import scenario as scenarios
from narla.cli import main as cli_main
from narla.rewards import NetworkState
from narla.rollout import collect
from narla.training import Trainer, build

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = {
    "name": "user",
    "task": {"id": "cartpole", "num_envs": 4, "max_episode_steps": 60},
    "network": {"builder": "layered", "hidden_layers": 1, "width": 4},
    "training": {"max_episodes": 8},
}

LEAN_RIGHT = '''
import torch


def lean_right(state, pay: float = 1.0):
    """Pay a neuron for firing while the pole leans right (observation 2 is the pole angle)."""
    leaning = (state.obs[:, 2] > 0).float().unsqueeze(1)  # [B, 1]
    return pay * leaning * state.spikes
'''

PERSIST = '''
import torch

from narla.rewards import register_reward


@register_reward("persist_test")
def persist(state, scale: float = 0.5):
    """Pay a neuron for doing what it did on the tick before."""
    return scale * (state.spikes == state.prev_spikes).float()
'''


def _module(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(text))
    return folder


def test_a_reward_on_the_pole_angle_named_by_dotted_path_reaches_the_neurons(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_module(tmp_path, "lean_reward_mod", LEAN_RIGHT)))
    data = {**SMALL, "rewards": {"terms": ["task", {"name": "lean_reward_mod:lean_right", "label": "lean"}]}}
    scenario = scenarios.from_dict(data)
    run = build(scenario)
    rollout = collect(run.engine, run.task, run.scheme, per_tick_components=True)
    leaning = (rollout.obs[..., 2] > 0).float().unsqueeze(-1)  # [T, B, 1]
    expected = leaning * rollout.spikes * rollout.valid.float().unsqueeze(-1)
    assert torch.equal(rollout.components["lean"], expected)
    assert expected.sum() > 0 and (leaning == 0).any()  # paid on some ticks, not on others
    Trainer(scenario, tmp_path / "run", progress=False).train()
    with open(tmp_path / "run" / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(float(r["reward_lean_L1"]) > 0 for r in rows)  # logged per layer, every episode


def test_network_state_gives_each_neuron_its_feedforward_inputs():
    run = build(scenarios.from_dict(SMALL))
    seen = {}

    def spy(state: NetworkState) -> torch.Tensor:
        seen["state"] = state
        return torch.zeros_like(state.spikes)

    run.scheme.terms[0].fn = spy
    collect(run.engine, run.task, run.scheme)
    state = seen["state"]
    w = state.wiring
    b = state.spikes.shape[0]
    for i in range(w.num_neurons):
        for f in range(w.ff_idx.shape[1]):
            want = state.activity[w.ff_idx[i, f]] * w.ff_mask[i, f]
            assert torch.equal(state.inputs[:, i, f], want.expand(b))
    assert state.obs.shape == (b, 4) and state.next_obs.shape == (b, 4) and state.task_action.shape == (b,)


def test_a_reward_that_raises_stops_the_run_with_one_message_naming_it_and_keeps_the_results(
    tmp_path, monkeypatch, capsys
):
    _module(tmp_path, "failing_reward_mod", '''
        import torch

        def late_failure(state):
            if state.episode >= 8:
                raise KeyError("no such sensor")
            return torch.zeros_like(state.spikes)
        ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "training": {"max_episodes": 40},
                                    "rewards": {"terms": ["task", {"name": "failing_reward_mod:late_failure"}]}}))
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "reward 'late_failure' (failing_reward_mod:late_failure) raised KeyError" in err and "Traceback" not in err
    with open(tmp_path / "out" / "episodes.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 8  # two batches of 4 were written before the failure
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"].startswith("failed")


def _narla(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``narla ARGS`` in a new process in ``cwd``, whose ``PYTHONPATH`` keeps only absolute folders outside the
    test's own (where a checkout or carried packages may lie): the test's modules must be found without it."""
    tmp = cwd.parent.resolve()
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and os.path.isabs(p) and not Path(p).resolve().is_relative_to(tmp)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    return subprocess.run([sys.executable, "-c", "import sys; from narla.cli import main; sys.exit(main())", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_registered_reward_runs_through_imports_reruns_from_its_scenario_and_replays_from_anywhere(tmp_path):
    project = _module(tmp_path / "project", "persist_rewards", PERSIST)
    data = {**SMALL, "imports": ["persist_rewards"], "rewards": {"terms": ["task", {"name": "persist_test"}]}}
    (project / "s.yaml").write_text(yaml.safe_dump(data))
    first = _narla(["run", "s.yaml", "--out", "first", "--quiet"], project)
    assert first.returncode == 0, first.stderr
    saved = yaml.safe_load((project / "first" / "scenario.yaml").read_text())
    assert saved["imports"] == [f"persist_rewards@{project.resolve()}"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = _narla(["run", str(project / "first" / "scenario.yaml"), "--out", "again", "--quiet"], elsewhere)
    assert again.returncode == 0, again.stderr
    with open(project / "first" / "episodes.csv") as a, open(elsewhere / "again" / "episodes.csv") as b:
        returns = [[row["return"] for row in csv.DictReader(f)] for f in (a, b)]
    assert returns[0] == returns[1]  # the same run, re-run from its own scenario.yaml in another folder
    (project / "persist_rewards.py").unlink()  # replaying a policy needs no reward code
    replay = _narla(["eval", str(project / "first"), "--episodes", "3"], elsewhere)
    assert replay.returncode == 0, replay.stderr
    assert json.loads((project / "first" / "eval.json").read_text())["episodes"] == 3


def test_an_import_that_fails_names_the_field_and_the_module(tmp_path):
    bad = scenarios.from_dict({**SMALL, "imports": ["no_such_module_here"]})
    with pytest.raises(scenarios.ScenarioError, match=r"imports\[0\]: cannot import module 'no_such_module_here'"):
        build(bad)
    with pytest.raises(scenarios.ScenarioError, match=r"imports\[0\]: must be a module name"):
        scenarios.from_dict({**SMALL, "imports": ["not a module"]})


@pytest.mark.parametrize("task", ["cartpole", "swingup"])
def test_eval_writes_a_video_with_one_frame_per_step_of_the_episode(tmp_path, task):
    imageio = pytest.importorskip("imageio")
    pytest.importorskip("imageio_ffmpeg")
    from narla.evaluate import record_video

    data = {**SMALL, "task": {"id": task, "num_envs": 2, "max_episode_steps": 40}, "training": {"max_episodes": 2}}
    if task == "swingup":
        data = {**data, "neuron": {"output": {"motor": "rate"}}, "readout": {"kind": "value"}}
    Trainer(scenarios.from_dict(data), tmp_path / "run", progress=False).train()
    frames = record_video(tmp_path / "run", tmp_path / "episode.mp4", seed=3)
    assert 2 <= frames <= 41  # the start, then one frame per step of a (<= 40 step) episode
    video = imageio.mimread(tmp_path / "episode.mp4", memtest=False)
    assert len(video) == frames and video[0].shape == (240, 480, 3)
    assert video[0].std() > 0  # a picture, not a blank frame


def test_eval_without_the_video_extra_fails_before_writing_anything(tmp_path, monkeypatch, capsys):
    import importlib.util

    Trainer(scenarios.from_dict(SMALL), tmp_path / "run", progress=False).train()
    (tmp_path / "run" / "eval.json").write_text('{"kept": true}')
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imageio" else real(name, *a))
    code = cli_main(["eval", str(tmp_path / "run"), "--video", str(tmp_path / "v.mp4")])
    assert code == 2 and "narla[video]" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "eval.json").read_text()) == {"kept": True}


def test_the_readme_lists_every_network_state_field():
    text = README.read_text()
    section = text[text.index("## Rewards") : text.index("## PettingZoo views")]
    listed = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    fields = {f.name for f in dataclasses.fields(NetworkState)} | {"inputs"}
    assert listed == fields
