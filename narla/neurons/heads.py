"""The NaRLA paper's neuron head: each binary neuron's MLP ends in two units (silent, fire) and a softmax.

``softmax([z_silent, z_fire])[fire] = σ(z_fire − z_silent)``, so the engine's Bernoulli neuron keeps working on
the logit ``z_fire − z_silent``: sampling, log-probabilities and their gradients (``+g`` to ``z_fire``, ``−g`` to
``z_silent``) are exactly those of the two-way softmax. What differs from a one-logit head is the parameterization:
two output rows, each initialized and updated by Adam on its own, as in the paper's ``Linear(32, 2)``.
"""

from __future__ import annotations

import torch

from narla.cooperation import soft_bound
from narla.neurons.population import Population
from narla.wiring import Wiring


class SoftmaxHeadPopulation(Population):
    """A :class:`Population` whose binary neurons end in ``Linear(h, 2)`` + softmax (``neuron.head: softmax``).

    Only the feedforward integration is supported here (``neuron.amtf: feedforward``). Perturbed members (per-neuron
    ES) run natively, as in :class:`Population`.
    Categorical motor neurons (``out_dim > 1``) already end in one unit per action and are unchanged.
    """

    def __init__(self, wiring: Wiring, out_dim: int = 1, **options) -> None:
        if options.get("amtf", "feedforward") != "feedforward":
            raise ValueError("neuron.head: 'softmax' supports neuron.amtf 'feedforward' only")
        super().__init__(wiring, out_dim=2 if out_dim == 1 else out_dim, **options)
        self.binary = out_dim == 1
        self.out_dim = out_dim

    def forward(
        self,
        x: torch.Tensor,
        c_in: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        prev_action: torch.Tensor | None = None,
        deltas: dict[str, torch.Tensor] | None = None,
        replay: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Firing logits ``[n, 1, cols]`` = ``z_fire − z_silent`` of neurons ``start:end``.

        (``[n, D, cols]`` unchanged when ``D > 1``.) ``replay``: the policy's last hidden output as acting computed it
        (see :meth:`Population.forward`).
        """
        layer_deltas = None if deltas is None else self._layer_deltas("policy", self.policy, deltas)
        z = self.policy(self.feedforward_inputs(x, start, end), start, end, self._rows(start, end), layer_deltas,
                        replay=replay)
        if self.binary:
            z = z[:, 1:2] - z[:, 0:1]
        return soft_bound(z, self.amtf_scale)

    def forward_members(
        self,
        x: torch.Tensor,
        c_in: torch.Tensor,
        deltas: dict[str, torch.Tensor],
        start: int = 0,
        end: int | None = None,
        prev_action: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`forward` of perturbed members at once (per-neuron deltas, see :meth:`Population.forward_members`)."""
        return self.forward(x, c_in, start, end, prev_action, deltas)
