"""``B`` gymnasium copies split over ``W`` worker processes, each stepping its share in one ``SyncVectorEnv``.

gymnasium's ``AsyncVectorEnv`` gives every copy its own process: with 16 Ant copies on a 2-core machine that is
16 processes and 32 pipe messages per step, competing for two cores. Here ``W`` workers (one per core) each hold
``B / W`` consecutive copies: per step the parent sends each worker its slice of the actions, every worker steps
its copies while the others step theirs, and the parent gathers the results. Copy ``i`` is copy ``i`` of the whole
batch whatever ``W`` is, and with ``reset(seed=s)`` it is seeded with ``s + i``, exactly as in a
``SyncVectorEnv`` of all ``B`` copies, so results do not depend on how the copies are sharded.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


def _worker(pipe, env_fns: list[Callable[[], gym.Env]]) -> None:
    """Serve one shard: ``("reset", seed)``, ``("step", actions)``, ``("spaces", None)`` and ``("close", None)``."""
    env = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    try:
        while True:
            command, data = pipe.recv()
            if command == "reset":
                obs, _ = env.reset(seed=data)
                pipe.send(obs)
            elif command == "step":
                obs, reward, terminated, truncated, _ = env.step(data)
                pipe.send((obs, reward, terminated, truncated))
            elif command == "spaces":
                pipe.send((env.single_observation_space, env.single_action_space))
            elif command == "close":
                break
    except (KeyboardInterrupt, EOFError):  # the parent is interrupted too, or gone: clean up below
        return
    except Exception as err:  # report to the parent instead of dying silently
        pipe.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        env.close()
        pipe.close()


class ShardedVectorEnv:
    """``len(env_fns)`` copies over ``num_workers`` worker processes (see the module doc); a vector-env subset:
    ``reset``, ``step``, ``close``, ``single_observation_space``, ``single_action_space``, ``num_envs``."""

    def __init__(self, env_fns: list[Callable[[], gym.Env]], num_workers: int) -> None:
        if not 1 <= num_workers <= len(env_fns):
            raise ValueError(f"num_workers must be between 1 and num_envs={len(env_fns)}, got {num_workers}")
        self.num_envs = len(env_fns)
        bounds = np.linspace(0, self.num_envs, num_workers + 1).round().astype(int)
        self.starts = bounds[:-1].tolist()
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        ctx = mp.get_context("spawn")  # workers import only gymnasium and the environment, never a forked torch
        self.pipes, self.processes = [], []
        for part in self.slices:
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, env_fns[part]), daemon=True)
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)
        self.closed = False
        self.single_observation_space, self.single_action_space = self._call_all("spaces", [None] * num_workers)[0]

    def _call_all(self, command: str, data: list[Any]) -> list[Any]:
        for pipe, item in zip(self.pipes, data, strict=True):
            pipe.send((command, item))
        results = [pipe.recv() for pipe in self.pipes]  # every worker works while the parent waits on the first
        for result in results:
            if isinstance(result, tuple) and len(result) == 2 and result[0] == "error":
                self.close()
                raise RuntimeError(f"an environment worker failed: {result[1]}")
        return results

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        """Reset every copy (copy ``i`` seeded with ``seed + i``); returns ``(obs[B, ...], {})``."""
        seeds = [None if seed is None else seed + start for start in self.starts]
        return np.concatenate(self._call_all("reset", seeds)), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every copy with ``actions[B, ...]``; finished copies restart in the same step (SAME_STEP)."""
        parts = self._call_all("step", [actions[part] for part in self.slices])
        obs, reward, terminated, truncated = (np.concatenate(column) for column in zip(*parts, strict=True))
        return obs, reward, terminated, truncated, {}

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for pipe in self.pipes:
            with contextlib.suppress(BrokenPipeError, OSError):  # a worker that already exited needs no message
                pipe.send(("close", None))
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
