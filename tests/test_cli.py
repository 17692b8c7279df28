"""The ``narla`` command line's own options."""

from types import SimpleNamespace

import pytest
import torch

from narla import cli
from narla.tasks.sharded import ShardedVectorEnv


class _Task:
    def __init__(self, env) -> None:
        self.env, self.closed = env, False

    def close(self) -> None:
        self.closed = True


class _Trainer:
    """Records the torch threads it trains with."""

    def __init__(self, env) -> None:
        self.run = SimpleNamespace(task=_Task(env))

    def train(self) -> dict:
        return {"threads": torch.get_num_threads()}


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_narla_run_gives_torch_one_thread_beside_a_task_that_steps_in_worker_processes(restore_threads):
    trainer = _Trainer(object.__new__(ShardedVectorEnv))  # the type is what matters; no processes started
    assert cli._train(trainer) == {"threads": 1} and trainer.run.task.closed


def test_narla_run_threads_overrides_the_default(restore_threads):
    assert cli._train(_Trainer(object.__new__(ShardedVectorEnv)), threads=2) == {"threads": 2}


def test_narla_run_leaves_torch_threads_alone_for_a_task_in_this_process(restore_threads):
    torch.set_num_threads(2)
    assert cli._train(_Trainer(None)) == {"threads": 2}


def test_narla_run_refuses_threads_below_one_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "scenarios/cartpole_1layer.yaml", "--threads", "0"])
    assert exit_info.value.code == 2 and "--threads: must be an integer >= 1, got 0" in capsys.readouterr().err
