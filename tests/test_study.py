"""The study instruments on small networks whose answers are known."""

import csv
import math

import pytest
import torch

from narla.scenario import from_dict
from narla.study.activity import firing_rates, layer_rates, spike_correlation
from narla.study.alignment import alignment, component_shares, free_riders
from narla.study.influence import influence_matrix
from narla.study.information import binned_entropy, mutual_information
from narla.study.lesions import lesion_effects
from narla.training import build


def _relay_run(num_envs: int):
    """sensors -> one relay neuron -> the motor neuron, wired by hand into a good CartPole controller: the relay
    fires when the pole falls to the right (theta + 0.5 theta_dot > 0), the motor neuron copies the relay, and
    action 1 pushes the cart right, under the pole."""
    scenario = from_dict({"name": "relay", "task": {"id": "cartpole", "num_envs": num_envs},
                          "network": {"builder": "layered", "hidden_layers": 1, "width": 1},
                          "neuron": {"hidden": []}, "readout": {"kind": "choice"}})
    run = build(scenario, learner=False)
    weights, biases = run.engine.population.policy.weights[0], run.engine.population.policy.biases[0]
    with torch.no_grad():
        weights.zero_()
        biases.zero_()
        weights[0, :, 0] = torch.tensor([0.0, 0.0, 400.0, 200.0])  # relay reads x, x', theta, theta'
        weights[1, 0, 0], biases[1, 0, 0] = 100.0, -50.0  # motor: fire iff the relay fired
    return run


def test_lesioning_the_only_relay_between_sensors_and_motor_destroys_the_task():
    run = _relay_run(num_envs=3 * 8)
    effects = {e["mode"]: e for e in lesion_effects(run, {"n1_0": [0]}, modes=("silence", "fire"), episodes=8)}
    control = effects["silence"]["control"]
    assert control > 150  # the hand-wired controller balances the pole
    for mode in ("silence", "fire"):  # always pushing one way drops the pole within a few dozen steps
        assert effects[mode]["lesioned"] < 20
        assert effects[mode]["ci"][1] < 0 and effects[mode]["effect"] < -130


def _coupled_run(sign: float):
    """Two neurons: n1_0 always fires; the motor neuron flips a fair coin whatever n1_0 does (so a flip of n1_0 does
    not change the task's course) and is paid ``sign`` whenever n1_0 fires; n1_0 is paid nothing."""
    run = _relay_run(num_envs=3)
    with torch.no_grad():
        run.engine.population.policy.weights[0].zero_()
        run.engine.population.policy.biases[0][0, 0, 0] = 50.0
        run.engine.population.policy.biases[0][1, 0, 0] = 0.0

    def coupling(state):
        paid = torch.zeros_like(state.spikes)
        paid[:, 1] = sign * state.spikes[:, 0]
        return paid

    run.scheme.terms[0].fn = coupling
    return run


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_influence_has_the_sign_and_size_of_a_known_reward_coupling(sign):
    result = influence_matrix(_coupled_run(sign), sources=[0, 1], branch_ticks=(3, 6), horizon=5, episodes=2)
    influence = result["influence"]
    assert result["branches"] == 4
    assert influence[0, 1].item() == pytest.approx(sign)  # n1_0's firing pays the motor neuron `sign` once
    assert influence[0, 0].item() == 0 and influence[1, 0].item() == 0 and influence[1, 1].item() == 0


def test_a_neuron_that_copies_a_feature_has_its_entropy_as_information_about_it_and_none_about_the_others():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(4000, 4, generator=g)
    copy = (features[:, 1:2] > features[:, 1].median()).float()
    mi = mutual_information(copy, features)
    assert mi[0, 1].item() == pytest.approx(binned_entropy(copy)[0].item(), abs=2e-3)
    assert binned_entropy(copy)[0].item() == pytest.approx(1.0, abs=2e-3)
    assert mi[0, [0, 2, 3]].max().item() < 0.01


def test_firing_rates_and_correlations_of_recorded_spikes():
    spikes = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [9.0, 9.0, 9.0]]])  # [E=1, T=4, N=3]
    valid = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last tick is padding
    rates = firing_rates(spikes, valid)
    assert rates.tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert layer_rates(rates, torch.tensor([1, 1, 2])) == pytest.approx({1: 2 / 3, 2: 1 / 3})
    corr = spike_correlation(spikes, valid)
    assert corr[0, 1].item() == pytest.approx(1.0) and corr[0, 2].item() == pytest.approx(-1.0)


def test_alignment_shares_and_free_riders():
    task = torch.tensor([10.0, 20.0, 30.0, 40.0])
    own = torch.stack([2 * task + 1, -task, torch.full_like(task, 5.0)], 1)  # [E, N]
    assert alignment(own, task).tolist() == pytest.approx([1.0, -1.0, 0.0])
    shares = component_shares({"task": torch.ones(4, 3), "activity": torch.full((4, 3), -3.0)})
    assert shares["task"].tolist() == pytest.approx([0.25] * 3)
    assert shares["activity"].tolist() == pytest.approx([0.75] * 3)
    riders = free_riders(torch.tensor([5.0, 5.0, -1.0]), torch.tensor([2.0, -3.0, 1.0]), ["a", "b", "c"])
    assert riders == ["a"] and not math.isnan(shares["task"][0].item())


def test_narla_analyze_writes_the_report_the_numbers_and_the_figures(tmp_path):
    import json

    from narla.cli import main as cli_main
    from narla.training import Trainer

    scenario = from_dict({"name": "small", "task": {"id": "cartpole", "num_envs": 4},
                          "network": {"builder": "layered", "hidden_layers": 2, "width": 4},
                          "neuron": {"hidden": [8]}, "rewards": ["task", "activity"],
                          "training": {"max_episodes": 8, "analyze_every": 4}})
    Trainer(scenario, tmp_path / "run", progress=False).train()
    with open(tmp_path / "run" / "emergence.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["episode"])) for r in rows] == [4, 8]
    assert {"firing_L1", "alignment_L3", "abs_corr", "lesion_mean", "lesion_min"} <= set(rows[0])
    assert cli_main(["analyze", str(tmp_path / "run"), "--episodes", "4", "--lesion-neurons", "5",
                     "--influence-sources", "3", "--out", str(tmp_path / "a")]) == 0
    result = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert len(result["neurons"]) == 9 and len(result["lesions"]["neurons"]) == 5 * 2
    assert len(result["lesions"]["layers"]) == 3 and len(result["influence"]["matrix"]) == 3
    assert set(result["alignment"]["shares"]) == {"task", "activity"}
    assert len(result["information"]["obs"]) == 9 and len(result["information"]["obs"][0]) == 4
    text = (tmp_path / "a" / "analysis.md").read_text()
    assert "Neurons that carry the task" in text and "Most cooperative pairs" in text
    for png in ("activity.png", "lesions.png", "influence.png", "information_alignment.png",
                "emergence_over_training.png"):
        assert (tmp_path / "a" / png).stat().st_size > 5000


def test_the_dilemma_pays_each_pair_from_the_payoff_matrix():
    from narla.rewards import NetworkState
    from narla.rewards.dilemma import Dilemma

    spikes = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]])  # pairs (0,1) (2,3) (4,5) (6,7); 8 alone
    state = NetworkState(spikes, spikes, spikes, torch.zeros(1), torch.zeros(1, dtype=torch.bool),
                         torch.zeros(1, dtype=torch.bool), None, 0)
    assert Dilemma()(state).tolist() == [[3.0, 3.0, 0.0, 5.0, 5.0, 0.0, 1.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="temptation > reward > punishment > sucker"):
        Dilemma(reward=6.0)


def test_reciprocity_is_one_for_tit_for_tat_and_near_zero_for_players_that_ignore_their_partner():
    from narla.study.dilemma import play_statistics

    a = torch.tensor([1.0, 0.0] * 8)  # a tit-for-tat pair that started out of step: each copies the other's last move
    b = 1 - a
    stats = play_statistics(torch.stack([a, b], -1).unsqueeze(0), torch.ones(1, 16, dtype=torch.bool), players=2)
    assert stats["reciprocity"] == 1.0 and stats["cooperation"] == 0.5 and stats["mutual_cooperation"] == 0.0
    g = torch.Generator().manual_seed(0)
    coins = (torch.rand(1, 4000, 2, generator=g) < 0.5).float()
    independent = play_statistics(coins, torch.ones(1, 4000, dtype=torch.bool), players=2)
    assert abs(independent["reciprocity"]) < 0.05 and independent["mutual_cooperation"] == pytest.approx(0.25, abs=0.03)


def test_trimmed_padding_gathers_less_and_computes_the_same_logits():
    run = build(from_dict({"name": "wide", "task": {"id": "cartpole", "num_envs": 5},
                           "network": {"builder": "layered", "hidden_layers": 2, "width": 20},
                           "neuron": {"hidden": [16]}}), learner=False)
    engine = run.engine
    obs = run.task.reset()
    act = engine.begin_tick(obs)
    prev = torch.zeros_like(act)
    full = [engine.stage_logits(act, prev, a, b) for a, b in engine.stages]
    widths = [engine._stage_slices(a, b)[0].shape[1] for a, b in engine.stages]
    engine.trim_padding()
    trimmed = [engine.stage_logits(act, prev, a, b) for a, b in engine.stages]
    assert widths == [20, 20, 20] and [engine._stage_slices(a, b)[0].shape[1] for a, b in engine.stages] == [4, 3, 20]
    for x, y in zip(full, trimmed, strict=True):
        assert torch.allclose(x, y, atol=1e-6)
