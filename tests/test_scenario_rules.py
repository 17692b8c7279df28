"""Scenario validation as a specification: every malformed scenario gets one message naming its field and what is
allowed; rules across fields are checked before anything runs; the JSON Schema accepts every shipped scenario."""

import json
from pathlib import Path

import pytest
import yaml

from narla.cli import main as cli_main
from narla.scenario import ScenarioError, from_dict, schema

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("scenarios/**/*.yaml"), *ROOT.glob("examples/*.yaml"), ROOT / "tests/context_net.yaml"])

MALFORMED = [
    ({}, r"^name: missing required field"),
    ({"name": 3}, r"^name: must be a string, got 3"),
    ({"name": "x", "sede": 1}, r"^sede: unknown field; allowed: name, seed, device"),
    ({"name": "x", "seed": True}, r"^seed: must be an integer, got True"),
    ({"name": "x", "device": "gpu"}, r"^device: must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ({"name": "x", "propagation": "wave"}, r"^propagation: 'wave' is not allowed; allowed: sweep, delay"),
    ({"name": "x", "task": 5}, r"^task: must be a mapping, got 5"),
    ({"name": "x", "task": {"num_envs": 0}}, r"^task\.num_envs: must be >= 1, got 0"),
    ({"name": "x", "task": {"num_envs": 2.5}}, r"^task\.num_envs: must be an integer, got 2\.5"),
    ({"name": "x", "task": {"max_episode_steps": -3}}, r"^task\.max_episode_steps: must be >= 1, got -3"),
    ({"name": "x", "neuron": {"hidden": [32, 0]}}, r"^neuron\.hidden\[1\]: must be >= 1, got 0"),
    ({"name": "x", "neuron": {"activation": "gelu"}}, r"^neuron\.activation: 'gelu' is not allowed; allowed: leaky"),
    ({"name": "x", "neuron": {"amtf": "mult"}}, r"^neuron\.amtf: 'mult' is not allowed; allowed: cooperation"),
    ({"name": "x", "neuron": {"output": "ratez"}}, r"^neuron\.output: 'ratez' is not allowed; allowed: spike, rate"),
    ({"name": "x", "neuron": {"output": {"hidden": "x"}}}, r"^neuron\.output\.hidden: 'x' is not allowed"),
    ({"name": "x", "readout": {"kind": "argmax"}}, r"^readout\.kind: 'argmax' is not allowed; allowed: choice"),
    ({"name": "x", "context": {"proximal": "yes"}}, r"^context\.proximal: must be true or false, got 'yes'"),
    ({"name": "x", "context": {"universal_position": -1}}, r"^context\.universal_position: must be >= 0"),
    ({"name": "x", "learning": {"learning_rate": 1}}, r"^learning\.learning_rate: unknown field; allowed: rule, lr"),
    ({"name": "x", "learning": {"lr": "fast"}}, r"^learning\.lr: must be a number, got 'fast'"),
    ({"name": "x", "learning": {"lr": -1}}, r"^learning\.lr: must be > 0, got -1"),
    ({"name": "x", "learning": {"gamma": 1.5}}, r"^learning\.gamma: must be in \[0, 1\], got 1\.5"),
    ({"name": "x", "learning": {"rule": "ppo"}}, r"^learning\.rule: 'ppo' is not allowed; allowed: reinforce"),
    ({"name": "x", "learning": {"sigma": 0}}, r"^learning\.sigma: must be > 0, got 0"),
    ({"name": "x", "training": {"max_episodes": 0}}, r"^training\.max_episodes: must be >= 1, got 0"),
    ({"name": "x", "training": {"max_wall_s": 0}}, r"^training\.max_wall_s: must be > 0, got 0"),
    ({"name": "x", "training": {"log": ["csv", "wandb"]}}, r"^training\.log\[1\]: 'wandb' is not allowed"),
    ({"name": "x", "imports": ["not a module"]}, r"^imports\[0\]: must be a module name"),
    ({"name": "x", "network": {"builder": 7}}, r"^network\.builder: must be a builder name"),
]

CROSS_FIELD = [
    ({"name": "x", "learning": {"rule": "es", "population": 4}, "task": {"num_envs": 6}},
     r"^task\.num_envs: learning\.rule es with learning\.population 4 needs a multiple of 2 x population = 8"),
    ({"name": "x", "learning": {"rule": "cma_es", "population": 4}, "task": {"num_envs": 6}},
     r"^task\.num_envs: learning\.rule cma_es with learning\.population 4 needs a multiple of 4"),
    ({"name": "x", "readout": {"kind": "rate"}}, r"^readout\.kind: 'rate' drives a continuous \(Box\) action, task"),
    ({"name": "x", "task": {"id": "swingup"}}, r"^readout\.kind: 'choice' picks a discrete action, task 'swingup'"),
    ({"name": "x", "neuron": {"output": {"motor": "rate"}}}, r"^readout\.kind: rate motor neurons need readout value"),
    ({"name": "x", "neuron": {"head": "softmax", "amtf": "cooperation"}}, r"^neuron\.head: 'softmax' needs"),
    ({"name": "x", "network": {"builder": "cooperator"}, "task": {"id": "swingup"}, "readout": {"kind": "value"}},
     r"^learning\.rule: 'reinforce' cannot train network\.builder 'cooperator'"),
    ({"name": "x", "network": {"builder": "layered", "hidden_layers": 1},
      "rewards": {"terms": [{"name": "activity", "where": {"layers": [3]}}]}},
     r"^rewards\.terms\[0\]\.where\.layers\[0\]: layer 3 does not exist; the network has 2 layers"),
    ({"name": "x", "training": {"log": ["tensorboard"]}}, r"^training\.log: must be a list that includes csv"),
]


@pytest.mark.parametrize("data, message", MALFORMED + CROSS_FIELD, ids=lambda v: None if isinstance(v, str) else "")
def test_a_malformed_scenario_gets_one_message_naming_its_field(data, message):
    with pytest.raises(ScenarioError, match=message) as info:
        from_dict(data)
    assert "\n" not in str(info.value)


def test_narla_run_of_a_malformed_scenario_exits_non_zero_before_it_writes_anything(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "learning": {"rule": "es", "population": 4}, "task": {"num_envs": 6}}))
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("narla: error: task.num_envs: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_json_schema_accepts_every_shipped_scenario(path):
    jsonschema = pytest.importorskip("jsonschema", reason="the schema tests need the [test] extra")
    jsonschema.validate(yaml.safe_load(path.read_text()), schema())


def test_the_json_schema_rejects_what_validation_rejects():
    jsonschema = pytest.importorskip("jsonschema", reason="the schema tests need the [test] extra")
    for data in ({"name": "x", "sede": 1}, {"name": "x", "learning": {"rule": "ppo"}}, {"name": "x", "task": 5},
                 {"name": "x", "learning": {"gamma": 1.5}}, {"seed": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema())


def test_narla_schema_prints_the_schema(capsys):
    assert cli_main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["title"] == "narla scenario" and "learning" in printed["properties"]
