"""TensorBoard scalars of a training run (``training.log: [csv, tensorboard]``), beside ``episodes.csv``.

One point per update, at step = episodes finished so far: ``return/batch_mean``, ``return/window_mean`` (the solve
rule's window), ``episode/length``, ``train/loss``, ``firing/L<k>`` (each layer's firing rate) and
``reward/<term>/L<k>`` (each reward component per layer), the batch means of the columns of ``episodes.csv``;
``test/mean`` and ``test/std`` where ``training.test_every`` is set. Event files go to ``RUN_DIR/tensorboard``:
``tensorboard --logdir runs`` shows every run.
"""

from __future__ import annotations

from pathlib import Path

from narla.scenario import ScenarioError


def scalar_name(column: str) -> str | None:
    """The TensorBoard tag of an ``episodes.csv`` column (None for columns not logged)."""
    if column == "length":
        return "episode/length"
    if column.startswith("firing_L"):
        return f"firing/{column[len('firing_'):]}"
    if column.startswith("reward_") and "_L" in column:
        term, layer = column[len("reward_"):].rsplit("_L", 1)
        return f"reward/{term}/L{layer}"
    return None


class TensorBoardLog:
    """Writes a run's scalars to ``log_dir`` with ``torch.utils.tensorboard`` (needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ScenarioError(
                "training.log: 'tensorboard' needs the tensorboard package: pip install 'narla[tensorboard]'"
            ) from err
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def update(self, step: int, rows: dict[str, list[float]], loss: float, window_mean: float) -> None:
        """One update: the batch's per-episode ``rows`` (as :func:`narla.training.episode_rows`, on the host)."""
        returns = rows["return"]
        self.writer.add_scalar("return/batch_mean", sum(returns) / len(returns), step)
        self.writer.add_scalar("return/window_mean", window_mean, step)
        self.writer.add_scalar("train/loss", loss, step)
        for column, values in rows.items():
            tag = scalar_name(column)
            if tag is not None:
                self.writer.add_scalar(tag, sum(values) / len(values), step)

    def test(self, step: int, mean: float, std: float) -> None:
        self.writer.add_scalar("test/mean", mean, step)
        self.writer.add_scalar("test/std", std, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
