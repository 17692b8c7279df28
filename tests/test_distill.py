"""The PPO teacher and DAgger distillation into whole narla networks (Ant parts skipped without the `ant` extra)."""

import importlib.util
import math
import shutil
import types

import pytest
import torch

from narla.learning.distill import DistillConfig, Student, distill, require_cpu
from narla.learning.ppo import PPOConfig, ReturnScaler, TeacherPolicy, load_teacher, train_teacher
from narla.scenario import load
from narla.training import build

ANT = ["device=cpu", "task.num_envs=2", "learning.population=2",
       "task.options={asynchronous: false, normalize_obs: true}", "task.max_episode_steps=12"]
needs_ant = pytest.mark.skipif(
    importlib.util.find_spec("pybullet_envs_gymnasium") is None,
    reason="the Ant task needs the 'ant' extra: pip install 'narla[ant]'",
)


def test_act_whole_gives_the_values_of_the_acting_tick_with_gradient():
    run = build(load("scenarios/cartpole_cooperator.yaml", ["device=cpu", "task.num_envs=4", "learning.population=2"]),
                learner=False)
    obs = torch.randn(4, run.task.obs_dim)
    run.engine.reset_memory(4)
    memory = run.engine.memory.clone()
    _, ticked = run.engine.tick(obs, torch.zeros(1))
    values, new_memory = run.engine.act_whole(obs, memory)
    assert torch.equal(values, ticked) and torch.equal(new_memory, run.engine.memory)
    assert values.requires_grad


@needs_ant
def test_act_rates_gives_the_deterministic_tick_of_a_rate_network_with_gradient():
    run = build(load("scenarios/ant_layered.yaml", ANT), learner=False)
    run.engine.explore = False
    obs = torch.randn(2, run.task.obs_dim)
    prev = torch.zeros(run.wiring.num_sensors + run.wiring.num_neurons, 2)
    act, _ = run.engine.tick(obs, prev)
    differentiable = run.engine.act_rates(obs, prev)
    run.task.close()
    assert torch.allclose(differentiable, act, atol=1e-6) and differentiable.requires_grad


def test_a_spiking_network_is_refused_as_a_student_with_the_allowed_kinds_named():
    run = build(load("scenarios/cartpole_1layer.yaml", ["task.num_envs=2"]), learner=False)
    with pytest.raises(ValueError, match="whole-network population .* or a network of rate neurons"):
        Student(run.engine)


def test_a_student_on_another_device_than_the_cpu_is_refused_naming_the_device():
    engine = types.SimpleNamespace(device=torch.device("meta"))
    with pytest.raises(ValueError, match=r"distill: runs on the CPU only \(device: cpu\), not on meta"):
        require_cpu(engine, "distill")


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile's own modules
def test_a_compiled_student_ticks_exactly_as_the_eager_one():
    run = build(load("scenarios/cartpole_cooperator.yaml", ["device=cpu", "task.num_envs=4", "learning.population=2"]),
                learner=False)
    eager, compiled = Student(run.engine), Student(run.engine, compile=True)
    obs, prev = torch.randn(4, run.task.obs_dim), torch.zeros(4, 1)
    memory = eager.initial(4)
    (a0, m0), (a1, m1) = eager(obs, memory, prev), compiled(obs, memory, prev)
    assert torch.allclose(a0, a1, atol=1e-6) and torch.allclose(m0, m1, atol=1e-6) and m1.requires_grad


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile's own modules
def test_a_second_compiled_student_in_one_process_compiles_rather_than_falling_back_to_eager():
    import torch._dynamo
    from torch._dynamo.utils import counters

    scenario = load("scenarios/cartpole_cooperator.yaml", ["device=cpu", "task.num_envs=4", "learning.population=2"])
    with torch._dynamo.config.patch(recompile_limit=1):  # the default limit (8), reached sooner
        graphs = []
        for _ in range(2):
            run = build(scenario, learner=False)
            student = Student(run.engine, compile=True)
            student(torch.randn(4, run.task.obs_dim), student.initial(4), torch.zeros(4, 1))
            graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[0] + 1


def test_the_return_scaler_divides_by_the_running_std_of_each_copys_discounted_return():
    scaler = ReturnScaler(num_envs=2, gamma=0.5)
    scaler(torch.tensor([1.0, 3.0]), torch.tensor([False, False]))  # discounted returns 1, 3
    out = scaler(torch.tensor([2.0, 2.0]), torch.tensor([False, False]))  # now 2.5, 3.5
    seen = torch.tensor([1.0, 3.0, 2.5, 3.5], dtype=torch.float64)
    assert math.isclose(float(out[0]), 2.0 / math.sqrt(float(seen.var(unbiased=False)) + 1e-8), rel_tol=1e-6)


@needs_ant
def test_the_teacher_trains_checkpoints_and_resumes_to_the_requested_steps(tmp_path):
    from narla.tasks.ant import make_ant

    config = PPOConfig(hidden=(8,), steps_per_update=8, epochs=1, minibatch=8)
    task = make_ant(2, asynchronous=False, max_episode_steps=12)
    try:
        first = train_teacher(task, tmp_path, 32, config, checkpoint_every=1, progress=False)
        again = train_teacher(task, tmp_path, 48, config, checkpoint_every=1, progress=False)
    finally:
        task.close()
    assert first["env_steps"] == 32 and again["env_steps"] == 48 and len(again["history"]) == 3
    policy, state = load_teacher(tmp_path)
    assert state["normalizer"]["count"] > 0 and policy.mean(torch.zeros(1, 28)).shape == (1, 8)


@needs_ant
@pytest.mark.parametrize("model", ["attention", "layered"])
def test_dagger_lowers_the_imitation_loss_and_writes_a_model_narla_replays(tmp_path, model):
    from narla.evaluate import evaluate
    from narla.tasks.normalize import RunningNormalizer

    torch.manual_seed(0)
    teacher = TeacherPolicy(28, 8, hidden=(16,))
    torch.nn.init.normal_(teacher.actor[-1].weight, std=0.5)  # a teacher whose actions vary with the observation
    normalizer = RunningNormalizer(28)
    normalizer.update(torch.randn(64, 28) * 3)
    run = build(load(f"scenarios/ant_{model}.yaml", ANT), learner=False)
    config = DistillConfig(iterations=6, ticks=12, buffer=6, streams_per_batch=6, epochs=4, tbptt=6, lr=1e-2)
    try:
        state = distill(run, teacher, normalizer.state_dict(), tmp_path, config, progress=False)
    finally:
        run.task.close()
    losses = [h["loss"] for h in state["history"]]
    assert len(losses) == 6 and losses[-1] < losses[0]
    stats = evaluate(tmp_path, episodes=2, num_envs=2)
    assert all(math.isfinite(r) for r in stats["returns"])
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(saved["normalizer"]["mean"], normalizer.mean)  # the teacher's statistics, frozen


@needs_ant
def test_dagger_resumes_from_its_checkpoint(tmp_path):
    from narla.tasks.normalize import RunningNormalizer

    teacher = TeacherPolicy(28, 8, hidden=(8,))
    config = DistillConfig(iterations=2, ticks=6, tbptt=3, epochs=1)
    for iterations in (2, 3):
        run = build(load("scenarios/ant_attention.yaml", ANT), learner=False)
        try:
            state = distill(run, teacher, RunningNormalizer(28).state_dict(), tmp_path,
                            DistillConfig(**{**config.__dict__, "iterations": iterations}), progress=False)
        finally:
            run.task.close()
    assert state["iteration"] == 3 and [h["iteration"] for h in state["history"]] == [1, 2, 3]
    assert state["env_steps"] == 3 * 6 * 2


@needs_ant
def test_warmup_iterations_let_the_teacher_act_before_beta_starts_to_decay(tmp_path):
    from narla.tasks.normalize import RunningNormalizer

    run = build(load("scenarios/ant_attention.yaml", ANT), learner=False)
    config = DistillConfig(iterations=4, ticks=4, tbptt=2, epochs=1, warmup=2, beta_decay=0.5)
    try:
        state = distill(run, TeacherPolicy(28, 8, hidden=(8,)), RunningNormalizer(28).state_dict(), tmp_path, config,
                        progress=False)
    finally:
        run.task.close()
    assert [h["beta"] for h in state["history"]] == [1.0, 1.0, 1.0, 0.5]


@needs_ant
@pytest.mark.parametrize("action_noise", [0.0, 0.5])
def test_dart_noise_moves_the_teachers_executed_action_within_bounds_and_never_its_label(tmp_path, action_noise,
                                                                                         monkeypatch):
    import narla.learning.distill as module
    from narla.tasks.normalize import RunningNormalizer

    trained_on = []
    train_pass = module._train_pass
    monkeypatch.setattr(module, "_train_pass", lambda student, batch, *rest: trained_on.append(batch["label"])
                        or train_pass(student, batch, *rest))
    teacher = TeacherPolicy(28, 8, hidden=(8,))
    labels, executed = [], []
    clean = teacher.mean
    teacher.mean = lambda obs: labels.append(clean(obs).clamp(-1.0, 1.0)) or clean(obs)
    run = build(load("scenarios/ant_attention.yaml", ANT), learner=False)
    step = run.task.step
    run.task.step = lambda action: executed.append(action.clone()) or step(action)
    try:
        distill(run, teacher, RunningNormalizer(28).state_dict(), tmp_path,
                DistillConfig(iterations=1, ticks=8, tbptt=4, epochs=1, beta_decay=1.0, action_noise=action_noise),
                progress=False)
    finally:
        run.task.close()
    gap = torch.stack(executed) - torch.stack(labels)
    assert torch.equal(trained_on[0], torch.stack(labels))
    assert torch.stack(executed).abs().max() <= 1.0
    if action_noise == 0:
        assert torch.equal(gap, torch.zeros_like(gap))
    else:
        assert 0.2 < gap.std() < 0.6


def test_the_distillation_page_states_each_goal_as_met_or_not_from_the_test_scores():
    import argparse
    from pathlib import Path

    from narla.analysis.ant_distill import render

    def test(plain, shuffled):
        return {"plain": {"mean": plain, "std": 1.0}, "shuffled": {"mean": shuffled, "std": 1.0}}

    def student(plain, shuffled):
        return {"iterations": 2, "params": 3419, "env_steps": 32000, "wall_s": 60.0, "test": test(plain, shuffled),
                "history": [{"loss": 0.02}]}

    data = {"random": {"mean": 371.5, "std": 176.2},
            "teacher": {"params": 80000, "env_steps": 3000000, "wall_s": 1400.0, "test": test(2580.0, 360.0)},
            "students": {"cooperator": student(1200.0, 1150.0), "attention": student(1300.0, 1290.0)},
            "tuned": {"cooperator": student(900.0, 700.0), "attention": student(800.0, 790.0)},
            "finetuned": {"cooperator": {"params": 3419, "env_steps": 2000000, "wall_s": 1500.0, "status": "time_cap",
                                         "test": test(1100.0, 1090.0)}}}
    args = argparse.Namespace(runs=Path("runs/ant_distill"), out=Path("docs/results"), teacher_steps=3000000,
                              iterations=2, bc_iterations=0, test_episodes=50,
                              tuned_models="cooperator,attention", ppo_models="cooperator", ppo_steps=1000000)
    page = render(data, args)
    assert "Cooperator test score ≥ 1,000: **met** (1,200.0" in page
    assert "equal environment steps: **not met** (1,200.0 vs 1,300.0)" in page
    assert "within 10 % of its plain score: **met** (1,150.0 vs 1,200.0)" in page
    assert "Control: behaviour cloning" not in page
    assert "tuned distillation: Cooperator test score ≥ 1,000: **not met** (900.0" in page
    assert "tuned distillation: Cooperator ≥ AttentionNeuron at equal parameters (3,419 vs 3,419) and equal " \
           "environment steps: **met** (900.0 vs 800.0)" in page
    assert "tuned distillation: Cooperator's shuffled score within 10 % of its plain score: **not met**" in page
    assert "then CMA-ES: Cooperator test score ≥ 1,000: **met** (1,100.0" in page
    assert "| 3,000,000 + 32,000 + 2,000,000 |" in page
    assert "then PPO" not in page
    data["ppo"] = {"cooperator": {"params": 3419, "env_steps": 1000000, "wall_s": 900.0, "test": test(950.0, 940.0)}}
    page = render(data, args)
    assert "| cooperator (tuned, CMA-ES, then PPO) | 3,419 | 3,000,000 + 32,000 + 2,000,000 + 1,000,000 |" in page
    assert "CMA-ES, then PPO: Cooperator test score ≥ 1,000: **not met** (950.0" in page
    assert "--ppo-models cooperator --ppo-steps 1000000" in page
    data["cloned"] = {"layered": student(2500.0, 300.0)}
    assert "| layered (cloning, 2 iterations) | 3,419 | 3,000,000 + 32,000 |" in render(data, args)


def test_the_dart_page_lists_the_control_and_states_each_goal_from_the_noisy_students_scores():
    import argparse
    from pathlib import Path

    from narla.analysis.ant_dart import render

    def student(noise, plain, shuffled):
        return {"noise": noise, "iterations": 30, "params": 3419, "env_steps": 480000, "wall_s": 600.0,
                "history": [{"loss": 0.05}],
                "test": {"plain": {"mean": plain, "std": 1.0}, "shuffled": {"mean": shuffled, "std": 1.0}}}

    data = {"random": {"mean": 371.5, "std": 176.2},
            "teacher": {"params": 80000, "env_steps": 3000000, "wall_s": 1400.0,
                        "test": {"plain": {"mean": 2580.0, "std": 1.0}, "shuffled": {"mean": 360.0, "std": 1.0}}},
            "students": {"cooperator": student(0.5, 1100.0, 1050.0), "attention": student(0.5, 900.0, 905.0)},
            "controls": {"cooperator": student(0.0, 480.0, 470.0)}}
    args = argparse.Namespace(runs=Path("runs/ant_dart"), teacher_runs=Path("runs/ant_distill"),
                              out=Path("docs/results"), models="cooperator,attention", control_models="cooperator",
                              noise=0.5, iterations=30, test_episodes=50, travel_episodes=10)
    page = render(data, args)
    assert "| cooperator (DART σ 0.5), 30 iterations | 3,419 | 3,000,000 + 480,000 |" in page
    assert "| cooperator (control: cloning, σ 0), 30 iterations |" in page
    assert "DART σ 0.5: Cooperator test score ≥ 1,000: **met** (1,100.0" in page
    assert "equal environment steps: **met** (1,100.0 vs 900.0)" in page
    assert "within 10 % of its plain score: **met** (1,050.0 vs 1,100.0)" in page
    assert "--noise 0.5 --iterations 30 --test-episodes 50" in page
    assert "then CMA-ES" not in page
    def finetune(steps, plain):
        return {"params": 3419, "env_steps": steps, "wall_s": 1500.0, "status": "done",
                "test": {"plain": {"mean": plain, "std": 1.0}, "shuffled": {"mean": plain - 10.0, "std": 1.0}}}

    data["finetuned"] = {"cooperator": {"finetune": finetune(2000000, 950.0)}}
    page = render(data, args)
    assert "| 3,000,000 + 480,000 + 2,000,000 |" in page
    assert "DART σ 0.5, then CMA-ES: Cooperator test score ≥ 1,000: **not met** (950.0" in page
    assert "restart" not in page.split("## Goals")[1]
    data["finetuned"]["cooperator"]["restart"] = finetune(6000000, 1010.0)
    page = render(data, args)
    assert "| cooperator (DART, CMA-ES, then a CMA-ES restart: `scenarios/ant_cooperator_dart_restart.yaml`) | " \
           "3,419 | 3,000,000 + 480,000 + 2,000,000 + 6,000,000 |" in page
    assert "DART σ 0.5, CMA-ES, then a CMA-ES restart: Cooperator test score ≥ 1,000: **met** (1,010.0" in page
    assert "Does it walk?" not in page
    data["finetuned"]["cooperator"]["restart"]["travel"] = {"distances": [0.1, -0.1], "mean": 0.0, "std": 0.1}
    data["students"]["cooperator"]["travel"] = {"distances": [1.0, 2.0], "mean": 1.5, "std": 0.5}
    page = render(data, args)
    assert "| cooperator (DART σ 0.5) | 1.50 ± 0.50 | 1.00 – 2.00 |" in page
    assert "| cooperator (DART, CMA-ES, then a CMA-ES restart) | 0.00 ± 0.10 | -0.10 – 0.10 |" in page
    assert "| random policy |" not in page.split("Does it walk?")[1]
    data["shaped"] = {"cooperator": {**finetune(3000000, 1020.0), "travel": {"distances": [4.0], "mean": 4.0,
                                                                            "std": 0.0}}}
    page = render(data, args)
    assert "| cooperator (DART, then CMA-ES on a progress-weighted reward (ours): " \
           "`scenarios/ant_cooperator_dart_progress.yaml`) | 3,419 | 3,000,000 + 480,000 + 3,000,000 |" in page
    assert "progress-weighted reward (ours): Cooperator test score ≥ 1,000: **met** (1,020.0" in page
    assert "| cooperator (DART, then CMA-ES on a progress-weighted reward (ours)) | 4.00 ± 0.00 |" in page
