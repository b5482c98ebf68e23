"""The input current x Wᵀ of a layer, summed over the inputs' spikes when they are mostly 0.

A layer fed by spikes (the population code of a target, another layer's z) gets x Wᵀ as one dense product of
(T·B, m) by (m, n) although a few percent of x are non-zero. On the CPU the C++ kernels of the fused trial
(:mod:`l2l.native`) sum the rows of Wᵀ of the inputs that spiked instead (forward), and the weight gradient
Σ_{t,b} g^t_b ⊗ x^t_b over the same events (backward); the input gradient g W stays a product. Inputs with more
than one non-zero entry in eight (analog inputs) take the products inside the same kernels. The numbers equal
the products to round-off (summation order; tested in float64). Elsewhere (GPU, other dtypes, ``torch.func``
transforms, forward-mode AD, :func:`l2l.twice_differentiable.twice_differentiable`) it is the product.
"""

from __future__ import annotations

from typing import Any

import torch

from l2l.native import spiking_ops
from l2l.twice_differentiable import transforms_active, twice_differentiable_required


def input_projection(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (B, T, m), w (n, m) -> x Wᵀ time-major (T, B, n)."""
    if _applies(x, w):
        return _SpikeProjection.apply(x.transpose(0, 1), w)
    return x.transpose(0, 1) @ w.transpose(0, 1)


def _applies(x: torch.Tensor, w: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dtype != w.dtype:
        return False
    if x.dim() != 3 or w.dim() != 2 or w.device != x.device:
        return False
    if twice_differentiable_required() or transforms_active():
        return False
    return spiking_ops() is not None


class _SpikeProjection(torch.autograd.Function):
    """x (T, B, m) @ Wᵀ through the event kernels; first-order gradients (the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return spiking_ops().spike_current(x, w.t())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if torch.is_grad_enabled():
            raise RuntimeError("the spike-driven input current has first-order gradients only (create_graph=True "
                               "asks for more): run inside l2l.twice_differentiable.twice_differentiable()")
        x, w = ctx.saved_tensors
        g_x = grad @ w if ctx.needs_input_grad[0] else None
        g_w = spiking_ops().weight_gradient(grad, x, False) if ctx.needs_input_grad[1] else None
        return g_x, g_w
