"""Leaky tanh RNN eligibility traces: ε^t = α ε^{t-1} + (1 − α) u^t, e^t = (1 − z²) ε^t.

Factorizes like LIF: the gradient is one contraction of (1 − α) L ψ with ū.
"""

from __future__ import annotations

import torch

from l2l.filters import exp_filter, reverse_exp_filter
from l2l.synapses import contract_over_time
from l2l.traces.presynaptic import PresynapticInputs


def gradient(params, record: dict[str, torch.Tensor], pre: PresynapticInputs, dE_dz: torch.Tensor,
             per_task: bool) -> dict[str, torch.Tensor]:
    """Σ_t dE_dz^t e^t for W_in, W_rec, bias. dE_dz: (B, T, n)."""
    post = (1 - params.alpha) * dE_dz * record["psi"]
    u_bar = exp_filter(pre.concatenated(with_bias=True), params.alpha)
    return pre.split(contract_over_time(post, u_bar, per_task), with_bias=True)


def traces(params, record: dict[str, torch.Tensor], pre: PresynapticInputs) -> torch.Tensor:
    """Dense e^t (B, T, n, n_in + n + 1) for diagnostics on small networks."""
    u_bar = exp_filter(pre.concatenated(with_bias=True), params.alpha)
    return (1 - params.alpha) * record["psi"].unsqueeze(-1) * u_bar.unsqueeze(-2)


def current_signal(params, record: dict[str, torch.Tensor], dE_dz: torch.Tensor) -> torch.Tensor:
    """Σ_{t'≥t} dE_dz^{t'} ∂z^{t'}/∂I^t: (1 − α)·F_α^←(dE_dz·ψ). (B, T, n) -> (B, T, n)."""
    return (1 - params.alpha) * reverse_exp_filter(dE_dz * record["psi"], params.alpha)
