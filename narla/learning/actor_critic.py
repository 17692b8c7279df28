"""Per-neuron actor-critic: every neuron learns its own critic ``V_i`` of its own return.

Advantages are GAE(λ) on each neuron's own rewards (see :func:`narla.learning.returns.gae`):

    L = Σ_i [ − Σ_t log π_i(a_t | o_t) Â_t^i  +  c_v Σ_t (V_i(o_t) − Ĝ_t^i)²  −  c_H Σ_t H(π_i) ] / B
"""

from __future__ import annotations

import torch

from narla.engine import Engine
from narla.learning.clip import clip_per_neuron
from narla.learning.returns import gae, normalize_per_neuron
from narla.rollout import Rollout


class ActorCritic:
    """Actor-critic over batches of complete episodes; the critics live in ``population.critic``."""

    def __init__(
        self,
        engine: Engine,
        lr: float = 1e-3,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        value_coef: float = 0.5,
        entropy_coef: float = 0.0,
        normalize_advantages: bool = True,
        max_grad_norm: float | None = None,
    ) -> None:
        if engine.population.critic is None:
            raise ValueError("learning.rule 'actor_critic' needs a population built with critic=True")
        self.engine = engine
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.value_coef = value_coef
        self.entropy_coef = entropy_coef
        self.normalize_advantages = normalize_advantages
        self.max_grad_norm = max_grad_norm
        self.params = [p for p in engine.population.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    def max_columns(self, copies: int, ticks: int) -> int:
        """The most columns (ticks × copies) one update re-evaluates at once: the whole batch (:mod:`narla.memory`)."""
        return copies * ticks

    def loss(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        logp, entropy, values = self.engine.evaluate(
            rollout.obs, rollout.actions, rollout.first, values=True, valid=rollout.valid
        )
        mask = rollout.valid.float().unsqueeze(-1)
        with torch.no_grad():
            adv, targets = gae(rollout.rewards, values * mask, rollout.done, self.gamma, self.gae_lambda)
            adv = normalize_per_neuron(adv, rollout.valid, out=adv) if self.normalize_advantages else adv.mul_(mask)
        b = rollout.num_episodes
        policy = -(logp * adv).sum() / b
        value = ((values - targets) ** 2 * mask).sum() / b
        return policy + self.value_coef * value - self.entropy_coef * (entropy * mask).sum() / b, value.detach()

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """One gradient step on policy and critic; returns detached statistics (no host sync)."""
        loss, value_loss = self.loss(rollout)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            clip_per_neuron(self.params, self.max_grad_norm)
        self.optimizer.step()
        return {"loss": loss.detach(), "value_loss": value_loss}
