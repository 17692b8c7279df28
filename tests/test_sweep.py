"""``narla sweep`` (parallel trials, failures recorded, finished trials skipped) and the Table 1 rendering."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from narla.analysis import table1
from narla.cli import main as cli_main
from narla.scenario import ScenarioError
from narla.sweep import Trial, aggregate, load_record, parse_grid, parse_seeds

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "cartpole_1layer.yaml"
TINY = ["--set", "training.max_episodes=3", "--set", "task.max_episode_steps=20", "--set", "neuron.hidden=[8]"]


def test_parse_seeds_and_grid():
    assert parse_seeds("0-2,5") == [0, 1, 2, 5]
    assert parse_grid(["learning.lr=0.001,0.003", "task.num_envs=2"]) == {
        "learning.lr": [0.001, 0.003], "task.num_envs": [2]}
    for bad in ("a", "3-1"):
        with pytest.raises(ScenarioError):
            parse_seeds(bad)
    with pytest.raises(ScenarioError):
        parse_grid(["learning.lr"])


def test_sweep_parallel_failure_and_skip(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", str(SCENARIO), "--grid", "network.width=2,-1", "--seeds", "0-1", "--out", str(out),
            "--workers", "2", "--quiet", *TINY]
    assert cli_main(argv) == 1  # some trials failed (their network cannot be built), the others finished
    printed = capsys.readouterr()
    assert "network.width=2" in printed.out and "0/2 (2 failed)" in printed.out
    assert "sweep: cartpole_1layer network.width=-1: 2 failed: " in printed.err and "network.width" in printed.err

    good = [out / "cartpole_1layer" / "network.width=2" / f"seed{s}" for s in (0, 1)]
    bad = [out / "cartpole_1layer" / "network.width=-1" / f"seed{s}" for s in (0, 1)]
    for d in good:
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "max_episodes" and summary["episodes"] == 3
        assert (d / "episodes.csv").is_file() and (d / "model.pt").is_file()
    for d in bad:
        assert "network.width" in json.loads((d / "summary.json").read_text())["status"]

    with open(out / "sweep.csv", newline="") as f:
        cells = {row["cell"]: row for row in csv.DictReader(f)}
    ok, failed = cells["cartpole_1layer network.width=2"], cells["cartpole_1layer network.width=-1"]
    assert ok["failed"] == "0" and float(ok["solved_at_mean"]) == 3.0  # unsolved counts as the cap
    assert failed["failed"] == "2" and "network.width" in failed["errors"]
    with open(out / "trials.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4

    stamps = [(d / "summary.json").stat().st_mtime_ns for d in good]
    assert cli_main(argv) == 1
    assert [(d / "summary.json").stat().st_mtime_ns for d in good] == stamps  # finished trials are skipped

    summary = json.loads((good[0] / "summary.json").read_text())
    (good[0] / "summary.json").write_text(json.dumps({**summary, "status": "failed: interrupted"}))
    assert cli_main(argv) == 1  # an unfinished trial starts over in its directory
    assert json.loads((good[0] / "summary.json").read_text())["status"] == "max_episodes"
    assert (good[1] / "summary.json").stat().st_mtime_ns == stamps[1]


def test_a_sweep_with_a_bad_field_or_reward_stops_before_any_trial_naming_the_cell(tmp_path, capsys):
    out = tmp_path / "sweep"
    cases = [(["--grid", "learning.lr=0.001,-1"], "cartpole_1layer learning.lr=-1: learning.lr: must be > 0"),
             (["--set", "nosuch=1"], "cartpole_1layer: nosuch: unknown field"),
             (["--set", "rewards=[task,nosuch]"], "rewards.terms[1].name: unknown reward 'nosuch'")]
    for extra, said in cases:
        assert cli_main(["sweep", str(SCENARIO), "--seeds", "0-1", "--out", str(out), "--quiet", *TINY, *extra]) == 2
        assert said in capsys.readouterr().err
        assert not out.exists()  # nothing ran, nothing was written


def _fake_trial(root: Path, name: str, seed: int, solved_at: int | None, episodes: int,
                status: str | None = None, machine: dict | None = None) -> dict:
    trial = Trial(scenario=f"scenarios/table1/paper/{name}.yaml", grid=(), seed=seed, out=str(root))
    trial.dir.mkdir(parents=True)
    status = status or ("solved" if solved_at else "max_episodes")
    summary = {"status": status, "solved_at": solved_at, "episodes": episodes, "final_mean_return": 310.0,
               "wall_time_s": 60.0, **({"machine": machine} if machine else {})}
    (trial.dir / "summary.json").write_text(json.dumps(summary))
    (trial.dir / "scenario.yaml").write_text(yaml.safe_dump({"training": {"max_episodes": 20000}}))
    with open(trial.dir / "episodes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "return"])
        writer.writerows([i + 1, min(500, 10 + i)] for i in range(episodes))
    return load_record(trial)


def test_table1_renders_the_paper_cells_beside_the_papers_numbers(tmp_path):
    records = [
        _fake_trial(tmp_path / "runs", "all_L1", 0, 1400, 1400),
        _fake_trial(tmp_path / "runs", "all_L1", 1, 1600, 1600),
        _fake_trial(tmp_path / "runs", "task_L5", 0, None, 20000, status="max_episodes"),
    ]
    cells = {c["cell"]: c for c in aggregate(records)}
    assert cells["task_L5"]["solved_at_mean"] == 20000  # unsolved counts as the cap
    path = table1.render(records, [], tmp_path / "docs", "python -m narla.analysis.table1")
    text = path.read_text()
    assert ("| All | 1 (16) | 1,480 | 1,500 ± 141 | matches (1,400 – 1,600) | 1,500 | 1,400 – 1,600 | 2/2 | — | "
            "2/2 (median 500) |") in text
    assert ("| Task | 5 (76) | 20,000 | 20,000 ± 0 | matches (20,000 – 20,000) | 20,000 | 20,000 – 20,000 | 0/1 | — | "
            "1/1 (median 500) |") in text
    assert "1,275" in text and "7,691" in text and "Bio → All (switch at 500, the code)" in text
    assert (tmp_path / "docs" / "table1" / "paper_all_L1.png").stat().st_size > 1000


def test_table1_names_the_machines_its_runs_recorded(tmp_path):
    amd = {"cpu": "AMD EPYC", "cpu_capability": "AVX2", "cpus": 2, "torch": "2.13.0", "threads": 1}
    records = [_fake_trial(tmp_path, "all_L1", 0, 1400, 1400, machine=amd),
               _fake_trial(tmp_path, "all_L1", 1, 1600, 1600, machine=amd),
               _fake_trial(tmp_path, "all_L2", 0, 1500, 1500)]
    assert table1.machines(records) == ("AMD EPYC (AVX2 kernels), 2 CPUs, torch 2.13.0, 1 thread(s): 2 trial(s); "
                                        "not recorded: 1 trial(s)")


def test_table1_gives_lower_bounds_while_runs_of_a_cell_are_still_running(tmp_path):
    records = [
        _fake_trial(tmp_path / "runs", "all_L2", 0, 1400, 1400),
        _fake_trial(tmp_path / "runs", "all_L2", 1, None, 800, status="paused"),
        _fake_trial(tmp_path / "runs", "all_L2", 2, None, 900, status="paused"),
    ]
    stats = table1.cell_stats(records)
    assert stats["open"] == 2 and stats["median"] == 901
    text = table1.render(records, [], tmp_path / "docs", "python -m narla.analysis.table1").read_text()
    assert "| All | 2 (31) | 1,910 | ≥ 1,034 | — | ≥ 901 | ≥ 801 – ≥ 1,400 | 1/3 | 2 (episodes 800–900) |" in text


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc (Linux)")
def test_sigterm_to_a_sweep_stops_its_workers_and_keeps_no_half_trial(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sweep"
    command = [sys.executable, "-c", "import sys; from narla.cli import main; sys.exit(main(sys.argv[1:]))",
               "sweep", str(SCENARIO), "--out", str(out), "--workers", "1", "--quiet",
               "--set", "training.max_episodes=1000000", "--set", "training.solve_threshold=1000000"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list(out.rglob("episodes.csv")) and time.time() < deadline:
            time.sleep(0.2)
        assert list(out.rglob("episodes.csv")), "the trial never started"
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        workers = [int(p) for p in children if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        assert "interrupted" in proc.stderr.read()
        deadline = time.time() + 30
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers)
        assert not list(out.rglob("summary.json"))  # the interrupted trial is not recorded as finished
    finally:
        if proc.poll() is None:
            proc.kill()


def test_table1_rejects_a_bad_worker_count_before_any_trial(tmp_path, capsys):
    assert table1.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "docs"), "--workers", "0"]) == 2
    assert "--workers: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def _record(cell: str, seed: int, solved_at: int | None, cap: int = 400) -> dict:
    return {"cell": cell, "scenario": cell, "seed": seed, "status": "solved" if solved_at else "max_episodes",
            "solved_at": solved_at, "episodes": solved_at or cap, "cap": cap, "final_mean_return": 100.0,
            "wall_time_s": 1.0, "dir": ""}


def test_the_sweep_table_marks_censored_cells_and_gives_solved_only_statistics():
    from narla.sweep import format_table

    text = format_table(aggregate([_record("mixed", 0, 100), _record("mixed", 1, None), _record("never", 0, None)]))
    mixed = next(line for line in text.splitlines() if line.startswith("mixed"))
    never = next(line for line in text.splitlines() if line.startswith("never"))
    assert mixed.split()[1:4] == ["1/2", "≥", "250"]  # the unsolved seed counts as the cap: a lower bound
    assert mixed.split()[-2] == "100"  # solved only: the one solved seed
    assert "not solved (cap 400)" in never and "≥" not in never
    assert "counts as its cap" in text


def _cells_without_time(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in csv.DictReader(f)]


def test_a_sweep_on_a_local_ray_instance_gives_the_same_sweep_csv_as_the_process_pool(tmp_path):
    pytest.importorskip("ray")
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({
        "name": "small", "task": {"id": "cartpole", "num_envs": 2, "max_episode_steps": 30},
        "network": {"builder": "layered", "hidden_layers": 1, "width": 3}, "neuron": {"hidden": [8]},
        "training": {"max_episodes": 4},
    }))
    common = [str(path), "--grid", "learning.lr=0.01,0.001", "--seeds", "0-1", "--workers", "2", "--quiet"]
    assert cli_main(["sweep", *common, "--out", str(tmp_path / "pool")]) == 0
    assert cli_main(["sweep", *common, "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0
    pool = _cells_without_time(tmp_path / "pool" / "sweep.csv")
    ray = _cells_without_time(tmp_path / "ray" / "sweep.csv")
    assert len(ray) == 2 and ray == pool
    summary = tmp_path / "ray" / "small" / "learning.lr=0.01" / "seed0" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    assert cli_main(["sweep", *common, "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0  # all finished
    assert summary.stat().st_mtime_ns == stamp


def test_the_bootstrap_interval_of_a_cell_holds_its_mean_and_is_the_same_on_every_render():
    from narla.analysis.table1 import mean_interval

    values = [1001.0, 1200.0, 1350.0, 2184.0, 1500.0, 1100.0, 1306.0, 1700.0, 1050.0, 2000.0]
    low, high = mean_interval(values)
    assert low < sum(values) / len(values) < high
    assert (low, high) == mean_interval(values)
    assert mean_interval([20000.0] * 10) == (20000.0, 20000.0)


def test_a_cell_beats_matches_or_falls_short_of_the_papers_mean_by_its_interval():
    from narla.analysis.table1 import against_paper

    assert against_paper((1200.0, 1700.0), 1480) == "matches"
    assert against_paper((3029.0, 4644.0), 4824) == "beats"  # fewer episodes to solve than the paper
    assert against_paper((1500.0, 1900.0), 1275) == "short"


def test_table1_starts_the_cells_with_the_most_hidden_layers_first():
    from narla.sweep import Trial

    trials = [Trial(f"scenarios/table1/paper/{name}.yaml", (), 0, "out")
              for name in ("all_L1", "all_L2", "all_L5", "task_L1", "task_L5", "all_relay_L2")]
    order = [Path(t.scenario).stem for t in table1.largest_first(trials)]
    assert order == ["all_L5", "task_L5", "all_L2", "all_relay_L2", "all_L1", "task_L1"]



@pytest.mark.parametrize("separate", [False, True])
def test_a_grid_over_lists_runs_each_cell(tmp_path, separate):
    out = tmp_path / "sweep"
    argv = ["sweep", str(SCENARIO), "--grid", "rewards=[task],[activity]", "--seeds", "0", "--out", str(out),
            "--workers", "1", "--quiet", *TINY] + (["--separate-seeds"] if separate else [])
    assert cli_main(argv) == 0
    assert len(list(out.glob("cartpole_1layer/*/seed0/summary.json"))) == 2


def test_every_committed_scenario_passes_the_sweeps_check_before_trials():
    from narla.sweep import check_trials

    root = SCENARIO.parent
    files = [*root.glob("*.yaml"), *root.glob("table1/*/*.yaml")]
    check_trials([Trial(str(f), (), 0, "/nonexistent") for f in files])  # imports, where, phases and all


def test_the_sweeps_check_refuses_an_unknown_role_in_a_rewards_where_without_building_a_network(tmp_path):
    from narla.sweep import check_trials

    with pytest.raises(ScenarioError, match=r"rewards\.terms\[0\]\.where\.roles\[0\]: unknown role 'hiden'"):
        check_trials([Trial(str(SCENARIO), (), 0, str(tmp_path), ("rewards=[{name: task, where: {roles: [hiden]}}]",))])


def test_the_cartpole_page_gives_the_papers_mean_to_the_15_plus_1_network_and_none_to_the_lone_neuron(tmp_path):
    from narla.analysis.cartpole import render

    records = [{"scenario": stem, "seed": 0, "status": "solved", "solved_at": 500, "episodes": 600,
                "wall_time_s": 10.0} for stem in ("cartpole_1layer", "cartpole_2layer")]
    text = render(records, tmp_path, "cmd", None).read_text()
    assert ("1 hidden layer (15 + 1 neurons): 1/1 seeds solved, median 500 episodes (the paper's Table 1 mean for "
            "this network: 7,691)") in text
    assert "output neuron alone (1 neuron): 1/1 seeds solved, median 500 episodes (a network the paper did not run)" \
        in text
