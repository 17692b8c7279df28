"""Per-neuron REINFORCE (NaRLA's rule): each neuron ascends the policy gradient of its own return.

For neuron i with log-probabilities ``log π_i(a_t | o_t)`` and its own rewards ``r_t^i``:

    G_t^i = Σ_k γ^k r_{t+k}^i                    (within the episode)
    Ĝ_t^i = (G_t^i − mean_i) / std_i             (per neuron, over the batch's valid ticks)
    L     = − Σ_i Σ_t Σ_b log π_i(a_t^b | o_t^b) Ĝ_t^{i,b} / B

The sum over neurons couples nothing: neuron i's parameters only appear in its own term.
"""

from __future__ import annotations

import torch

from narla.engine import Engine
from narla.learning.clip import clip_per_neuron
from narla.learning.returns import discounted_returns, normalize_per_neuron
from narla.rollout import Rollout


class Reinforce:
    """REINFORCE over a batch of complete episodes, one Adam over the stacked per-neuron parameters."""

    def __init__(
        self,
        engine: Engine,
        lr: float = 1e-3,
        gamma: float = 0.99,
        normalize_returns: bool = True,
        entropy_coef: float = 0.0,
        max_grad_norm: float | None = None,
    ) -> None:
        self.engine = engine
        self.gamma = gamma
        self.normalize_returns = normalize_returns
        self.entropy_coef = entropy_coef
        self.max_grad_norm = max_grad_norm
        self.params = [p for p in engine.population.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    def advantages(self, rollout: Rollout) -> torch.Tensor:
        """Each neuron's (normalized) discounted return ``[T, B, N]``; zero on invalid ticks."""
        returns = discounted_returns(rollout.rewards, rollout.done, self.gamma)
        if self.normalize_returns:
            return normalize_per_neuron(returns, rollout.valid)
        return returns * rollout.valid.float().unsqueeze(-1)

    def loss(self, rollout: Rollout) -> torch.Tensor:
        adv = self.advantages(rollout)
        logp, entropy, _ = self.engine.evaluate(rollout.obs, rollout.actions, rollout.first, valid=rollout.valid)
        mask = rollout.valid.float().unsqueeze(-1)
        b = rollout.num_episodes
        return -(logp * adv).sum() / b - self.entropy_coef * (entropy * mask).sum() / b

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """One gradient step; returns detached statistics (no host sync)."""
        loss = self.loss(rollout)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            clip_per_neuron(self.params, self.max_grad_norm)
        self.optimizer.step()
        return {"loss": loss.detach()}
