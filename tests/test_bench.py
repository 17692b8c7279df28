"""Specification of ``narla bench``: engine and reference rates measured in one run."""

import json
import subprocess
import sys

import pytest
import torch

from narla.bench import configs, training_rate, training_run
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


def test_bench_times_full_training_beside_the_machines_limit(capsys):
    args = ["bench", "--quick", "--only", "tiny", "--json", "--no-views", "--seconds", "0.05", "--rounds", "1"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    for r in rows:
        assert r["training_env_steps"] > 0 and r["training_neuron_steps_per_s"] > 0
        assert r["training_limit_neuron_steps_per_s"] > r["training_neuron_steps_per_s"]
        limit_flops = r["training_limit_neuron_steps_per_s"] * 8 * r["weights_per_neuron"]
        assert 1e8 < limit_flops < 1e14  # a measured matmul rate, in FLOP/s
        assert abs(limit_flops / r["training_matmul_flops"] - 1) < 1e-3  # the rate measured for this row


def test_each_training_rows_limit_is_the_mean_of_the_matmul_rates_measured_around_its_rounds(capsys, monkeypatch):
    import narla.bench

    rates = iter(1e9 * k for k in range(1, 100))
    monkeypatch.setattr(narla.bench, "matmul_flops", lambda *args, **kwargs: next(rates))
    args = ["bench", "--quick", "--only", "tiny", "--json", "--no-views", "--seconds", "0.05", "--rounds", "2"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    for i, r in enumerate(rows):  # two rounds: a reading before each and one after the last, three per row
        assert r["training_matmul_flops_range"] == [1e9 * (3 * i + 1), 1e9 * (3 * i + 3)]
        assert r["training_matmul_flops"] == 1e9 * (3 * i + 2)
        assert r["training_limit_neuron_steps_per_s"] == round(1e9 * (3 * i + 2) / (8 * r["weights_per_neuron"]), 1)


def test_training_rate_hands_a_reused_run_back_as_it_was_built():
    cfg = configs(quick=True)[0]
    run = training_run(cfg, 4, torch.device("cpu"))
    built = {k: v.clone() for k, v in run.engine.population.state_dict().items()}
    generator = run.engine.generator.get_state()
    row = training_rate(cfg, 8, torch.device("cpu"), 0.05, run=run)
    assert row["training_batches"] >= 1 and row["training_neuron_steps_per_s"] > 0
    assert all(torch.equal(v, built[k]) for k, v in run.engine.population.state_dict().items())
    assert torch.equal(run.engine.generator.get_state(), generator)
    assert not run.learner.optimizer.state and run.task.num_envs == 4


def test_scaling_sweep_writes_its_table_json_and_plot_with_peak_memory(tmp_path, capsys):
    out = tmp_path / "scaling"
    assert main(["bench", "--scaling", "--quick", "--seconds", "0.05", "--out", str(out)]) == 0
    rows = json.loads((out / "scaling.json").read_text())["rows"]
    assert {(r["neurons"], r["B"]) for r in rows} == {(50, 1), (50, 4), (200, 1), (200, 4)}
    for r in rows:
        assert r["acting_neuron_steps_per_s"] > 0 and r["training_neuron_steps_per_s"] > 0 and r["peak_rss_gib"] > 0
    assert (out / "scaling.png").stat().st_size > 0 and "| 200 | 2x16 | 4 |" in (out / "scaling.md").read_text()


def test_scaling_skips_a_configuration_whose_tick_would_exceed_the_budget_and_says_why():
    from narla.bench_scaling import child

    spec = {"n": 50, "policy": "2x16", "batches": [1], "seconds": 0.01, "device": "cpu", "threads": 1,
            "max_tick_s": 1e-12, "flops": 1e11}
    (row,) = child(spec)
    assert "acting tick would take" in row["skipped"] and "training_neuron_steps_per_s" not in row


def test_scaling_measures_only_acting_where_a_training_record_would_not_fit_in_memory_and_says_why(monkeypatch):
    import narla.memory
    from narla.bench_scaling import child, format_markdown

    monkeypatch.setattr(narla.memory, "available_bytes", lambda device: 1000)
    spec = {"n": 50, "policy": "2x16", "batches": [1], "seconds": 0.01, "device": "cpu", "threads": 1,
            "max_tick_s": 10, "flops": 1e11}
    (row,) = child(spec)
    assert "rollout record could take" in row["training_skipped"] and "training_neuron_steps_per_s" not in row
    assert row["acting_neuron_steps_per_s"] > 0  # acting keeps no record
    assert "| skipped: its rollout record could take" in format_markdown([row], "info")


def test_scaling_skips_training_where_an_updates_window_would_not_fit_beside_the_record_and_says_why(monkeypatch):
    import narla.bench
    import narla.memory
    from narla.bench_scaling import child

    # room for the record of 500 ticks but not for the activations of an update's window (one column) as well
    monkeypatch.setattr(narla.memory, "update_column_bytes", lambda engine: 1 << 40)
    monkeypatch.setattr(narla.bench, "update_column_bytes", lambda engine: 1 << 40)  # training_chunk_columns: 1
    spec = {"n": 50, "policy": "2x16", "batches": [1], "seconds": 0.01, "device": "cpu", "threads": 1,
            "max_tick_s": 10, "flops": 1e11}
    (row,) = child(spec)
    assert "activations of an update's window (1024.0 GiB)" in row["training_skipped"]
    assert "training_neuron_steps_per_s" not in row


def test_build_only_scaling_reports_each_part_of_the_build_and_its_memory(tmp_path, capsys):
    out = tmp_path / "build"
    assert main(["bench", "--scaling", "--build-only", "--sizes", "300", "--out", str(out)]) == 0
    rows = json.loads((out / "build.json").read_text())["rows"]
    assert [(r["neurons"], r["policy"]) for r in rows] == [(300, "2x16"), (300, "2x128")]
    for r in rows:
        assert r["edges"] == 100 * 4 + 200 * 16  # hidden layers of 100, 100, 99: the first reads the 4 sensors
        assert r["build_s"] >= r["graph_s"] + r["compile_s"] - 0.02 and r["peak_rss_gib"] > 0
    assert "| 300 | 2x16 |" in (out / "build.md").read_text() and not (out / "scaling.json").exists()


def test_scaling_measures_only_the_policies_and_batch_sizes_asked_for(tmp_path):
    out = tmp_path / "scaling"
    args = ["bench", "--scaling", "--sizes", "60", "--policies", "2x16", "--batches", "3,2", "--seconds", "0.05",
            "--no-training", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads((out / "scaling.json").read_text())["rows"]
    assert [(r["neurons"], r["policy"], r["B"]) for r in rows] == [(60, "2x16", 2), (60, "2x16", 3)]
    assert all("training_neuron_steps_per_s" not in r for r in rows)
    assert "not measured (--no-training)" in (out / "scaling.md").read_text()


def test_scaling_refuses_an_unknown_policy_naming_the_allowed_ones(tmp_path, capsys):
    assert main(["bench", "--scaling", "--policies", "2x64", "--out", str(tmp_path / "s")]) == 2
    assert "--policies takes 2x16, 2x128 (got 2x64)" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_public_narla_comparison_refuses_a_path_without_the_public_package(tmp_path):
    done = subprocess.run([sys.executable, "examples/vs_public_narla.py", "--narla-path", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "--narla-path" in done.stderr and "no narla/ package" in done.stderr


def test_the_batch_time_example_times_each_tick_and_its_end_by_the_copies_it_computed():
    import narla.rollout
    from examples.batch_time import products_alone, timed_batches

    tick = narla.rollout._tick
    widths, phases, run = timed_batches(32, 2)
    assert narla.rollout._tick is tick  # the timing wrappers are taken off again
    assert len(phases) == 2 and all(c > 0 and u > 0 and valid > 0 for c, u, valid, _ in phases)
    assert widths and all(1 <= w <= 32 for w in widths)
    assert all(len(w["tick"]) == len(w["end"]) >= 1 for w in widths.values())
    assert sum(len(w["tick"]) for w in widths.values()) >= max(valid for _, _, valid, _ in phases) // 32
    assert products_alone(run, 3, repeats=2) > 0


def test_the_batch_time_examples_update_floor_skips_the_kept_layers_forward_product():
    from torch.utils.flop_counter import FlopCounterMode

    from examples.batch_time import timed_batches, update_products_alone

    _, phases, run = timed_batches(32, 1)
    assert all(kept for *_, kept in phases)  # a B = 32 batch of the 5-layer network keeps its last hidden layer

    def flops(kept: bool) -> int:  # of the warm-up call and one timed call
        with FlopCounterMode(display=False) as counter:
            assert update_products_alone(run, 100, kept, repeats=1) > 0
        return counter.get_total_flops()

    weights = run.engine.population.policy.weights
    neurons, h1, h2 = weights[1].shape
    assert flops(False) - flops(True) == 2 * (2 * neurons * 100 * h1 * h2)


@pytest.mark.parametrize(("argv", "said"), [
    (["--device", "tpu"], "--device 'tpu': not a device; allowed: cpu, cuda, cuda:N"),
    (["--threads", "-1"], "--threads: must be >= 0"),
    (["--seconds", "0"], "--seconds: must be > 0"),
    (["--rounds", "0"], "--rounds: must be >= 1"),
    (["--batches", "64"], "--batches: only with --scaling"),
    (["--sizes", "100", "--build-only"], "--sizes, --build-only: only with --scaling"),
])
def test_bench_refuses_a_bad_argument_naming_it(argv, said, capsys):
    assert main(["bench", "--quick", *argv]) == 2
    assert said in capsys.readouterr().err
