"""Modulatory transfer functions (AMTFs): how a two-point neuron combines R and C.

``R`` is what the neuron integrates from its feedforward (basal) inputs, ``C`` what it integrates
from its context (apical) inputs. Every function maps ``(R, C)`` of any broadcastable shape to the
neuron's output pre-activation (its firing logit). All are elementwise and differentiable.

Numerical safety. The cooperation equation is quadratic in R and bilinear in (R, C): an unbounded R of
100 gives a logit of 10^4 and gradients of 200 per unit of R, enough to wreck a REINFORCE update. The
population therefore soft-bounds both fields before the AMTF, ``R ← s·tanh(R/s)`` and ``C ← s·tanh(C/s)``
(:func:`soft_bound`), with the scale ``s = DEFAULT_SCALES[name]`` (3 for the quadratic AMTFs). Near zero the
bound is the identity (slope 1 at 0), so small fields are untouched; with ``|R|, |C| < s`` the cooperation
output lies in ``(-1 - 2s(1 + s), s² + 2s + 2s(1 + s)) = (-25, 39)`` for s = 3, and the gradient with
respect to the raw fields is bounded by ``2s + 2 + 2s = 14`` (R) and ``2(1 + s) = 8`` (C). The linear AMTFs
are left unbounded (scale None) so that point neurons keep NaRLA's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Amtf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cooperation(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The cooperation equation ``R² + 2R + 2C(1 + |R|)``.

    Context amplifies a strong feedforward drive when it agrees (C > 0) and suppresses it when it
    disagrees; with weak R the context term is only ``2C``, so context alone cannot drive the neuron
    the way R with agreeing C does.
    """
    return r * r + 2.0 * r + 2.0 * c * (1.0 + r.abs())


def cooperation_relu6(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The authors' bounded variant ``relu6(R² + 2R + C(1 + |R|))`` (output in [0, 6])."""
    return F.relu6(r * r + 2.0 * r + c * (1.0 + r.abs()))


def additive(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A point neuron: ``R + C``; context is just more input."""
    return r + c


def feedforward(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``R`` alone: context is ignored (NaRLA's neurons)."""
    return r


def gain(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Multiplicative gain ``R · 2σ(C)``: context scales the feedforward drive by a factor in (0, 2)."""
    return r * 2.0 * torch.sigmoid(c)


def soft_bound(x: torch.Tensor, scale: float | None) -> torch.Tensor:
    """``s·tanh(x/s)``: identity near 0, smoothly saturating at ``±s``; ``x`` unchanged when ``scale`` is None."""
    if scale is None:
        return x
    return scale * torch.tanh(x / scale)


AMTFS: dict[str, Amtf] = {
    "cooperation": cooperation,
    "cooperation_relu6": cooperation_relu6,
    "additive": additive,
    "feedforward": feedforward,
    "gain": gain,
}


DEFAULT_SCALES: dict[str, float | None] = {
    "cooperation": 3.0,
    "cooperation_relu6": 3.0,
    "additive": None,
    "feedforward": None,
    "gain": None,
}


def get_amtf(name: str) -> Amtf:
    """The AMTF called ``name``; a ``ValueError`` lists the allowed names."""
    if name not in AMTFS:
        raise ValueError(f"unknown amtf {name!r}; allowed: {', '.join(sorted(AMTFS))}")
    return AMTFS[name]
