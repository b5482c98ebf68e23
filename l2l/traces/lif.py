"""LIF eligibility traces (Bellec et al. 2020, eq. 20): e_ji^t = ψ_j^t z̄_i^{t-1}.

The within-neuron Jacobian is the leak α (the reset goes through z^{t-1}, outside
the trace), so the eligibility vector is the α-filtered presynaptic input ū and
the gradient Σ_t L_j^t ψ_j^t ū_i^t is one contraction: no (B, T, n, m) tensor.
"""

from __future__ import annotations

import torch

from l2l.filters import exp_filter, reverse_exp_filter
from l2l.synapses import contract_over_time
from l2l.traces.presynaptic import PresynapticInputs


def gradient(params, record: dict[str, torch.Tensor], pre: PresynapticInputs, dE_dz: torch.Tensor,
             per_task: bool) -> dict[str, torch.Tensor]:
    """Σ_t dE_dz^t e^t for W_in and W_rec. dE_dz, ψ: (B, T, n) -> {"w_in": (·, n, n_in), "w_rec": (·, n, n)}."""
    psi = record["psi"]
    # without autograd, in ψ's (time-major) layout so that the contraction below needs no copy
    differentiable = psi.requires_grad or dE_dz.requires_grad
    post = dE_dz * psi if differentiable else torch.mul(dE_dz, psi, out=torch.empty_like(psi))
    return {
        "w_in": contract_over_time(post, exp_filter(pre.x, params.alpha), per_task),
        "w_rec": contract_over_time(post, exp_filter(pre.z_prev, params.alpha), per_task),
    }


def traces(params, record: dict[str, torch.Tensor], pre: PresynapticInputs) -> torch.Tensor:
    """Dense e^t (B, T, n, m_in + n) for diagnostics on small networks (the gradient never builds it)."""
    u_bar = exp_filter(pre.concatenated(with_bias=False), params.alpha)
    return record["psi"].unsqueeze(-1) * u_bar.unsqueeze(-2)


def current_signal(params, record: dict[str, torch.Tensor], dE_dz: torch.Tensor) -> torch.Tensor:
    """Σ_{t'≥t} dE_dz^{t'} ∂z^{t'}/∂I^t through the leak only: F_α^←(dE_dz·ψ). (B, T, n) -> (B, T, n)."""
    return reverse_exp_filter(dE_dz * record["psi"], params.alpha)
