"""PPO fine-tuning of a whole narla network (narla.learning.student_ppo), on a tiny Ant (skipped without `ant`)."""

import importlib.util
import math

import pytest
import torch

from narla.evaluate import evaluate, load_model, save_model
from narla.learning.ppo import TeacherPolicy
from narla.learning.student_ppo import StudentPPOConfig, finetune
from narla.scenario import load
from narla.tasks.normalize import RunningNormalizer
from narla.training import build

ANT = ["device=cpu", "task.num_envs=2", "learning.population=2",
       "task.options={asynchronous: false, normalize_obs: true}", "task.max_episode_steps=12"]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pybullet_envs_gymnasium") is None,
    reason="the Ant task needs the 'ant' extra: pip install 'narla[ant]'",
)
TINY = dict(steps_per_update=8, epochs=2, tbptt=3, critic_warmup=0)


def saved_student(tmp_path, model: str = "attention") -> dict:
    """A freshly built student saved as model.pt, with observation statistics of its own."""
    run = build(load(f"scenarios/ant_{model}.yaml", ANT), learner=False)
    normalizer = RunningNormalizer(28)
    normalizer.update(torch.randn(64, 28) * 3)
    run.task.normalizer.load_state_dict(normalizer.state_dict())
    save_model(tmp_path / "student.pt", run.scenario, run.engine.population, run.task)
    run.task.close()
    return torch.load(tmp_path / "student.pt", weights_only=True)


def fine_tune(tmp_path, init: dict, env_steps: int, model: str = "attention", **config) -> dict:
    run = build(load(f"scenarios/ant_{model}.yaml", ANT), learner=False)
    teacher = TeacherPolicy(28, 8, hidden=(8,))
    scaler = {"ret": torch.zeros(2, dtype=torch.float64), "count": 1.0, "mean": 0.0, "var": 1.0}
    try:
        return finetune(run, init, teacher, {"scaler": scaler}, tmp_path / "out", env_steps,
                        StudentPPOConfig(**{**TINY, **config}), checkpoint_every=1, progress=False)
    finally:
        run.task.close()


def test_the_replay_of_a_window_reproduces_the_log_probabilities_it_was_collected_with(tmp_path):
    state = fine_tune(tmp_path, saved_student(tmp_path), 32, lr=0.0, critic_lr=0.0)
    assert [h["kl"] for h in state["history"]] == [0.0] * 2  # lr 0: ratio 1 at every replayed tick


def test_the_fine_tune_changes_the_student_and_keeps_its_observation_statistics(tmp_path):
    init = saved_student(tmp_path)
    fine_tune(tmp_path, init, 16, lr=1e-2)
    saved = load_model(tmp_path / "out")
    assert saved["trained_by"] == "student_ppo"
    assert any(not torch.equal(saved["population"][k], v) for k, v in init["population"].items())
    assert torch.equal(saved["normalizer"]["mean"], init["normalizer"]["mean"])
    assert all(math.isfinite(r) for r in evaluate(tmp_path / "out", episodes=2, num_envs=2)["returns"])


def test_the_fine_tune_resumes_from_its_checkpoint_to_the_requested_steps(tmp_path):
    init = saved_student(tmp_path, "cooperator")
    fine_tune(tmp_path, init, 16, model="cooperator")
    state = fine_tune(tmp_path, init, 48, model="cooperator")
    assert state["env_steps"] == 48 and [h["env_steps"] for h in state["history"]] == [16, 32, 48]


def test_a_network_of_per_neuron_policies_is_refused_with_the_allowed_kinds_named(tmp_path):
    run = build(load("scenarios/ant_layered.yaml", ANT), learner=False)
    try:
        with pytest.raises(ValueError, match="whole-network population"):
            finetune(run, {}, TeacherPolicy(28, 8, hidden=(8,)), {}, tmp_path, 16, progress=False)
    finally:
        run.task.close()


def test_the_critic_warm_up_leaves_the_student_unchanged(tmp_path):
    init = saved_student(tmp_path)
    state = fine_tune(tmp_path, init, 32, lr=1e-2, critic_warmup=2)
    saved = load_model(tmp_path / "out")
    assert all(torch.equal(saved["population"][k], v) for k, v in init["population"].items())
    assert [h["kl"] for h in state["history"]] == [0.0, 0.0]
