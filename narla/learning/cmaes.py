"""Whole-network CMA-ES (the Cooperator's and AttentionNeuron's training), every member evaluated in one batch.

Each generation the ``cma`` package proposes ``P`` parameter vectors ``x_p`` for the whole network (every
neuron's parameters, concatenated). Member ``p`` plays ``k = B / P`` copies of the task (column ``b`` belongs to
member ``b // k``); all ``B`` copies run as one batched rollout on the engine, the members' parameters entering as
perturbations ``δ_p = x_p − μ`` of the distribution mean ``μ`` (:class:`narla.learning.es.PerturbedPopulation`).

A member's fitness is the mean over its ``k`` copies of the network's episode reward, the mean over neurons of
each neuron's own undiscounted return (with ``rewards: [task]`` this is the task return)::

    F(p) = mean_{b in copies of p} mean_i Σ_t r_t^{i,b}

``cma`` minimises, so it is told ``−F``. Between generations the population holds ``μ``: replaying a run
(``narla eval``) plays the mean, deterministically for rate neurons.
"""

from __future__ import annotations

import pickle

import numpy as np
import torch

from narla.engine import Engine
from narla.learning.es import PerturbedPopulation
from narla.rollout import Rollout


class CMAES:
    """CMA-ES over the whole network's parameter vector; installs its member view on ``engine``."""

    def __init__(
        self, engine: Engine, num_envs: int, population: int = 16, sigma: float = 0.1, seed: int = 0
    ) -> None:
        try:
            import cma
        except ImportError:  # pragma: no cover - cma is a dependency
            raise ValueError("learning.rule: cma_es needs the 'cma' package (pip install cma)") from None
        if population < 2:
            raise ValueError(f"learning.population: CMA-ES needs at least 2 members, got {population}")
        if num_envs % population:
            raise ValueError(
                f"task.num_envs: CMA-ES evaluates learning.population = {population} members as batched copies, so "
                f"task.num_envs must be a multiple of {population}, got {num_envs}"
            )
        self.members = population
        self.model = engine.population
        self.params = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        self.device = engine.device
        x0 = self._flat().double().cpu().numpy()
        options = {"popsize": population, "seed": seed + 3, "verbose": -9, "verb_log": 0, "verb_disp": 0}
        self.es = cma.CMAEvolutionStrategy(x0, sigma, options)
        self.view = PerturbedPopulation(self.model, {})
        engine.population = self.view
        self.solutions: list[np.ndarray] = []
        self._ask()

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params.values()])

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``flat[..., D]`` -> ``name -> [..., *shape]``."""
        out, i = {}, 0
        lead = flat.shape[:-1]
        for name, p in self.params.items():
            out[name] = flat[..., i : i + p.numel()].reshape(*lead, *p.shape)
            i += p.numel()
        return out

    def _ask(self) -> None:
        """Draw the next generation and install it as perturbations of the current mean."""
        self.solutions = self.es.ask()
        members = torch.as_tensor(np.stack(self.solutions), dtype=torch.float32, device=self.device)
        self.view.deltas = self._unflatten(members - self._flat())

    def fitness(self, rollout: Rollout) -> torch.Tensor:
        """Each member's fitness ``[P]`` (see the module doc)."""
        per_copy = rollout.rewards.sum(0).mean(-1)  # [B]
        return per_copy.view(self.members, -1).mean(1)

    @torch.no_grad()
    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """Tell CMA-ES this generation's fitness, move the population to the new mean, draw the next generation."""
        fit = self.fitness(rollout)
        self.es.tell(self.solutions, (-fit).double().cpu().tolist())
        mean = torch.as_tensor(self.es.mean, dtype=torch.float32, device=self.device)
        for name, value in self._unflatten(mean).items():
            self.params[name].copy_(value)
        self._ask()
        return {"loss": -fit.mean(), "best_fitness": fit.max()}

    def state_dict(self) -> dict:
        """The CMA-ES state (pickled into a byte tensor, so checkpoints stay plain tensors) and this generation."""
        blob = pickle.dumps((self.es, self.solutions))
        return {"cma": torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone()}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.es, self.solutions = pickle.loads(state["cma"].cpu().numpy().tobytes())
        members = torch.as_tensor(np.stack(self.solutions), dtype=torch.float32, device=self.device)
        self.view.deltas = self._unflatten(members - self._flat())
