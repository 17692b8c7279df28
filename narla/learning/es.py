"""Per-neuron evolution strategies: every neuron perturbs only its own parameters and scores them with its own reward.

A generation evaluates ``P = 2M`` population members as batched copies of the network. Member ``m < M`` acts with
``θ + σ ε_m`` and member ``M + m`` with ``θ − σ ε_m`` (antithetic pairs). ``ε_m`` holds an independent standard
normal draw for every neuron's slice of every stacked parameter, so a member perturbs all neurons at once, but
each neuron's draw is its own. The task's ``B`` copies are split into ``P`` consecutive groups of ``k = B / P``
copies; copy ``b`` plays member ``b // k``.

Neuron i's fitness for member p is its own undiscounted episode reward, averaged over the member's copies::

    F_i(p) = mean_{b in copies of p} Σ_t r_t^{i,b}

optionally replaced by centred ranks over the P members (per neuron: ``rank / (P − 1) − 1/2``). Neuron i's
update uses only its own fitness and its own noise::

    g_i = Σ_m (F_i(m) − F_i(M + m)) ε_{i,m} / (2 M σ)          θ_i ← Adam-ascent(θ_i, g_i)

Tied parameter rows (the Cooperator's shared sensory rows, ``population.slots``) are perturbed once per row and
scored by the mean fitness of the neurons that share them.

Reduction: with only the task reward, ``F_i(p)`` is the task return for every i, and g is ordinary ES on the
whole network's parameter vector (noise of the concatenated slices, one fitness per member): tested in
``tests/test_es.py``. Adam is elementwise, so one Adam over the stack equals one per neuron.

An "episode" in the history is one copy's episode, so a generation adds ``B`` episodes. The rollout's spikes stay
stochastic (each neuron samples its action), so fitness is noisy as in the policy-gradient rules.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from narla.engine import Engine
from narla.neurons.population import Population
from narla.rollout import Rollout


class PerturbedPopulation:
    """A view of a :class:`~narla.neurons.Population` in which member ``p`` acts with parameters ``θ + δ_p``.

    The engine calls it like the population while acting: ``view(x[n, F, B], c_in[n, Fc, B], start, end)``. The
    ``B`` columns are split into ``P`` groups of ``k`` (column ``b`` belongs to member ``b // k``). All members are
    one native batched pass (:meth:`Population.forward_members <narla.neurons.Population.forward_members>`): each
    layer's shared product with ``θ`` plus one batched per-(neuron, member) correction with ``δ``. A population
    whose context map does not provide ``member_context`` falls back to one ``torch.func.vmap`` over the members.
    Every other attribute (``action_dim``, ``state_dict``, ...) is the wrapped population's.
    """

    def __init__(self, population: nn.Module, deltas: dict[str, torch.Tensor]) -> None:
        self.population = population
        self.native = isinstance(population, Population) and _supports_members(type(population))
        self.deltas = deltas  # name -> [P, *param.shape]

    @property
    def deltas(self) -> dict[str, torch.Tensor]:
        """Member-major deltas, ``name -> [P, *param.shape]``."""
        return self._deltas

    @deltas.setter
    def deltas(self, deltas: dict[str, torch.Tensor]) -> None:
        self._deltas = deltas
        # Per-neuron layout [N, P, ...], built once per generation: every tick slices it without copying.
        self._per_neuron = self.population.member_deltas(deltas) if deltas and self.native else {}

    def __getattr__(self, name: str):
        return getattr(self.population, name)

    def __call__(
        self,
        x: torch.Tensor,
        c_in: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        prev_action: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pre-activations ``[n, D, B]`` of neurons ``start:end``, each column group under its member's parameters."""
        if self.native:
            return self.population.forward_members(x, c_in, self._per_neuron, start, end, prev_action)
        return self._vmap_call(x, c_in, start, end, prev_action)

    def act(
        self, obs: torch.Tensor, memory: torch.Tensor, prev_action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole-network population's tick, column group ``p`` under member ``p``'s parameters."""
        return self.population.act(obs, memory, prev_action, deltas=self.deltas)

    def _vmap_call(
        self, x: torch.Tensor, c_in: torch.Tensor, start: int, end: int | None, prev_action: torch.Tensor | None
    ) -> torch.Tensor:
        """Fallback: the population once per member under ``torch.func.vmap``."""
        params = dict(self.population.named_parameters())
        members = next(iter(self.deltas.values())).shape[0]
        n, _, cols = x.shape
        k = cols // members

        def split(t: torch.Tensor) -> torch.Tensor:  # [n, F, P*k] -> [P, n, F, k]
            return t.reshape(t.shape[0], t.shape[1], members, k).permute(2, 0, 1, 3)

        def member(delta: dict[str, torch.Tensor], xm: torch.Tensor, cm: torch.Tensor, am: torch.Tensor | None):
            theta = {name: params[name] + d for name, d in delta.items()}
            kwargs = {"prev_action": am} if am is not None else {}
            return functional_call(self.population, theta, (xm, cm, start, end), kwargs)

        actions = None if prev_action is None else prev_action.reshape(members, k, -1)
        in_dims = (0, 0, 0, None if actions is None else 0)
        out = vmap(member, in_dims=in_dims)(self.deltas, split(x), split(c_in), actions)  # [P, n, D, k]
        return out.permute(1, 2, 0, 3).reshape(n, out.shape[2], cols)


def _supports_members(cls: type) -> bool:
    """Whether ``cls`` evaluates members natively: its ``forward`` and ``context`` come with their batched versions."""

    def owner(name: str) -> type | None:
        return next((c for c in cls.__mro__ if name in c.__dict__), None)

    return owner("forward") is owner("forward_members") and owner("context") is owner("member_context")


def parameter_owners(population: nn.Module, num_neurons: int, device: torch.device) -> dict[str, torch.Tensor]:
    """``name -> owner[rows, N]``: the neurons owning each row of each parameter, each row summing to 1.

    A population may declare its own (``population.row_owner()``); otherwise row r of every parameter belongs to
    the neurons whose ``slots`` entry is r (neuron r itself when nothing is tied).
    """
    if hasattr(population, "row_owner"):
        return population.row_owner()
    slots = getattr(population, "slots", None)
    rows = torch.arange(num_neurons, device=device) if slots is None else slots
    num_rows = int(rows.max()) + 1 if num_neurons else 0
    owner = torch.zeros(num_rows, num_neurons, device=device)
    owner[rows, torch.arange(num_neurons, device=device)] = 1.0
    owner = owner / owner.sum(1, keepdim=True).clamp(min=1)
    return {name: owner for name, _ in population.named_parameters()}


def centered_ranks(fitness: torch.Tensor) -> torch.Tensor:
    """Per column, the ranks of ``fitness[P, N]`` over the P members mapped to ``[-1/2, 1/2]`` (ties: by order)."""
    p = fitness.shape[0]
    ranks = torch.argsort(torch.argsort(fitness, dim=0, stable=True), dim=0, stable=True).float()
    return ranks / max(p - 1, 1) - 0.5


class PerNeuronES:
    """ES in which every neuron is its own optimizer (see the module doc); installs its view on ``engine``."""

    def __init__(
        self,
        engine: Engine,
        num_envs: int,
        lr: float = 0.01,
        sigma: float = 0.05,
        pairs: int = 8,
        fitness_shaping: str = "centered_rank",
        generator: torch.Generator | None = None,
    ) -> None:
        if fitness_shaping not in ("centered_rank", "none"):
            raise ValueError(f"learning.fitness_shaping: {fitness_shaping!r}; allowed: centered_rank, none")
        if num_envs % (2 * pairs):
            raise ValueError(
                f"task.num_envs: ES evaluates 2 x learning.population = {2 * pairs} members as batched copies, so "
                f"task.num_envs must be a multiple of {2 * pairs}, got {num_envs}"
            )
        population = engine.population
        self.population = population
        self.pairs = pairs
        self.sigma = sigma
        self.fitness_shaping = fitness_shaping
        self.generator = generator
        self.params = {name: p for name, p in population.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=lr, maximize=True)
        self.row_owner = parameter_owners(population, engine.num_neurons, engine.device)
        for name, p in self.params.items():
            if p.shape[0] != self.row_owner[name].shape[0]:
                raise ValueError(f"ES needs every parameter stacked per neuron row; {name} has shape {tuple(p.shape)}")
        self.noise: dict[str, torch.Tensor] = {}
        self.view = PerturbedPopulation(population, {})
        engine.population = self.view
        self.resample()

    def resample(self) -> None:
        """Draw ``ε[M, *shape]`` for every parameter and install ``δ = [σ ε, −σ ε]`` (``[2M, *shape]``)."""
        self.noise = {
            name: torch.randn(self.pairs, *p.shape, generator=self.generator, device=p.device)
            for name, p in self.params.items()
        }
        self._install()

    def _install(self) -> None:
        self.view.deltas = {name: torch.cat([self.sigma * e, -self.sigma * e]) for name, e in self.noise.items()}

    def fitness(self, rollout: Rollout) -> torch.Tensor:
        """Each member's fitness per neuron, ``[2M, N]``: own episode reward, mean over the member's copies."""
        per_copy = rollout.rewards.sum(0)  # [B, N]
        members = 2 * self.pairs
        fit = per_copy.view(members, -1, per_copy.shape[1]).mean(1)
        return centered_ranks(fit) if self.fitness_shaping == "centered_rank" else fit

    @torch.no_grad()
    def gradient(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """The ascent direction ``g`` of every stacked parameter (row r from its own neurons' fitness only)."""
        fit = self.fitness(rollout)  # [2M, N]
        scale = 1.0 / (2 * self.pairs * self.sigma)
        grads = {}
        for name, e in self.noise.items():
            row_fit = fit @ self.row_owner[name].T  # [2M, rows]: mean fitness of each row's owners
            diff = row_fit[: self.pairs] - row_fit[self.pairs :]  # [M, rows]
            grads[name] = torch.einsum("mr,mr...->r...", diff, e) * scale
        return grads

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """One ES step from the generation in ``rollout``, then fresh noise; returns detached statistics."""
        grads = self.gradient(rollout)
        self.optimizer.zero_grad(set_to_none=True)
        for name, p in self.params.items():
            p.grad = grads[name]
        self.optimizer.step()
        self.resample()
        return {"loss": -rollout.rewards.sum(0).mean().detach()}

    def state_dict(self) -> dict:
        """Optimizer state, this generation's noise and the noise generator (for checkpoints)."""
        state = {"optimizer": self.optimizer.state_dict(), "noise": dict(self.noise)}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.noise = {name: e.to(self.params[name].device) for name, e in state["noise"].items()}
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"].cpu())
        self._install()
