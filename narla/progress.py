"""Progress of a training run on stderr: a live bar on a terminal, a line now and then everywhere else.

What it shows is what a run's end depends on: episodes done of ``training.max_episodes`` (or, for a run with a
budget of environment steps, ``training.max_env_steps``, the steps done of it), one episode rate (of this call), and
the solve rule's window mean beside its threshold. It shows no time left: a run usually ends by
solving, long before ``max_episodes``, so a forecast from ``max_episodes`` would mislead.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm


class TrainingProgress:
    """``update(episodes, window_mean, window_len)`` after every batch; ``close()`` at the end.

    On a terminal (``stream.isatty()``) it draws a tqdm bar; otherwise it writes one plain line every
    ``interval_s`` seconds and one at the end, so logs of batch jobs stay small.
    """

    def __init__(
        self, total: int, threshold: float | None, window: int, solve_after: int = 0, strict: bool = False,
        enabled: bool = True, initial: int = 0, stream: TextIO | None = None, interval_s: float = 30.0,
        step_budget: int | None = None, initial_steps: int = 0,
    ) -> None:
        self.total, self.threshold, self.window, self.solve_after = total, threshold, window, solve_after
        self.step_budget = step_budget
        self.strict = strict
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval_s = interval_s
        self.start, self.initial = time.perf_counter(), initial
        self.last_line = self.start
        self.text = ""
        self.bar = None
        if self.tty:
            unit = "episodes" if step_budget is None else "env steps"
            self.bar = tqdm(total=total if step_budget is None else step_budget,
                            initial=initial if step_budget is None else initial_steps, file=self.stream,
                            dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} " + unit + " {postfix}")

    def describe(self, episodes: int, window_mean: float, window_len: int) -> str:
        """e.g. ``12.5 ep/s, last-100 mean 245.1 (solved at > 300 over 100 episodes, after episode 1,000)``."""
        elapsed = time.perf_counter() - self.start
        rate = (episodes - self.initial) / elapsed if elapsed > 0 else 0.0
        text = f"{rate:.1f} ep/s, last-{window_len} mean {window_mean:.1f}"
        if self.threshold is not None:
            op = ">" if self.strict else "≥"
            after = f", after episode {self.solve_after:,}" if self.solve_after else ""
            text += f" (solved at {op} {self.threshold:g} over {self.window} episodes{after})"
        return text

    def update(self, episodes: int, window_mean: float, window_len: int, env_steps: int = 0) -> None:
        if not self.enabled:
            return
        self.text = self.describe(episodes, window_mean, window_len)
        if self.bar is not None:
            self.bar.update((episodes if self.step_budget is None else env_steps) - self.bar.n)
            self.bar.set_postfix_str(self.text, refresh=True)
            return
        now = time.perf_counter()
        if now - self.last_line >= self.interval_s:
            self._line(episodes, env_steps=env_steps)
            self.last_line = now

    def _line(self, episodes: int, status: str = "", env_steps: int = 0) -> None:
        end = f"; {status}" if status else ""
        done = f"episode {episodes:,}/{self.total:,}" if self.step_budget is None else (
            f"env steps {env_steps:,}/{self.step_budget:,} (episode {episodes:,})")
        print(f"{done}: {self.text}{end}", file=self.stream, flush=True)

    def close(self, episodes: int, status: str, env_steps: int = 0) -> None:
        """Finish the bar, or write the last line with the run's status."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            self._line(episodes, status, env_steps)


def progress_bar(total: int, initial: int = 0, desc: str = "", unit: str = "it", stream: TextIO | None = None,
                 interval_s: float = 30.0) -> tqdm:
    """A tqdm bar for long work that is not a training run (a teacher's PPO, a distillation): live on a terminal,
    refreshed only every ``interval_s`` seconds elsewhere, so logs of batch jobs stay small."""
    stream = stream if stream is not None else sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=tty,
                mininterval=0.1 if tty else interval_s, ascii=not tty)
