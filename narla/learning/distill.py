"""Distillation of a teacher's policy into a whole narla network (AttentionNeuron, the Cooperator), by DAgger.

The permutation-invariant networks' only learner so far was whole-network CMA-ES, which on Ant stalls at a
standing gait (docs/results/ant.md). AttentionNeuron's authors report their Ant agent beside the fully connected
teacher it learned from; this module is that route, with the data aggregation of DAgger (Ross et al., 2011) so
that the student also learns what the teacher does in the states the *student* reaches::

    for iteration i = 0, 1, ...:
        play T ticks of B copies from a reset; at each tick each copy takes the teacher's action with
            probability β_i = beta_decay^max(0, i − warmup), else the student's (the student's memory runs
            all along)
        record o_t (normalised by the teacher's frozen statistics), the previous executed action, episode
            starts, and the teacher's label  ā_t = clip(μ_teacher(o_t), low, high)
        (with ``action_noise`` σ > 0 the teacher's *executed* action is clip(ā_t + σ·ε), ε ~ N(0, I), while
            the label stays ā_t: DART, Laskey et al., 2017)
        keep the last ``buffer`` such streams
        for each epoch: run the student over a batch of streams from zero memory (reset at each episode
            start) and, every ``tbptt`` ticks, step Adam on  mean_t,b,a (a_student − ā)²  and detach the memory

The student acts deterministically (its neurons are rate neurons), and its action is the readout of its motor
neurons, exactly as :func:`narla.evaluate.evaluate` replays it; ``model.pt`` is written in the format every
narla replay reads (the population, the scenario, the teacher's observation statistics). A stream starts at a
reset, so the memory the student trains on is the memory it acts with. Each iteration rewrites
``distill.pt`` (student, optimiser, iteration, history) atomically; a resumed run refills its buffer as it goes.
``action_noise`` is the fix for what cloning alone leaves: a student fitted only on the teacher's clean states
learns to predict the teacher's next action from its memory of the gait, not how the teacher reacts to a state
that drifts, so in closed loop its errors grow (on Ant its action error doubles about every three ticks after a
hand-over from the teacher). Noisy execution shows it drifted states with the teacher's corrections as labels.
``compile`` runs the student's tick through ``torch.compile``: the same arithmetic with the many small
elementwise operations of the sensory memory and key modulation fused, about 1.5× faster passes on the Ant
Cooperator on this project's CPU (the first pass pays a compile of some seconds).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from narla.checkpoint import save
from narla.context import action_features
from narla.evaluate import save_model
from narla.learning.returns import EpisodeTally

CHECKPOINT = "distill.pt"


@dataclass(frozen=True)
class DistillConfig:
    """DAgger's settings; the defaults are the ones ``docs/results/ant_distill.md`` used on Ant."""

    iterations: int = 30
    ticks: int = 1000  # T ticks of every copy per iteration (one Ant episode)
    beta_decay: float = 0.5  # P(the teacher acts) in iteration i >= warmup: beta_decay ** (i - warmup)
    warmup: int = 0  # extra iterations of pure behaviour cloning: β = 1 in iterations 0 … warmup
    buffer: int = 16  # streams (iterations) kept
    streams_per_batch: int = 2  # streams per training pass: B = 2 x 16 copies
    epochs: int = 8  # training passes per iteration
    tbptt: int = 16  # ticks per gradient step (truncated backpropagation through time)
    lr: float = 3e-3  # Adam's, annealed linearly to a tenth of it over the iterations
    max_grad_norm: float = 1.0
    compile: bool = False  # torch.compile the student's tick (fuses its elementwise work; needs a C++ compiler)
    action_noise: float = 0.0  # DART: sd of the Gaussian noise on the teacher's executed action (labels stay clean)


class Student:
    """The student's tick with gradient, on explicit memory: ``(action[B, A], memory) = student(obs, memory,
    prev_action)``. A whole-network population's memory is its sensory neurons' state (:meth:`Engine.act_whole`);
    a network of rate neurons (:meth:`Engine.act_rates`) carries its previous tick's activity ``[S + N, B]``."""

    def __init__(self, engine, compile: bool = False) -> None:
        if not engine.whole_network and (engine.rate is None or not bool(engine.rate.all())):
            raise ValueError("distill: the student must be a whole-network population (attention_neuron, cooperator) "
                             "or a network of rate neurons only (neuron.output: rate)")
        self.engine = engine
        if compile:
            # Compiled code is cached per function and guarded on the engine it closes over, so without a reset the
            # third or so student in one process exhausts dynamo's recompile limit and silently ticks eager.
            torch.compiler.reset()
        self._tick = torch.compile(self._eager_tick, dynamic=False) if compile else self._eager_tick

    def initial(self, batch: int) -> torch.Tensor:
        """Zero memory for ``batch`` copies."""
        engine = self.engine
        if engine.whole_network:
            return engine.population.initial_memory(batch)
        return torch.zeros(engine.num_sensors + engine.num_neurons, batch, device=engine.device)

    def clear(self, memory: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """``memory`` with the copies where ``first[B]`` (an episode starts) set to zero."""
        keep = (~first).to(memory.dtype)
        return memory * (keep.view(1, -1, 1, 1) if self.engine.whole_network else keep.view(1, -1))

    def __call__(self, obs: torch.Tensor, memory: torch.Tensor, prev_action: torch.Tensor):
        return self._tick(obs, memory, prev_action)

    def _eager_tick(self, obs: torch.Tensor, memory: torch.Tensor, prev_action: torch.Tensor):
        engine = self.engine
        if engine.whole_network:
            values, memory = engine.act_whole(obs, memory, prev_action)
            return engine.readout(values), memory
        act = engine.act_rates(obs, memory, prev_action if engine.population.action_dim else None)
        return engine.readout(act[engine.num_sensors :]), act


def require_cpu(engine, what: str) -> None:
    """Refuse a student on another device: these loops keep their buffers, noise and the teacher on the CPU, beside
    the PyBullet physics that feed them."""
    if engine.device.type != "cpu":
        raise ValueError(f"{what}: runs on the CPU only (device: cpu), not on {engine.device}")


def distill(run, teacher: torch.nn.Module, teacher_normalizer: dict, out: str | Path,
            config: DistillConfig = DistillConfig(), seed: int = 0, progress: bool = True) -> dict:
    """Distil ``teacher`` into the whole-network population of ``run`` (a :class:`narla.training.Run` built without
    a learner); writes ``OUT/model.pt`` and ``OUT/distill.pt`` and returns the state (``history`` per iteration:
    ``env_steps``, ``beta``, ``loss``, ``mean_return`` and ``episodes`` of the episodes that ended in it).

    Resumes from ``OUT/distill.pt`` when it exists; stops after ``config.iterations`` iterations in all.
    """
    engine, task = run.engine, run.task
    require_cpu(engine, "distill")
    student = Student(engine, config.compile)
    if getattr(task, "normalizer", None) is None:
        raise ValueError("distill: the student's task must normalise observations (normalize_obs: true)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    population, space = engine.population, task.action_space
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)
    task.normalizer.load_state_dict(teacher_normalizer)
    task.training = False  # the teacher's statistics, frozen: the student reads what the teacher read
    optimizer = torch.optim.Adam(population.parameters(), lr=config.lr)
    state = {"iteration": 0, "env_steps": 0, "history": [], "wall_s": 0.0}
    path = out / CHECKPOINT
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        population.load_state_dict(state["population"])
        optimizer.load_state_dict(state["optimizer"])
    generator = torch.Generator().manual_seed(seed + 7919 * state["iteration"])
    b, t_len = task.num_envs, config.ticks
    buffer: list[dict[str, torch.Tensor]] = []
    start = time.perf_counter() - state["wall_s"]
    bar = None
    if progress and state["iteration"] < config.iterations:
        from narla.progress import progress_bar

        bar = progress_bar(total=config.iterations, initial=state["iteration"], desc="DAgger", unit="iter")

    try:
        while state["iteration"] < config.iterations:
            beta = config.beta_decay ** max(0, state["iteration"] - config.warmup)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * (1.0 - 0.9 * state["iteration"] / max(1, config.iterations - 1))
            noise = torch.Generator().manual_seed(seed + 104729 + 7919 * state["iteration"])
            obs = task.reset(seed=seed + 1000 * state["iteration"])
            memory = student.initial(b)
            prev = torch.zeros(b, action_features(torch.zeros(b, *space.shape), space).shape[1])
            stream = {
                "obs": torch.zeros(t_len, b, task.obs_dim), "prev": torch.zeros(t_len, b, prev.shape[1]),
                "first": torch.zeros(t_len, b, dtype=torch.bool), "label": torch.zeros(t_len, b, *space.shape),
            }
            first = torch.ones(b, dtype=torch.bool)
            tally = EpisodeTally(b)  # returns of the episodes that end in this iteration
            with torch.no_grad():
                for t in range(t_len):
                    memory = student.clear(memory, first)
                    prev = prev * (~first).float().unsqueeze(1)
                    own, memory = student(obs, memory, prev)
                    label = torch.maximum(torch.minimum(teacher.mean(obs), high), low)
                    for key, value in (("obs", obs), ("prev", prev), ("first", first), ("label", label)):
                        stream[key][t] = value
                    use_teacher = torch.rand(b, generator=generator) < beta
                    driven = label
                    if config.action_noise > 0:
                        driven = label + config.action_noise * torch.randn(label.shape, generator=noise)
                        driven = torch.maximum(torch.minimum(driven, high), low)
                    action = torch.where(use_teacher.unsqueeze(1), driven, own)
                    obs, reward, terminated, truncated = task.step(action)
                    first = terminated | truncated
                    prev = action_features(action, space)
                    tally.add(reward, first)
            buffer = (buffer + [stream])[-config.buffer:]
            losses = []
            for _ in range(config.epochs):
                pick = torch.randperm(len(buffer), generator=generator)[: config.streams_per_batch].tolist()
                batch = {key: torch.cat([buffer[i][key] for i in pick], 1) for key in stream}
                losses.append(_train_pass(student, batch, optimizer, config))
            state["iteration"] += 1
            state["env_steps"] += t_len * b
            episodes, mean_return = tally.take()
            state["history"].append({
                "iteration": state["iteration"], "env_steps": state["env_steps"], "beta": beta,
                "loss": sum(losses) / len(losses), "episodes": episodes, "mean_return": mean_return,
                "wall_s": round(time.perf_counter() - start, 1),
            })
            state.update(population=population.state_dict(), optimizer=optimizer.state_dict(), config=asdict(config),
                         wall_s=time.perf_counter() - start)
            save(path, state)
            save_model(out / "model.pt", run.scenario, population, task, trained_by="distill")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", beta=f"{beta:.2f}")
    finally:
        if bar is not None:
            bar.close()
    return state


def _train_pass(student: Student, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                config: DistillConfig) -> float:
    """One pass of truncated backpropagation through time over ``batch`` streams ``[T, B, ...]``; the mean loss."""
    population = student.engine.population
    t_len, b = batch["first"].shape
    memory = student.initial(b)
    total, chunks = 0.0, 0
    for begin in range(0, t_len, config.tbptt):
        loss = 0.0
        end = min(t_len, begin + config.tbptt)
        for t in range(begin, end):
            memory = student.clear(memory, batch["first"][t])
            action, memory = student(batch["obs"][t], memory, batch["prev"][t])
            loss = loss + (action - batch["label"][t]).pow(2).mean()
        loss = loss / (end - begin)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(population.parameters(), config.max_grad_norm)
        optimizer.step()
        memory = memory.detach()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError("distill: the imitation loss became non-finite; lower DistillConfig.lr")
        total, chunks = total + value, chunks + 1
    return total / chunks
