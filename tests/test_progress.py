"""Training progress: one rate, the solve rule beside the episode count, and plain lines off a terminal."""

import io

from narla.progress import TrainingProgress


def test_progress_off_a_terminal_writes_plain_lines_with_one_rate_and_the_solve_rule():
    stream = io.StringIO()
    progress = TrainingProgress(20000, 300.0, 100, solve_after=1000, strict=True, stream=stream, interval_s=0.0)
    progress.update(16, 21.5, 16)
    progress.update(32, 22.0, 32)
    progress.close(32, "solved")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[0].startswith("episode 16/20,000: ") and lines[0].count("ep/s") == 1
    assert "last-16 mean 21.5 (solved at > 300 over 100 episodes, after episode 1,000)" in lines[0]
    assert lines[-1].endswith("; solved")


def test_progress_off_a_terminal_is_quiet_between_intervals():
    stream = io.StringIO()
    progress = TrainingProgress(100, None, 100, stream=stream, interval_s=3600.0)
    for episode in range(1, 50):
        progress.update(episode, 10.0, episode)
    assert stream.getvalue() == ""
    progress.close(49, "max_episodes")
    assert stream.getvalue().count("\n") == 1


def test_disabled_progress_writes_nothing():
    stream = io.StringIO()
    progress = TrainingProgress(100, 300.0, 100, enabled=False, stream=stream, interval_s=0.0)
    progress.update(10, 1.0, 10)
    progress.close(10, "solved")
    assert stream.getvalue() == ""


def test_a_run_with_a_step_budget_counts_environment_steps_against_it():
    stream = io.StringIO()
    progress = TrainingProgress(100_000_000, None, 100, stream=stream, interval_s=0.0, step_budget=5_000_000)
    progress.update(16, 700.0, 16, env_steps=15_360)
    progress.close(16, "max_env_steps", env_steps=15_360)
    first, last = stream.getvalue().splitlines()
    assert first.startswith("env steps 15,360/5,000,000 (episode 16): ")
    assert last.endswith("; max_env_steps")
