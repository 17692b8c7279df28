"""Lesions: silence, clamp on or randomise neurons (or whole groups) for entire evaluation episodes.

Every copy of a batch carries its own lesion (``Engine.clamp[N, B]``), so one rollout measures many lesions and
their control at once. The effect of a lesion is the change of the mean task return against the unlesioned
copies, with a 95 % confidence interval from the two samples (normal approximation, unequal variances).
"""

from __future__ import annotations

import math

import torch

from narla.engine import COIN, FIRE, FREE, SILENCE
from narla.rollout import collect

MODES = {"silence": SILENCE, "fire": FIRE, "random": COIN}
LATE = 1 << 30  # past every reward phase


def lesion_effects(run, targets: dict[str, list[int]], modes: tuple[str, ...] = ("silence",),
                   episodes: int = 16) -> list[dict]:
    """Task-return change of each lesion ``(target, mode)``; ``targets`` maps a name to neuron indices.

    ``run`` is a :class:`narla.training.Run` of a stage-wise (spiking) population; its ``B`` copies are split
    evenly between the control and every lesion, and batches are played until each has ``episodes`` episodes.

    Returns one dict per lesion: ``target``, ``mode``, ``neurons``, ``control``, ``lesioned`` (mean returns),
    ``effect`` (lesioned − control), ``ci`` (95 % interval of the effect) and ``n`` (episodes of each).
    """
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"lesion modes {bad} are not allowed; allowed: {', '.join(MODES)}")
    engine, n = run.engine, run.engine.num_neurons
    if engine.whole_network:
        raise ValueError("lesions act on stage-wise populations; whole-network populations are not supported")
    variants = [("control", "none", [])] + [(name, mode, idx) for name in targets for mode in modes
                                             for idx in [targets[name]]]
    b = run.task.num_envs
    per = b // len(variants)
    if per < 1:
        raise ValueError(f"{len(variants)} variants (control + lesions) need at least that many copies, the task "
                         f"has {b}")
    clamp = torch.full((n, b), FREE, dtype=torch.long, device=engine.device)
    owner = torch.full((b,), -1, dtype=torch.long)
    for v, (_, mode, idx) in enumerate(variants):
        cols = slice(v * per, (v + 1) * per)
        owner[cols] = v
        if idx:
            clamp[torch.as_tensor(idx, dtype=torch.long, device=engine.device), cols] = MODES[mode]
    returns: list[list[float]] = [[] for _ in variants]
    engine.clamp = clamp
    try:
        for _ in range(math.ceil(episodes / per)):
            got = collect(engine, run.task, run.scheme, LATE).task_reward.sum(0).cpu().tolist()
            for col, ret in enumerate(got):
                if owner[col] >= 0:
                    returns[int(owner[col])].append(ret)
    finally:
        engine.clamp = None
    control = returns[0][:episodes]
    out = []
    for (name, mode, idx), values in zip(variants[1:], returns[1:], strict=True):
        values = values[:episodes]
        effect = _mean(values) - _mean(control)
        half = 1.96 * math.sqrt(_var(values) / len(values) + _var(control) / len(control))
        out.append({"target": name, "mode": mode, "neurons": list(idx), "control": _mean(control),
                    "lesioned": _mean(values), "effect": effect, "ci": [effect - half, effect + half],
                    "n": len(values)})
    return out


def _mean(x: list[float]) -> float:
    return sum(x) / len(x)


def _var(x: list[float]) -> float:
    if len(x) < 2:
        return 0.0
    m = _mean(x)
    return sum((v - m) ** 2 for v in x) / (len(x) - 1)
