"""PPO for a fully connected Gaussian policy: the *teacher* that whole narla networks are distilled from.

AttentionNeuron's permutation-invariant Ant agent was not evolved from scratch: its authors compare it with the
fully connected teacher it learned from (REFERENCES.md). This module trains such a teacher on any Box-action
:class:`~narla.tasks.gym_vector.GymVectorTask` (PyBullet Ant above all) with the clipped-surrogate PPO of
Schulman et al., read top to bottom in :func:`train_teacher`::

    collect   T ticks of B copies with a ~ N(μ(o), σ²) (state-independent, learned log σ)
    advantage A = GAE(γ, λ) on the reward scaled by the running std of the discounted return, V bootstrapped
              after the window's last tick (an episode's end, truncation included, counts as termination)
    learn     E epochs of minibatches: maximise min(ρ A, clip(ρ, 1 ± ε) A) − c_v (V − R)² with ρ = π/π_old,
              advantages standardised per minibatch, gradient norm clipped, learning rate annealed to 0

Observations go through the task's running normaliser (``normalize_obs``), whose statistics are saved with the
teacher: a student distilled from it (:mod:`narla.learning.distill`) reads the same normalised observations.
Every ``checkpoint_every`` updates ``teacher.pt`` is rewritten atomically (parameters, optimiser, normaliser,
reward scaler, random state, history), so :func:`train_teacher` resumes where a killed run stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from narla.checkpoint import save
from narla.learning.returns import EpisodeTally, gae
from narla.tasks.gym_vector import GymVectorTask

TEACHER = "teacher.pt"


@dataclass(frozen=True)
class PPOConfig:
    """PPO's settings; the defaults are the ones ``docs/results/ant_distill.md`` used on Ant."""

    hidden: tuple[int, ...] = (256, 256)
    steps_per_update: int = 256  # T ticks of every copy per update
    epochs: int = 10
    minibatch: int = 512
    lr: float = 2e-4
    gamma: float = 0.99
    lam: float = 0.95
    clip: float = 0.2
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    init_log_std: float = -1.0
    target_kl: float = 0.05  # an update's epochs stop early once the approximate KL passes this


class TeacherPolicy(nn.Module):
    """Separate actor and critic MLPs (ReLU) on ``[B, S]`` observations; the actor's mean is ``[B, A]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256), init_log_std: float = -1.0):
        super().__init__()

        def mlp(out: int, gain: float) -> nn.Sequential:
            layers: list[nn.Module] = []
            width = obs_dim
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            last = nn.Linear(width, out)
            nn.init.orthogonal_(last.weight, gain)
            nn.init.zeros_(last.bias)
            return nn.Sequential(*layers, last)

        self.actor = mlp(act_dim, 0.01)
        self.critic = mlp(1, 1.0)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``[B, A]`` (before clipping to the action bounds)."""
        return self.actor(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """``V(o)`` ``[B]``."""
        return self.critic(obs).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(obs), self.log_std.exp().expand(obs.shape[0], -1))


class ReturnScaler:
    """Divides rewards by the running standard deviation of each copy's discounted return (gymnasium's
    ``NormalizeReward``, kept here so its state is saved with the teacher)."""

    def __init__(self, num_envs: int, gamma: float) -> None:
        self.gamma = gamma
        self.ret = torch.zeros(num_envs, dtype=torch.float64)
        self.count, self.mean, self.var = 0.0, 0.0, 1.0

    def __call__(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.ret = self.ret * self.gamma + reward.double()
        batch_mean, batch_var, n = float(self.ret.mean()), float(self.ret.var(unbiased=False)), self.ret.numel()
        total = self.count + n
        delta = batch_mean - self.mean
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total
        self.ret = self.ret * (~done).double()
        return (reward / math.sqrt(self.var + 1e-8)).clamp(-10.0, 10.0)

    def state_dict(self) -> dict:
        return {"ret": self.ret, "count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict) -> None:
        self.ret, self.count, self.mean, self.var = state["ret"], state["count"], state["mean"], state["var"]


def load_teacher(run_dir: str | Path) -> tuple[TeacherPolicy, dict]:
    """The trained teacher of ``run_dir`` and its saved state (``normalizer``, ``history``, ``env_steps``, ...)."""
    path = Path(run_dir) / TEACHER
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: train the teacher first (narla.learning.ppo)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    policy = TeacherPolicy(state["obs_dim"], state["act_dim"], tuple(state["config"]["hidden"]))
    policy.load_state_dict(state["policy"])
    return policy, state


def train_teacher(
    task: GymVectorTask,
    out: str | Path,
    env_steps: int,
    config: PPOConfig = PPOConfig(),
    seed: int = 0,
    checkpoint_every: int = 10,
    progress: bool = True,
) -> dict:
    """Train (or resume, from ``OUT/teacher.pt``) a teacher on ``task`` until ``env_steps`` environment steps.

    ``task`` must have Box actions and ``normalize_obs``. Returns the saved state: ``policy``, ``normalizer``,
    ``history`` (per update: ``env_steps``, ``mean_return`` and ``episodes`` of the episodes that ended in it,
    ``wall_s``), ``env_steps``, ``wall_s``.
    """
    if task.normalizer is None:
        raise ValueError("train_teacher: the task must normalise observations (normalize_obs: true)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TEACHER
    b, act_dim = task.num_envs, int(task.action_space.shape[0])
    low = torch.as_tensor(task.action_space.low, dtype=torch.float32)
    high = torch.as_tensor(task.action_space.high, dtype=torch.float32)
    torch.manual_seed(seed)
    policy = TeacherPolicy(task.obs_dim, act_dim, config.hidden, config.init_log_std)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5)
    scaler = ReturnScaler(b, config.gamma)
    state = {"env_steps": 0, "wall_s": 0.0, "history": [], "updates": 0}
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        task.normalizer.load_state_dict(state["normalizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
    batch = config.steps_per_update * b
    total_updates = max(1, math.ceil(env_steps / batch))
    tally = EpisodeTally(b)
    obs = task.reset(seed=seed + 1000 * state["updates"])
    bar = None
    if progress and state["env_steps"] < env_steps:
        from narla.progress import progress_bar

        bar = progress_bar(total=env_steps, initial=state["env_steps"], desc="PPO teacher", unit="step")
    start = time.perf_counter() - state["wall_s"]

    def checkpoint() -> None:
        state.update(
            policy=policy.state_dict(), optimizer=optimizer.state_dict(), normalizer=task.normalizer.state_dict(),
            scaler=scaler.state_dict(), rng=torch.get_rng_state(), config=asdict(config), obs_dim=task.obs_dim,
            act_dim=act_dim, wall_s=time.perf_counter() - start,
        )
        save(path, state)

    try:
        while state["env_steps"] < env_steps:
            for group in optimizer.param_groups:  # linear annealing over the planned updates
                group["lr"] = config.lr * max(0.0, 1.0 - state["updates"] / total_updates)
            t_len = config.steps_per_update
            obs_buf = torch.zeros(t_len, b, task.obs_dim)
            act_buf = torch.zeros(t_len, b, act_dim)
            logp_buf, rew_buf, val_buf = torch.zeros(t_len, b), torch.zeros(t_len, b), torch.zeros(t_len, b)
            done_buf = torch.zeros(t_len, b, dtype=torch.bool)
            for t in range(t_len):
                with torch.no_grad():
                    dist = policy.distribution(obs)
                    action = dist.sample()
                    obs_buf[t], act_buf[t] = obs, action
                    logp_buf[t], val_buf[t] = dist.log_prob(action).sum(-1), policy.value(obs)
                obs, reward, terminated, truncated = task.step(torch.maximum(torch.minimum(action, high), low))
                done = terminated | truncated
                tally.add(reward, done)
                rew_buf[t], done_buf[t] = scaler(reward, done).float(), done
            with torch.no_grad():  # bootstrap the window's cut: add γ V(o_T) to its last reward where it runs on
                rew_buf[-1] += config.gamma * policy.value(obs) * (~done_buf[-1]).float()
            adv, ret = gae(rew_buf.unsqueeze(-1), val_buf.unsqueeze(-1), done_buf, config.gamma, config.lam)
            flat = {
                "obs": obs_buf.view(batch, -1), "act": act_buf.view(batch, -1), "logp": logp_buf.view(batch),
                "adv": adv.view(batch), "ret": ret.view(batch),
            }
            for _ in range(config.epochs):
                kl = 0.0
                for idx in torch.randperm(batch).split(config.minibatch):
                    dist = policy.distribution(flat["obs"][idx])
                    logp = dist.log_prob(flat["act"][idx]).sum(-1)
                    ratio = (logp - flat["logp"][idx]).exp()
                    a = flat["adv"][idx]
                    a = (a - a.mean()) / (a.std() + 1e-8)
                    surrogate = torch.min(ratio * a, ratio.clamp(1 - config.clip, 1 + config.clip) * a).mean()
                    value_loss = (policy.value(flat["obs"][idx]) - flat["ret"][idx]).pow(2).mean()
                    loss = -surrogate + config.value_coef * value_loss
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
                    optimizer.step()
                    with torch.no_grad():
                        kl = max(kl, float(((ratio - 1) - (logp - flat["logp"][idx])).mean()))
                if kl > config.target_kl:
                    break
            state["updates"] += 1
            state["env_steps"] += batch
            episodes, mean_return = tally.take()  # the episodes that ended in this window
            state["history"].append({
                "env_steps": state["env_steps"],
                "episodes": episodes,
                "mean_return": mean_return,
                "wall_s": round(time.perf_counter() - start, 1),
            })
            if bar is not None:
                bar.update(batch)
                if episodes:
                    bar.set_postfix(ret=f"{mean_return:.0f}")
            if state["updates"] % checkpoint_every == 0 or state["env_steps"] >= env_steps:
                checkpoint()
    finally:
        if bar is not None:
            bar.close()
    return state
