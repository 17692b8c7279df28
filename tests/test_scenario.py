"""Scenario files: validation names the field and what is allowed."""

import pytest

from narla.scenario import Scenario, ScenarioError, apply_overrides, dump, from_dict, load


def test_minimal_scenario_fills_every_default():
    s = from_dict({"name": "x"})
    assert s.task.id == "cartpole" and s.learning.rule == "reinforce" and s.network["builder"] == "layered"


def test_round_trip_through_yaml_gives_an_equal_scenario(tmp_path):
    s = from_dict({"name": "x", "learning": {"lr": 0.01}, "network": {"layers": 3}})
    path = tmp_path / "s.yaml"
    path.write_text(dump(s))
    assert load(path) == s


def test_missing_name_is_reported():
    with pytest.raises(ScenarioError, match="^name: missing"):
        from_dict({"seed": 1})


def test_unknown_top_level_field_lists_allowed_fields():
    with pytest.raises(ScenarioError, match="^sede: unknown field; allowed: name, seed"):
        from_dict({"name": "x", "sede": 1})


def test_unknown_nested_field_names_its_path():
    with pytest.raises(ScenarioError, match=r"^learning\.learning_rate: unknown field"):
        from_dict({"name": "x", "learning": {"learning_rate": 0.1}})


def test_wrong_type_names_field_and_expected_type():
    with pytest.raises(ScenarioError, match=r"^learning\.lr: must be a number, got 'fast'"):
        from_dict({"name": "x", "learning": {"lr": "fast"}})


def test_bool_is_not_accepted_as_integer():
    with pytest.raises(ScenarioError, match=r"^task\.num_envs: must be an integer"):
        from_dict({"name": "x", "task": {"num_envs": True}})


def test_choice_field_lists_allowed_values():
    with pytest.raises(ScenarioError, match=r"^learning\.rule: 'ppo' is not allowed; allowed: reinforce"):
        from_dict({"name": "x", "learning": {"rule": "ppo"}})


def test_out_of_range_value_is_reported():
    with pytest.raises(ScenarioError, match=r"^learning\.gamma: must be in \[0, 1\]"):
        from_dict({"name": "x", "learning": {"gamma": 1.5}})


def test_section_that_is_not_a_mapping_is_reported():
    with pytest.raises(ScenarioError, match=r"^task: must be a mapping"):
        from_dict({"name": "x", "task": "cartpole"})


def test_override_sets_nested_value_parsed_as_yaml():
    data = apply_overrides({"name": "x"}, ["learning.lr=0.01", "neuron.hidden=[8, 8]"])
    s = from_dict(data)
    assert s.learning.lr == 0.01 and s.neuron.hidden == [8, 8]


def test_override_without_equals_sign_is_an_error():
    with pytest.raises(ScenarioError, match="expected KEY=VALUE"):
        apply_overrides({"name": "x"}, ["learning.lr"])


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ScenarioError, match="does not exist"):
        load(tmp_path / "nope.yaml")


def test_invalid_yaml_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load(path)


def test_every_shipped_scenario_validates():
    from pathlib import Path

    paths = sorted(Path(__file__).parent.parent.joinpath("scenarios").rglob("*.yaml"))
    assert paths
    for path in paths:
        assert isinstance(load(path), Scenario), path


def test_a_scenario_without_a_device_takes_the_one_in_NARLA_DEVICE(monkeypatch):
    monkeypatch.setenv("NARLA_DEVICE", "cuda:1")
    assert from_dict({"name": "x"}).device == "cuda:1"
    assert from_dict({"name": "x", "device": "cpu"}).device == "cpu"  # a named device wins


def test_an_invalid_NARLA_DEVICE_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("NARLA_DEVICE", "gpu")
    with pytest.raises(ScenarioError, match=r"^NARLA_DEVICE: must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'$"):
        from_dict({"name": "x"})
