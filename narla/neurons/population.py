"""All neurons' parameters as stacked tensors: one disjoint slice per neuron, never shared.

A stacked MLP keeps layer ``l``'s weights as ``W[N, out, in]`` (neuron i's slice ``W[i]`` is exactly
an ``nn.Linear(in, out).weight``). A forward pass over neurons ``start:end`` is one batched matrix
product over their gathered inputs. Because slices are disjoint, the gradient of a summed loss with
respect to ``W[i]`` is neuron i's own gradient, and an elementwise optimizer (Adam) over the stack is
the same as one optimizer per neuron.

Layout: activity is *neuron-major*, ``[neurons, features, columns]`` where the columns are the
flattened batch (``B`` copies, or ``T * B`` ticks when a rollout is re-evaluated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from narla.cooperation import get_amtf
from narla.wiring import Wiring

ACTIVATIONS = {"leaky_relu": F.leaky_relu, "relu": F.relu, "tanh": torch.tanh}


class StackedMLP(nn.Module):
    """``N`` independent MLPs ``in_dim -> hidden... -> out_dim``, one per neuron."""

    def __init__(
        self, num: int, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str, fan_in: torch.Tensor
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[activation]
        sizes = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            # nn.Linear's default init, per neuron; the first layer's bound uses the neuron's real fan-in.
            true_in = fan_in.clamp(min=1).float() if layer == 0 else torch.full((num,), float(a))
            bound = (1.0 / true_in.sqrt()).view(num, 1, 1)
            self.weights.append(nn.Parameter((torch.rand(num, b, a) * 2 - 1) * bound))
            self.biases.append(nn.Parameter((torch.rand(num, b, 1) * 2 - 1) * bound))

    def forward(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """``x[n, in, cols]`` for neurons ``start:end`` -> ``[n, out, cols]``."""
        last = len(self.weights) - 1
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b[start:end], w[start:end], x)
            if layer < last:
                x = self.activation(x)
        return x


class Population(nn.Module):
    """Every neuron's policy (and, for actor-critic, its own critic) as stacked parameters.

    Each neuron is a two-point neuron: its MLP integrates the feedforward inputs into ``R[n, D, cols]``,
    a linear map of its context inputs gives ``C[n, 1, cols]``, and its output is ``amtf(R, C)``.
    ``D`` is 1 (a Bernoulli firing logit) unless a categorical motor neuron needs one logit per action.
    """

    def __init__(
        self,
        wiring: Wiring,
        out_dim: int = 1,
        hidden: Sequence[int] = (128, 128),
        activation: str = "leaky_relu",
        amtf: str = "feedforward",
        critic: bool = False,
    ) -> None:
        super().__init__()
        n, fan = wiring.ff_idx.shape
        fan_in = wiring.ff_mask.sum(1).cpu()
        self.out_dim = out_dim
        self.amtf_name = amtf
        self.amtf = get_amtf(amtf)
        self.policy = StackedMLP(n, fan, hidden, out_dim, activation, fan_in)
        self.critic = StackedMLP(n, fan, hidden, 1, activation, fan_in) if critic else None
        ctx = wiring.ctx_idx.shape[1]
        self.context_weight = nn.Parameter(torch.randn(n, 1, ctx) / math.sqrt(max(ctx, 1)))
        self.context_bias = nn.Parameter(torch.zeros(n, 1, 1))

    def context(self, c_in: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """``c_in[n, Fc, cols]`` -> ``C[n, 1, cols]`` for neurons ``start:end``."""
        return torch.baddbmm(self.context_bias[start:end], self.context_weight[start:end], c_in)

    def forward(
        self, x: torch.Tensor, c_in: torch.Tensor, start: int = 0, end: int | None = None
    ) -> torch.Tensor:
        """Output pre-activations ``amtf(R, C)``: ``[n, D, cols]`` for neurons ``start:end``."""
        return self.amtf(self.policy(x, start, end), self.context(c_in, start, end))

    def value(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Each neuron's critic of its own return, ``[n, cols]``, from its feedforward inputs."""
        if self.critic is None:
            raise RuntimeError("this population was built without critics (critic=False)")
        return self.critic(x, start, end)[:, 0]
