"""Any gymnasium environment id as a batched :class:`Task`, through ``gymnasium.vector``."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from narla.tasks.base import Task
from narla.tasks.normalize import RunningNormalizer
from narla.tasks.sharded import ShardedVectorEnv


class _MakeEnv:
    """Picklable environment factory, so worker processes can build copies under any start method."""

    def __init__(
        self, env_id: str, env_kwargs: dict[str, Any], wrapper: Callable[[gym.Env], gym.Env] | None = None
    ) -> None:
        self.env_id = env_id
        self.env_kwargs = env_kwargs
        self.wrapper = wrapper

    def __call__(self) -> gym.Env:
        env = gym.make(self.env_id, **self.env_kwargs)
        return env if self.wrapper is None else self.wrapper(env)


def resolve_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``; a ``"module:Name-v0"`` id imports ``module`` first (as ``gym.make`` does).

    Raises:
        ValueError: the id is not registered, or its module cannot be imported.
    """
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"gymnasium environment id {env_id!r}: cannot import module {module!r} ({err})") from err
    try:
        return gym.spec(name)
    except gym.error.Error as err:
        raise ValueError(f"unknown gymnasium environment id {env_id!r}: {err}") from err


class GymVectorTask(Task):
    """``B`` copies of a gymnasium environment behind the batched torch :class:`Task` interface.

    Copies run in a ``SyncVectorEnv`` (one process, stepped in turn) or, with ``asynchronous=True``, in
    ``num_workers`` worker processes (default: one per CPU core, at most ``B``), each stepping ``B / W``
    consecutive copies (:class:`narla.tasks.sharded.ShardedVectorEnv`); copy ``i`` is seeded ``seed + i`` either way.
    Auto-reset is gymnasium's SAME_STEP mode: a finished copy's observation is already its next start.

    Observations must be a ``Box`` (flattened to ``[B, S]``) or ``Discrete`` (one-hot ``[B, n]``); they come
    back as float32 on ``device``. Actions are moved to the host and cast to the action space's dtype and
    shape: ``[B]`` for Discrete, ``[B, *shape]`` for Box. With ``normalize_obs`` every observation passes
    through a :class:`RunningNormalizer` (``self.normalizer``) whose statistics are updated only while
    ``self.training`` is True; set it to False for evaluation. ``env_kwargs`` go to ``gym.make`` (e.g.
    ``{"max_episode_steps": 200}``); ``wrapper`` (picklable) wraps each copy after ``gym.make``.
    An id ``"module:Name-v0"`` imports ``module`` in every process first.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        device: str | torch.device = "cpu",
        asynchronous: bool = False,
        num_workers: int | None = None,
        normalize_obs: bool = False,
        env_kwargs: dict | None = None,
        wrapper: Callable[[gym.Env], gym.Env] | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_workers is not None:
            if not asynchronous:
                raise ValueError("num_workers applies only with asynchronous=True")
            if not 1 <= num_workers <= num_envs:
                raise ValueError(f"num_workers must be between 1 and num_envs={num_envs}, got {num_workers}")
        env_kwargs = dict(env_kwargs or {})
        spec = resolve_spec(env_id)
        max_episode_steps = env_kwargs.get("max_episode_steps", spec.max_episode_steps)
        if max_episode_steps is None:
            raise ValueError(
                f"gymnasium environment {env_id!r} has no time limit; pass env_kwargs={{'max_episode_steps': N}}"
            )

        env_fns = [_MakeEnv(env_id, env_kwargs, wrapper) for _ in range(num_envs)]
        if asynchronous:
            workers = num_workers if num_workers is not None else max(1, min(num_envs, os.cpu_count() or 1))
            self.env = ShardedVectorEnv(env_fns, workers)
        else:
            self.env = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

        obs_space = self.env.single_observation_space
        if isinstance(obs_space, gym.spaces.Box):
            obs_dim = int(np.prod(obs_space.shape))
        elif isinstance(obs_space, gym.spaces.Discrete):
            obs_dim = int(obs_space.n)
        else:
            self.env.close()
            raise TypeError(
                f"gymnasium environment {env_id!r}: observation space {obs_space} is not supported (Box or Discrete)"
            )

        self.env_id = env_id
        self.num_envs = num_envs
        self.obs_dim = obs_dim
        self.action_space = self.env.single_action_space
        self.device = torch.device(device)
        self.max_episode_steps = int(max_episode_steps)
        self.solve = None
        self.training = True
        self.normalizer = RunningNormalizer(obs_dim, device=self.device) if normalize_obs else None

    def _to_obs(self, obs: np.ndarray) -> torch.Tensor:
        """Host observations of B copies → ``[B, S]`` float32 on ``device``, normalized if enabled."""
        if isinstance(self.env.single_observation_space, gym.spaces.Discrete):
            out = torch.nn.functional.one_hot(torch.as_tensor(obs, dtype=torch.int64), self.obs_dim)
        else:
            out = torch.as_tensor(obs).reshape(self.num_envs, self.obs_dim)
        out = out.to(device=self.device, dtype=torch.float32)
        if self.normalizer is not None:
            if self.training:
                self.normalizer.update(out)
            out = self.normalizer.normalize(out)
        return out

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy (copy i seeded with ``seed + i``); returns obs ``[B, S]`` float32."""
        obs, _ = self.env.reset(seed=seed)
        return self._to_obs(obs)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step every copy; ``action`` is ``[B]`` (Discrete) or ``[B, *shape]`` (Box) on any device."""
        space = self.action_space
        host_action = action.detach().cpu().numpy().reshape((self.num_envs, *space.shape)).astype(space.dtype)
        obs, reward, terminated, truncated, infos = self.env.step(host_action)
        self._final = (obs, terminated | truncated, infos)  # references only: the terminal observations, if asked
        return (
            self._to_obs(obs),
            torch.as_tensor(reward, dtype=torch.float32).to(self.device),
            torch.as_tensor(terminated, dtype=torch.bool).to(self.device),
            torch.as_tensor(truncated, dtype=torch.bool).to(self.device),
        )

    def final_observation(self) -> torch.Tensor | None:
        """The last step's observations with each finished copy's terminal one (gymnasium's ``final_obs``)."""
        final = getattr(self, "_final", None)
        if final is None:
            return None
        obs, done, infos = final
        obs = np.array(obs, copy=True)
        if done.any() and "final_obs" in infos:
            for i in np.flatnonzero(done):
                obs[i] = infos["final_obs"][i]
        return self._to_obs(obs)

    def render(self) -> np.ndarray:
        """Copy 0's frame (the environments must be made with ``render_mode="rgb_array"``)."""
        frame = self.env.render()
        return np.asarray(frame[0] if isinstance(frame, (tuple, list)) else frame)

    def close(self) -> None:
        """Close the vector environment and its worker processes."""
        self.env.close()
