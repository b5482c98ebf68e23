"""Exponential filters along the time axis (dim 1 of a (B, T, ...) tensor).

``exp_filter`` is the causal filter F_a(u)^t = a F_a(u)^{t-1} + u^t used for
presynaptic traces and the leaky readout; ``reverse_exp_filter`` is its adjoint
(anti-causal), used to move the readout's κ filter from the eligibility traces
onto the learning signal: Σ_t L^t F_κ(e)^t = Σ_t F_κ^←(L)^t e^t.
"""

from __future__ import annotations

import torch


def exp_filter(u: torch.Tensor, decay: float | torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
    """Causal filter along dim 1. u: (B, T, ...) -> (B, T, ...); ``initial`` is the value at t = -1."""
    out = []
    acc = initial
    for t in range(u.shape[1]):
        acc = u[:, t] if acc is None else decay * acc + u[:, t]
        out.append(acc)
    return torch.stack(out, dim=1)


def reverse_exp_filter(u: torch.Tensor, decay: float | torch.Tensor) -> torch.Tensor:
    """Anti-causal filter along dim 1: out^t = u^t + decay * out^{t+1}. u: (B, T, ...)."""
    return exp_filter(u.flip(1), decay).flip(1)
