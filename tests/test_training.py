"""The trainer and `narla run`: learning, results directory, determinism, clear failures."""

import csv
import json
from pathlib import Path

import pytest
import torch

from narla.cli import main
from narla.rewards import RewardError, register_reward
from narla.scenario import ScenarioError, from_dict
from narla.training import Trainer, build

SMALL = {
    "name": "small",
    "task": {"id": "cartpole", "num_envs": 4},
    "network": {"builder": "layered", "layers": 1},
    "neuron": {"hidden": [32, 32]},
    "learning": {"lr": 0.003},
    "training": {"max_episodes": 240},
}


def scenario(**changes):
    data = json.loads(json.dumps(SMALL))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return from_dict(data)


def test_cartpole_mean_return_clearly_rises_with_task_reward():
    trainer = Trainer(scenario(seed=1), progress=False)
    trainer.train()
    first, last = trainer.returns[:40], trainer.returns[-40:]
    assert sum(last) / 40 > 2.5 * sum(first) / 40


def test_same_seed_gives_identical_returns_on_cpu():
    runs = []
    for _ in range(2):
        trainer = Trainer(scenario(seed=3, training__max_episodes=8, network={"layers": 2, "width": 5}), progress=False)
        trainer.train()
        runs.append(trainer.returns)
    assert runs[0] == runs[1]


def test_different_seeds_give_different_returns():
    runs = []
    for seed in (0, 1):
        trainer = Trainer(scenario(seed=seed, training__max_episodes=16), progress=False)
        trainer.train()
        runs.append(trainer.returns)
    assert runs[0] != runs[1]


def test_training_stops_at_the_solve_criterion():
    s = scenario(training={"max_episodes": 400, "solve_window": 4, "solve_threshold": 5.0})
    summary = Trainer(s, progress=False).train()
    assert summary["status"] == "solved" and summary["solved_at"] == 4 and summary["episodes"] == 4


def test_actor_critic_trains_with_per_neuron_critics():
    learning = {"rule": "actor_critic", "lr": 0.003}
    s = scenario(learning=learning, training__max_episodes=8, network={"layers": 2, "width": 5})
    trainer = Trainer(s, progress=False)
    summary = trainer.train()
    assert summary["episodes"] == 8
    assert trainer.run.engine.population.critic is not None


def test_delay_propagation_trains():
    s = scenario(propagation="delay", training__max_episodes=4, network={"layers": 3, "width": 4})
    assert Trainer(s, progress=False).train()["episodes"] == 4


def _adam_steps(trainer: Trainer) -> set[int]:
    return {int(state["step"]) for state in trainer.run.learner.optimizer.state.values()}


def test_a_reward_phase_switch_restarts_the_optimizer_state():
    phases = {"terms": ["task", "trace"], "phases": [{"until_episode": 8, "terms": ["trace"]}, {"terms": "all"}]}
    trainer = Trainer(scenario(rewards=phases, training__max_episodes=20), progress=False)
    trainer.train()
    assert _adam_steps(trainer) == {3}  # 5 updates of 4 episodes; the 2 before episode 8 are forgotten


def test_without_phases_the_optimizer_state_runs_on():
    trainer = Trainer(scenario(rewards=["task", "trace"], training__max_episodes=20), progress=False)
    trainer.train()
    assert _adam_steps(trainer) == {5}


def test_unknown_builder_parameter_names_the_field():
    with pytest.raises(ScenarioError, match=r"^network\.depth: unknown parameter of builder 'layered'"):
        build(scenario(network={"builder": "layered", "depth": 3}))


def test_unknown_builder_lists_allowed_builders():
    with pytest.raises(ScenarioError, match=r"^network\.builder: unknown builder 'grid'; allowed: layered"):
        build(scenario(network={"builder": "grid"}))


def test_user_builder_by_dotted_path_is_validated():
    with pytest.raises(ScenarioError, match="cannot import"):
        build(scenario(network={"builder": "no_such_module:graph"}))


def test_invalid_builder_argument_is_reported_by_its_dotted_path():
    with pytest.raises(ScenarioError, match=r"^network\.layers: must be an int >= 1, got 0$"):
        build(scenario(network={"builder": "layered", "layers": 0}))


@pytest.mark.parametrize("builder", ["random_sparse", "small_world"])
def test_a_builder_argument_without_a_default_is_required_by_its_dotted_path(builder):
    with pytest.raises(ScenarioError, match=rf"^network\.n_neurons: required by builder '{builder}'$"):
        build(scenario(network={"builder": builder}))


def test_a_builder_rule_across_arguments_is_reported_under_network():
    with pytest.raises(ScenarioError, match=r"^network: give exactly one of hidden_layers"):
        build(scenario(network={"builder": "layered", "width": 3}))


def test_unknown_task_is_reported_under_task():
    with pytest.raises(ScenarioError, match="^task: "):
        build(scenario(task={"id": "pong"}))


def test_readout_that_does_not_fit_the_task_is_reported():
    with pytest.raises(ScenarioError, match=r"readout.kind: 'rate' drives a continuous \(Box\) action"):
        build(scenario(readout={"kind": "rate"}))


@register_reward("always_nan")
def _always_nan(state):
    return torch.full_like(state.spikes, float("nan"))


def test_nan_reward_stops_training_naming_the_reward(tmp_path):
    s = scenario(rewards=["task", "always_nan"], training__max_episodes=8)
    with pytest.raises(RewardError, match="always_nan"):
        Trainer(s, tmp_path, progress=False).train()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"].startswith("failed")


def test_narla_run_writes_a_complete_results_directory(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: e2e\ntask: {num_envs: 2}\nneuron: {hidden: [16]}\ntraining: {max_episodes: 6}\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--seed", "5", "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} == {"scenario.yaml", "episodes.csv", "summary.json", "model.pt", "README.md"}
    rows = list(csv.DictReader((out / "episodes.csv").open()))
    assert [int(r["episode"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"return", "length", "wall_clock", "loss", "firing_L1", "reward_task_L1"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["episodes"] == 6 and summary["neuron_steps_per_s"] > 0
    assert "seed: 5" in (out / "scenario.yaml").read_text()


def test_a_runs_summary_names_the_machine_and_kernels_it_ran_on(tmp_path):
    from narla.results import machine

    path = tmp_path / "s.yaml"
    path.write_text("name: m\ntask: {num_envs: 2}\nneuron: {hidden: [8]}\ntraining: {max_episodes: 2}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    recorded = summary["machine"]
    assert recorded == machine(summary["device"])
    assert recorded["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert recorded["torch"] == torch.__version__


def test_narla_run_with_malformed_scenario_exits_nonzero_with_one_message(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nlearning: {lr: -1}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "narla: error: learning.lr: must be > 0, got -1"
    assert not (tmp_path / "out").exists()


def test_narla_run_with_bad_override_exits_nonzero(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\n")
    assert main(["run", str(path), "--set", "task.num_envs=zero", "--quiet"]) == 2
    assert "task.num_envs: must be an integer" in capsys.readouterr().err


def _readme_block(marker: str) -> str:
    from pathlib import Path

    text = (Path(__file__).parent.parent / "README.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_readme_custom_reward_example_is_the_shipped_example():
    from pathlib import Path

    root = Path(__file__).parent.parent
    assert _readme_block("custom-reward:python") == (root / "examples" / "custom_reward.py").read_text()
    assert _readme_block("custom-reward:yaml") == (root / "examples" / "custom_reward.yaml").read_text()


def test_readme_bio_all_example_is_the_table1_scheme():
    from pathlib import Path

    import yaml

    from narla.rewards import RewardScheme
    from narla.scenario import load

    def described(scheme: RewardScheme) -> list:
        def params(fn):
            return getattr(fn, "keywords", None) or {k: v for k, v in vars(fn).items() if not k.startswith("_")}

        terms = [
            (t.label, t.reward, t.weight, None if t.mask is None else t.mask.tolist(), params(t.fn))
            for t in scheme.terms
        ]
        phases = [(p.until_episode, p.terms) for p in scheme.phases]
        return [terms, phases, scheme.trace_decay, scheme.trace_init]

    run = build(load(Path(__file__).parent.parent / "scenarios" / "table1" / "paper" / "bio_all_L2.yaml"))
    readme = RewardScheme.from_config(yaml.safe_load(_readme_block("bio-all:yaml"))["rewards"], run.engine.wiring)
    assert described(readme) == described(run.scheme)


def test_readme_custom_reward_example_runs_and_logs_its_component(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)
    out = tmp_path / "out"
    args = ["run", "examples/custom_reward.yaml", "--set", "training.max_episodes=8", "--out", str(out), "--quiet"]
    assert main(args) == 0
    header = (out / "episodes.csv").read_text().splitlines()[0].split(",")
    assert "reward_agree_with_motor_L1" in header and "reward_agree_with_motor_L2" in header


def test_narla_run_refuses_to_overwrite_an_existing_results_directory(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nneuron: {hidden: [8]}\ntraining: {max_episodes: 2}\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = (out / "episodes.csv").read_text()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "episodes.csv").read_text() == before


@pytest.mark.parametrize("chunk", [1, 7, 16])
def test_chunked_re_evaluation_gives_the_same_gradient_as_all_ticks_at_once(chunk):
    from narla.rollout import collect
    from narla.scenario import load

    s = load(Path(__file__).parent / "context_net.yaml", ["task.num_envs=3", "task.max_episode_steps=40"])
    run = build(s)
    rollout = collect(run.engine, run.task, run.scheme)
    learner = run.learner
    params = learner.params
    learner.loss(rollout).backward()
    whole = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    learner.chunk_ticks = chunk
    total = sum(part.detach() for part in _backward_each(learner.chunk_losses(rollout)))
    assert total.item() == pytest.approx(learner.loss(rollout).item(), rel=1e-5)
    for g, p in zip(whole, params, strict=True):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("columns", [1, 5, 12])
def test_windows_of_valid_columns_hold_at_most_that_many_and_cover_every_column_once(columns):
    from narla.rollout import collect
    from narla.scenario import load

    s = load(Path(__file__).parent / "context_net.yaml", ["task.num_envs=4", "task.max_episode_steps=40",
                                                         f"learning.chunk_columns={columns}"])
    run = build(s)
    rollout = collect(run.engine, run.task, run.scheme)
    windows = run.learner.windows(rollout)
    covered = torch.zeros(rollout.valid.shape, dtype=torch.long)
    for start, end, copies in windows:
        assert int(rollout.valid[start:end, copies].sum()) <= columns
        covered[start:end, copies] += 1
    assert torch.equal(covered, torch.ones_like(covered))  # every tick of every copy, once
    assert [w[0] for w in windows] == sorted(w[0] for w in windows)
    assert len(windows) > 1


def test_a_tick_holding_more_valid_columns_than_a_window_is_cut_into_runs_of_copies():
    from narla.rollout import collect
    from narla.scenario import load

    s = load(Path(__file__).parent / "context_net.yaml", ["task.num_envs=4", "task.max_episode_steps=40",
                                                         "learning.chunk_columns=3"])
    run = build(s)
    rollout = collect(run.engine, run.task, run.scheme)
    first_tick = [w for w in run.learner.windows(rollout) if w[0] == 0]
    assert first_tick == [(0, 1, slice(0, 3)), (0, 1, slice(3, 4))]  # all four copies run at the first tick


@pytest.mark.parametrize("columns", [1, 9])
def test_re_evaluation_in_windows_of_valid_columns_gives_the_gradient_of_all_ticks_at_once(columns):
    from narla.rollout import collect
    from narla.scenario import load

    s = load(Path(__file__).parent / "context_net.yaml", ["task.num_envs=3", "task.max_episode_steps=40"])
    run = build(s)
    rollout = collect(run.engine, run.task, run.scheme)
    learner = run.learner
    learner.loss(rollout).backward()
    whole = [p.grad.clone() for p in learner.params]
    for p in learner.params:
        p.grad = None
    learner.chunk_columns = columns
    total = sum(part.detach() for part in _backward_each(learner.chunk_losses(rollout)))
    assert total.item() == pytest.approx(learner.loss(rollout).item(), rel=1e-5)
    for g, p in zip(whole, learner.params, strict=True):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)


@pytest.mark.cpu_only("hidden layers are kept only on the CPU")
def test_a_batch_within_one_window_of_columns_replays_the_kept_hidden_layer_and_learns_as_unchunked(monkeypatch):
    from narla.neurons import population

    replays = []
    replay = population._ReplayedLayer.apply
    monkeypatch.setattr(population._ReplayedLayer, "apply", lambda *a: replays.append(1) or replay(*a))
    runs = []
    for extra in ({}, {"learning__chunk_columns": 100_000}):
        s = scenario(seed=4, task={"id": "cartpole", "num_envs": 32}, training__max_episodes=96,
                     neuron={"hidden": [128, 8], "amtf": "feedforward"}, **extra)
        trainer = Trainer(s, progress=False)
        replays.clear()
        trainer.train()
        assert replays  # the update back-propagated through the kept layer
        runs.append(dict(trainer.run.engine.population.named_parameters()))
    for name, p in runs[0].items():
        assert torch.equal(p, runs[1][name]), name


def test_chunk_ticks_and_chunk_columns_together_are_refused():
    from narla.scenario import load

    with pytest.raises(ScenarioError, match="^learning.chunk_columns: set it or learning.chunk_ticks, not both"):
        load(Path(__file__).parent / "context_net.yaml", ["learning.chunk_ticks=4", "learning.chunk_columns=8"])


def _backward_each(parts):
    for part in parts:
        part.backward()
        yield part


def test_a_run_with_chunked_updates_learns_what_an_unchunked_run_learns():
    from narla.scenario import load

    path = Path(__file__).parent / "context_net.yaml"
    runs = []
    for extra in ([], ["learning.chunk_ticks=5"]):
        trainer = Trainer(load(path, ["task.num_envs=2", "training.max_episodes=2", *extra]), progress=False)
        trainer.train()
        runs.append(dict(trainer.run.engine.population.named_parameters()))
    for name, p in runs[0].items():
        assert torch.allclose(p, runs[1][name], rtol=1e-4, atol=1e-6), name


def _trained_run(tmp_path: Path) -> Path:
    """A short run of SMALL with its results (model.pt) in ``tmp_path / "source"``."""
    out = tmp_path / "source"
    Trainer(scenario(seed=5, training__max_episodes=8), out, progress=False).train()
    return out


def test_init_from_starts_from_the_earlier_runs_parameters(tmp_path):
    source = _trained_run(tmp_path)
    saved = torch.load(source / "model.pt", weights_only=True)["population"]
    run = build(scenario(seed=9, training__init_from=str(source)))
    fresh = build(scenario(seed=9))
    for name, value in run.engine.population.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert not torch.equal(fresh.engine.population.policy.weights[0], saved["policy.weights.0"])


def test_init_from_a_different_network_names_the_field(tmp_path):
    source = _trained_run(tmp_path)
    with pytest.raises(ScenarioError, match="training.init_from: the parameters in .* do not fit this network"):
        build(scenario(training__init_from=str(source), neuron={"hidden": [16, 16]}))


def test_init_from_a_directory_without_a_model_names_the_field(tmp_path):
    with pytest.raises(ScenarioError, match="training.init_from: .* holds neither model.pt nor checkpoint.pt"):
        build(scenario(training__init_from=str(tmp_path)))


def test_a_resumed_run_no_longer_needs_its_init_from_source(tmp_path):
    import shutil

    from narla.training import resume

    source = _trained_run(tmp_path)
    warm = scenario(seed=9, training__init_from=str(source), training__max_episodes=8, training__checkpoint_every=4)
    Trainer(warm, tmp_path / "warm", progress=False).train()
    shutil.rmtree(source)
    resumed = resume(tmp_path / "warm", ["training.max_episodes=12"], progress=False)
    resumed.train()
    assert len(resumed.returns) == 12


@pytest.mark.slow  # three fresh processes, about 10 s
def test_the_kernel_paths_example_trains_one_seed_under_each_kernel_setting(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from examples.kernel_paths import ARMS

    path = tmp_path / "s.yaml"
    path.write_text("name: k\ntask: {num_envs: 1}\nneuron: {hidden: [8]}\n")
    script = Path(__file__).resolve().parents[1] / "examples" / "kernel_paths.py"
    out = subprocess.run([sys.executable, str(script), str(path), "--episodes", "3"], capture_output=True, text=True,
                         check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 1 + len(ARMS)
    assert lines[1].startswith("  default: same returns for 3 episodes")
