"""How far a PyBullet walker's torso travels in each episode: whether a policy walks, not only what it scores.

On ``AntBulletEnv-v0`` a return near 1,000 does not mean walking: the reward is an alive bonus of 1 per tick plus
progress towards a target 1 km ahead on x, less energy and joint-limit costs, so an ant that stands still for the
1,000 ticks scores about 980 and one metre forward adds only about 60 (the progress term is the change in distance
over the 0.0165 s control step). :class:`TravelTask` wraps an in-process PyBullet task and reports each copy's
torso displacement along x, in metres, over the first episode it plays after each reset of the task.
"""

from __future__ import annotations

import gymnasium as gym
import torch

from narla.tasks.base import Task


class _TorsoLog(gym.Wrapper):
    """One copy: its torso's x when armed, and how far it moved by the end of the episode that follows."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.armed, self.start, self.travelled = False, 0.0, None

    def _x(self) -> float:
        return float(self.env.unwrapped.robot.body_xyz[0])

    def arm(self) -> None:
        self.armed, self.start, self.travelled = True, self._x(), None

    def step(self, action):
        out = self.env.step(action)
        if self.armed and (out[2] or out[3]):  # before the vector env resets this copy
            self.travelled, self.armed = self._x() - self.start, False
        return out


class TravelTask(Task):
    """``task`` (a :class:`~narla.tasks.gym_vector.GymVectorTask` of a PyBullet walker, copies in this process)
    that also records, per copy and task reset, the torso's x displacement (m) over the copy's first episode.

    :meth:`distances` returns them in the order episodes are counted by :func:`narla.evaluate.evaluate`: task
    resets in turn, copies ``0 … B-1`` within each. Copies that had not finished an episode are left out.
    """

    def __init__(self, task: Task) -> None:
        envs = getattr(getattr(task, "env", None), "envs", None)
        if envs is None:
            raise ValueError("distance: needs a PyBullet walker (e.g. ant) whose gymnasium copies step in this "
                             "process; this task has none")
        if not all(hasattr(e.unwrapped, "robot") for e in envs):
            raise ValueError(f"distance: {getattr(task, 'env_id', 'this task')} is not a PyBullet walker "
                             "(its environments have no robot torso to follow)")
        self.inner = task
        self.logs = [_TorsoLog(e) for e in envs]
        task.env.envs = self.logs
        self.num_envs, self.action_space, self.obs_dim = task.num_envs, task.action_space, task.obs_dim
        self.device, self.max_episode_steps, self.solve = task.device, task.max_episode_steps, task.solve
        self._distances: list[float] = []

    def _collect(self) -> None:
        self._distances += [log.travelled for log in self.logs if log.travelled is not None]
        for log in self.logs:
            log.travelled = None

    def reset(self, seed: int | None = None) -> torch.Tensor:
        self._collect()
        obs = self.inner.reset(seed)
        for log in self.logs:
            log.arm()
        return obs

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.inner.step(action)

    def distances(self) -> list[float]:
        """Torso x displacements (m), one per finished first episode so far."""
        self._collect()
        return list(self._distances)

    def close(self) -> None:
        self.inner.close()
