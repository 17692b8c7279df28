"""Emergence over training (``training.analyze_every: K``): cheap study metrics every K episodes, to
``emergence.csv`` in the results directory.

Each row, at ``episode``, holds the firing rate of each layer (``firing_L<k>``), the mean alignment of each layer
(``alignment_L<k>``: corr(own return, task return) across the batch's episodes, so it needs ``task.num_envs >= 3``),
the mean absolute pairwise spike correlation (``abs_corr``), and the lesion effect of silencing a fixed sample of
neurons (``lesion_mean``: the mean Δ return of the sample, ``lesion_min``: the largest single drop), measured on
fresh episodes of a task of its own with the current policy. ``narla analyze`` plots the file against episodes.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from narla.rollout import Rollout
from narla.study.activity import spike_correlation
from narla.study.alignment import alignment
from narla.study.lesions import lesion_effects


class EmergenceTracker:
    """``tracker(rollout, episode) -> row`` for the run ``run`` (a :class:`narla.training.Run`)."""

    def __init__(self, run, sample: int = 8, episodes: int = 4) -> None:
        from narla.engine import Engine
        from narla.evaluate import in_process_options
        from narla.study.analyze import spread
        from narla.tasks.registry import make_task

        wiring = run.wiring
        self.names = list(wiring.neuron_names)
        self.layer = wiring.layer.cpu()
        self.sample = spread(len(self.names), sample)
        self.episodes = episodes
        scenario = run.scenario
        options = in_process_options(scenario.task.id, scenario.task.options)
        if scenario.task.max_episode_steps is not None:
            options["max_episode_steps"] = scenario.task.max_episode_steps
        copies = (1 + len(self.sample)) * episodes
        self.task = make_task(scenario.task.id, copies, device=run.device, **options)
        self.task.training = False
        population = getattr(run.engine.population, "population", run.engine.population)  # ES: the mean
        generator = torch.Generator(device=run.device)
        generator.manual_seed(scenario.seed + 20_011)
        self.engine = Engine(wiring, population, run.engine.readout, scenario.propagation, generator)
        self.engine.trim_padding()
        self.run = run

    def __call__(self, rollout: Rollout, episode: int) -> dict[str, float]:
        """The metrics of this batch (``rollout``) and of a lesion test of the current policy."""
        valid = rollout.valid.float().transpose(0, 1)  # [B, T]
        spikes = rollout.spikes.transpose(0, 1)  # [B, T, N]
        row: dict[str, float] = {"episode": episode}
        w = valid.unsqueeze(-1)
        firing = (spikes * w).sum((0, 1)) / w.sum().clamp(min=1)
        aligned = alignment(rollout.neuron_returns(), rollout.task_reward.sum(0))  # [N]
        for k in sorted(set(self.layer.tolist())):
            idx = torch.nonzero(self.layer == k).flatten()
            row[f"firing_L{k}"] = float(firing[idx].mean())
            row[f"alignment_L{k}"] = float(aligned[idx].mean())
        corr = spike_correlation(spikes, valid)
        n = corr.shape[0]
        row["abs_corr"] = float((corr.abs().sum() - corr.diagonal().abs().sum()) / max(n * (n - 1), 1))
        source = getattr(self.run.task, "normalizer", None)
        if source is not None and getattr(self.task, "normalizer", None) is not None:
            self.task.normalizer.load_state_dict(source.state_dict())
        probe = SimpleNamespace(engine=self.engine, task=self.task, scheme=self.run.scheme)
        targets = {self.names[i]: [i] for i in self.sample}
        effects = [e["effect"] for e in lesion_effects(probe, targets, ("silence",), self.episodes)]
        row["lesion_mean"] = sum(effects) / len(effects)
        row["lesion_min"] = min(effects)
        return row

    def close(self) -> None:
        self.task.close()
