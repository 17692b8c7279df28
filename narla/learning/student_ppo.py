"""PPO fine-tuning of a whole narla network (a distilled AttentionNeuron or Cooperator) on its own returns.

Distillation (:mod:`narla.learning.distill`) leaves the permutation-invariant students far below their teacher on
Ant: they fit the teacher's actions on the teacher's states but drift on their own. CMA-ES from the student climbs
slowly (about +250 per 3.5M steps). This module is the gradient route: the student's deterministic action is the
mean of a Gaussian policy and PPO (:mod:`narla.learning.ppo`'s objective) trains it on the task's reward, with the
teacher's critic as the starting critic. Read top to bottom in :func:`finetune`::

    collect   T ticks of B copies: μ_t, m_t = student(o_t, m_{t−1}, a_{t−1}); a_t ~ N(μ_t, σ²) (σ learned,
              state independent); record o_t, a_{t−1}, episode starts, a_t, log π(a_t), V(o_t); keep the
              student's memory m at the window's first tick
    advantage A = GAE(γ, λ) on rewards scaled by the running std of the discounted return (the teacher's scaler,
              continued), V bootstrapped after the window; A standardised over the window
    learn     E epochs; each replays the window from the stored memory, ``tbptt`` ticks at a time (truncated
              backpropagation through time, as distillation trains), and steps Adam on
              − min(ρ A, clip(ρ, 1 ± ε) A) for the student and σ, (V − R)² for the critic; the epochs stop
              early once the approximate KL passes ``target_kl``

The critic reads the observations by position (it is the teacher's, a training aid only); the policy that is saved
and tested is the student alone, so its permutation invariance is untouched. ``model.pt`` is written in the format
every narla replay reads; ``ppo.pt`` (student, σ, critic, optimisers, scaler, random state, history) is rewritten
atomically every ``checkpoint_every`` updates, and a resumed run continues from it with fresh episodes.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from narla.checkpoint import save
from narla.context import action_features
from narla.evaluate import save_model
from narla.learning.distill import Student, require_cpu
from narla.learning.ppo import ReturnScaler, TeacherPolicy
from narla.learning.returns import EpisodeTally, gae

CHECKPOINT = "ppo.pt"


@dataclass(frozen=True)
class StudentPPOConfig:
    """The fine-tune's settings; the defaults are the ones ``docs/results/ant_distill.md`` used on Ant."""

    steps_per_update: int = 256  # T ticks of every copy per update
    epochs: int = 4
    tbptt: int = 16  # ticks per gradient step
    lr: float = 1e-4  # the student's and σ's Adam, annealed linearly to 0 over the planned updates
    critic_lr: float = 3e-4
    gamma: float = 0.99
    lam: float = 0.95
    clip: float = 0.2
    max_grad_norm: float = 0.5
    init_log_std: float = -2.3  # σ ≈ 0.10 at the start: exploration without losing the student's gait
    target_kl: float = 0.03
    critic_warmup: int = 8  # first updates train the critic only (the teacher's critic valued the teacher)
    compile: bool = False  # torch.compile the student's tick (see narla.learning.distill)


def finetune(run, init: dict, teacher: TeacherPolicy, teacher_state: dict, out: str | Path, env_steps: int,
             config: StudentPPOConfig = StudentPPOConfig(), seed: int = 0, checkpoint_every: int = 5,
             progress: bool = True) -> dict:
    """Fine-tune the whole-network population of ``run`` (built without a learner) by PPO up to ``env_steps``.

    ``init`` is a saved student (:func:`narla.evaluate.load_model`: its population and the observation statistics
    it reads, which stay frozen); ``teacher`` gives the starting critic and ``teacher_state`` its return scaler.
    Writes ``OUT/model.pt`` and ``OUT/ppo.pt``; resumes from ``OUT/ppo.pt`` when it exists. Returns the state:
    ``history`` per update (``env_steps``, ``episodes`` and ``mean_return`` of the episodes that ended in it,
    ``kl``, ``sigma``, ``wall_s``), ``env_steps``, ``wall_s``.
    """
    engine, task = run.engine, run.task
    require_cpu(engine, "student_ppo")
    if not engine.whole_network:
        raise ValueError("student_ppo: the student must be a whole-network population (attention_neuron, cooperator)")
    if getattr(task, "normalizer", None) is None or init.get("normalizer") is None:
        raise ValueError("student_ppo: the task and the saved student must normalise observations")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    population, space = engine.population, task.action_space
    population.load_state_dict(init["population"])
    task.normalizer.load_state_dict(init["normalizer"])
    task.training = False  # the statistics the student was trained on, frozen
    student = Student(engine, config.compile)
    b, act_dim = task.num_envs, int(space.shape[0])
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)
    log_std = nn.Parameter(torch.full((act_dim,), float(config.init_log_std)))
    critic = copy.deepcopy(teacher.critic)
    actor_params = [*population.parameters(), log_std]
    actor_opt = torch.optim.Adam(actor_params, lr=config.lr, eps=1e-5)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.critic_lr, eps=1e-5)
    scaler = ReturnScaler(b, config.gamma)
    scaler.load_state_dict({**teacher_state["scaler"], "ret": torch.zeros(b, dtype=torch.float64)})
    torch.manual_seed(seed)
    state = {"env_steps": 0, "wall_s": 0.0, "history": [], "updates": 0}
    path = out / CHECKPOINT
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        population.load_state_dict(state["population"])
        log_std.data.copy_(state["log_std"])
        critic.load_state_dict(state["critic"])
        actor_opt.load_state_dict(state["actor_opt"])
        critic_opt.load_state_dict(state["critic_opt"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
    t_len = config.steps_per_update
    total_updates = max(1, math.ceil(env_steps / (t_len * b)))
    feature_dim = action_features(torch.zeros(b, act_dim), space).shape[1]
    obs = task.reset(seed=seed + 1000 * state["updates"])
    memory = student.initial(b)
    prev = torch.zeros(b, feature_dim)
    first = torch.ones(b, dtype=torch.bool)
    tally = EpisodeTally(b)
    bar = None
    if progress and state["env_steps"] < env_steps:
        from narla.progress import progress_bar

        bar = progress_bar(total=env_steps, initial=state["env_steps"], desc="PPO student", unit="step")
    start = time.perf_counter() - state["wall_s"]

    def checkpoint() -> None:
        state.update(population=population.state_dict(), log_std=log_std.detach().clone(),
                     critic=critic.state_dict(), actor_opt=actor_opt.state_dict(), critic_opt=critic_opt.state_dict(),
                     scaler=scaler.state_dict(), rng=torch.get_rng_state(), config=asdict(config),
                     wall_s=time.perf_counter() - start)
        save(path, state)
        save_model(out / "model.pt", run.scenario, population, task, trained_by="student_ppo")

    try:
        while state["env_steps"] < env_steps:
            frac = max(0.0, 1.0 - state["updates"] / total_updates)
            for group in actor_opt.param_groups:
                group["lr"] = config.lr * frac
            for group in critic_opt.param_groups:
                group["lr"] = config.critic_lr * frac
            window = {
                "obs": torch.zeros(t_len, b, task.obs_dim), "prev": torch.zeros(t_len, b, feature_dim),
                "first": torch.zeros(t_len, b, dtype=torch.bool), "act": torch.zeros(t_len, b, act_dim),
                "logp": torch.zeros(t_len, b), "value": torch.zeros(t_len, b), "reward": torch.zeros(t_len, b),
                "done": torch.zeros(t_len, b, dtype=torch.bool),
            }
            memory0 = memory.detach().clone()
            with torch.no_grad():
                sigma = log_std.exp()
                for t in range(t_len):
                    memory = student.clear(memory, first)
                    prev = prev * (~first).float().unsqueeze(1)
                    mean, memory = student(obs, memory, prev)
                    action = mean + sigma * torch.randn(b, act_dim)
                    window["obs"][t], window["prev"][t], window["first"][t], window["act"][t] = obs, prev, first, action
                    window["logp"][t] = _log_prob(mean, log_std, action)
                    window["value"][t] = critic(obs).squeeze(-1)
                    executed = torch.maximum(torch.minimum(action, high), low)
                    obs, reward, terminated, truncated = task.step(executed)
                    first = terminated | truncated
                    prev = action_features(executed, space)
                    tally.add(reward, first)
                    window["reward"][t], window["done"][t] = scaler(reward, first).float(), first
                window["reward"][-1] += config.gamma * critic(obs).squeeze(-1) * (~first).float()
            adv, ret = gae(window["reward"].unsqueeze(-1), window["value"].unsqueeze(-1), window["done"],
                           config.gamma, config.lam)
            adv, ret = adv.squeeze(-1), ret.squeeze(-1)
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            kl = 0.0
            learn_actor = state["updates"] >= config.critic_warmup
            for _ in range(config.epochs):
                kl = _epoch(student, log_std, critic, window, memory0, adv, ret, actor_opt if learn_actor else None,
                            critic_opt, actor_params, config)
                if kl > config.target_kl:
                    break
            state["updates"] += 1
            state["env_steps"] += t_len * b
            episodes, mean_return = tally.take()  # the episodes that ended in this window
            state["history"].append({
                "env_steps": state["env_steps"], "episodes": episodes, "mean_return": mean_return, "kl": round(kl, 5),
                "sigma": round(float(log_std.detach().exp().mean()), 4),
                "wall_s": round(time.perf_counter() - start, 1),
            })
            if bar is not None:
                bar.update(t_len * b)
                if episodes:
                    bar.set_postfix(ret=f"{mean_return:.0f}", kl=f"{kl:.3f}")
            if state["updates"] % checkpoint_every == 0 or state["env_steps"] >= env_steps:
                checkpoint()
    finally:
        if bar is not None:
            bar.close()
    return state


def _log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """``log N(action; mean, exp(log_std)²)`` summed over the action's ``A`` dimensions: ``[B]``."""
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def _epoch(student: Student, log_std: nn.Parameter, critic: nn.Module, window: dict[str, torch.Tensor],
           memory0: torch.Tensor, adv: torch.Tensor, ret: torch.Tensor, actor_opt: torch.optim.Optimizer | None,
           critic_opt: torch.optim.Optimizer, actor_params: list[torch.Tensor], config: StudentPPOConfig) -> float:
    """One replay of the window with gradient, ``tbptt`` ticks per step; the largest approximate KL of its steps.
    Without ``actor_opt`` (the critic's warm-up) only the critic learns and the student is not replayed."""
    t_len = window["first"].shape[0]
    memory, kl = memory0, 0.0
    for begin in range(0, t_len, config.tbptt):
        end = min(t_len, begin + config.tbptt)
        value = critic(window["obs"][begin:end]).squeeze(-1)
        value_loss = (value - ret[begin:end]).pow(2).mean()
        critic_opt.zero_grad()
        value_loss.backward()
        nn.utils.clip_grad_norm_(critic.parameters(), config.max_grad_norm)
        critic_opt.step()
        if actor_opt is None:
            continue
        logps = []
        for t in range(begin, end):
            memory = student.clear(memory, window["first"][t])
            mean, memory = student(window["obs"][t], memory, window["prev"][t])
            logps.append(_log_prob(mean, log_std, window["act"][t]))
        log_ratio = torch.stack(logps) - window["logp"][begin:end]
        ratio = log_ratio.exp()
        a = adv[begin:end]
        surrogate = torch.min(ratio * a, ratio.clamp(1 - config.clip, 1 + config.clip) * a).mean()
        actor_opt.zero_grad()
        (-surrogate).backward()
        nn.utils.clip_grad_norm_(actor_params, config.max_grad_norm)
        actor_opt.step()
        memory = memory.detach()
        with torch.no_grad():
            step_kl = float(((ratio - 1) - log_ratio).mean())
        if not math.isfinite(step_kl):
            raise FloatingPointError("student_ppo: the policy ratio became non-finite; lower StudentPPOConfig.lr")
        kl = max(kl, step_kl)
    return kl
