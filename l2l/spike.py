"""Heaviside spike function with a pseudo-derivative (surrogate gradient).

The forward pass is ``z = H(x)`` with ``x = (v - A) / v_th`` the scaled distance to
threshold; the backward (and forward-mode) pass uses a surrogate ``dz/dx = s(x)``.
Written with ``setup_context`` and ``generate_vmap_rule = True`` so that
``torch.func.vmap``, ``grad`` and ``jvp`` work through it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from l2l.twice_differentiable import transforms_active
from l2l.validation import require_choice, require_positive


def piecewise_linear(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """Bellec et al.: ``gamma * max(0, 1 - |x|)``."""
    return gamma * torch.clamp(1.0 - x.abs(), min=0.0)


def fast_sigmoid(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """SuperSpike (Zenke & Ganguli): ``gamma / (1 + |x|)^2``."""
    return gamma / (1.0 + x.abs()) ** 2


def gaussian(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """Gaussian bump: ``gamma * exp(-x^2 / 2)``."""
    return gamma * torch.exp(-0.5 * x * x)


SURROGATES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "piecewise_linear": piecewise_linear,
    "fast_sigmoid": fast_sigmoid,
    "gaussian": gaussian,
}


def surrogate_derivative(x: torch.Tensor, gamma: float, surrogate: str = "piecewise_linear") -> torch.Tensor:
    """``dz/dx`` of the named surrogate at ``x`` (any shape)."""
    return SURROGATES[surrogate](x, gamma)


class SpikeFunction(torch.autograd.Function):
    """``H(x)`` forward, surrogate derivative backward / forward-mode."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, gamma: float, surrogate: str) -> torch.Tensor:
        return (x > 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, gamma, surrogate = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.gamma = gamma
        ctx.surrogate = surrogate

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * surrogate_derivative(x, ctx.gamma, ctx.surrogate), None, None

    @staticmethod
    def jvp(ctx, x_tangent: torch.Tensor, gamma_tangent, surrogate_tangent) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return x_tangent * surrogate_derivative(x, ctx.gamma, ctx.surrogate)


def needs_derivative(x: torch.Tensor) -> bool:
    """Whether any derivative of a function of ``x`` can be asked for: reverse mode (x requires grad),
    a ``torch.func`` transform, or forward-mode AD. False in plain simulation."""
    return (
        (x.requires_grad and torch.is_grad_enabled())
        or transforms_active()
    )


def spike(x: torch.Tensor, gamma: float = 0.3, surrogate: str = "piecewise_linear") -> torch.Tensor:
    """Spikes ``H(x)`` of the scaled membrane distance ``x`` (any shape), differentiable by surrogate."""
    require_positive("gamma", gamma)
    require_choice("surrogate", surrogate, tuple(SURROGATES))
    return SpikeFunction.apply(x, gamma, surrogate)
