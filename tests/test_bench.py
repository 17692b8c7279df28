"""Specification of ``narla bench``: engine and reference rates measured in one run."""

import json

from narla.cli import main


def test_quick_bench_json_rows_have_positive_rates_and_ratios(capsys):
    assert main(["bench", "--quick", "--json", "--seconds", "0.05", "--rounds", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["network"] for r in rows} == {"tiny-2layer", "sparse-200"}
    assert {r["B"] for r in rows} == {1, 4}
    for r in rows:
        for key in (
            "engine_env_steps_per_s",
            "engine_neuron_steps_per_s",
            "reference_env_steps_per_s",
            "reference_neuron_steps_per_s",
            "ratio",
        ):
            assert r[key] > 0, key
        assert abs(r["ratio"] - r["engine_env_steps_per_s"] / r["reference_env_steps_per_s"]) < 0.01 * r["ratio"] + 0.01


def test_bench_table_names_what_is_measured(capsys):
    assert main(["bench", "--quick", "--only", "tiny", "--seconds", "0.05", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "acting path" in out and "tiny-2layer" in out and "engine/ref" in out


def test_bench_rejects_an_unknown_network(capsys):
    assert main(["bench", "--quick", "--only", "nope"]) == 2
    assert "matches no network" in capsys.readouterr().err


def test_bench_reports_pettingzoo_view_rates_beside_the_engine(capsys):
    args = ["bench", "--quick", "--only", "tiny", "--views", "--json", "--seconds", "0.05", "--rounds", "1"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    views = [r for r in rows if r.get("kind") == "pettingzoo_view"]
    assert {v["view"] for v in views} == {"aec", "parallel"}
    for v in views:
        assert v["view_steps_per_s"] > 0 and v["engine_steps_per_s"] > 0 and v["ratio"] > 0
