"""ALIF eligibility traces (Bellec et al. 2020, eqs. 25-27).

Hidden state (v, a); the within-neuron Jacobian includes the adaptation a^t ← z^{t-1}:
ε^v_t = ū^t,  ε^a_t = ψ^{t-1} ε^v_{t-1} + (ρ − β ψ^{t-1}) ε^a_{t-1},  e^t = ψ^t (ε^v_t − β ε^a_t).
ε^a does not factorize over time, but the gradient Σ_t L^t e^t taken backwards in time does: it is
Σ_t λ^t ⊗ u^t with λ = :func:`current_signal` (a recursion over (B, n) pairs (λ^v, λ^a)), one contraction, exact
up to summation order. The forward traces (O(B·n·m) memory per step) remain as the dense oracle (:func:`traces`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from l2l.filters import exp_filter
from l2l.synapses import contract_over_time
from l2l.traces.presynaptic import PresynapticInputs


def trace_steps(params, record: dict[str, torch.Tensor], pre: PresynapticInputs) -> Iterator[torch.Tensor]:
    """Yield e^t (B, n, n_in + n) for t = 0..T-1."""
    psi = record["psi"]
    u_bar = exp_filter(pre.concatenated(with_bias=False), params.alpha)
    beta = params.betas(psi.shape[2], psi)
    beta = beta.unsqueeze(-1) if isinstance(beta, torch.Tensor) else beta  # per neuron j: (n, 1)
    eps_a = torch.zeros(psi.shape[0], psi.shape[2], u_bar.shape[2], dtype=psi.dtype, device=psi.device)
    for t in range(psi.shape[1]):
        if t > 0:
            psi_prev = psi[:, t - 1].unsqueeze(-1)
            eps_a = psi_prev * u_bar[:, t - 1].unsqueeze(-2) + (params.rho - beta * psi_prev) * eps_a
        yield psi[:, t].unsqueeze(-1) * (u_bar[:, t].unsqueeze(-2) - beta * eps_a)


def gradient(params, record: dict[str, torch.Tensor], pre: PresynapticInputs, dE_dz: torch.Tensor,
             per_task: bool) -> dict[str, torch.Tensor]:
    """Σ_t dE_dz^t e^t for W_in and W_rec, as Σ_t λ^t ⊗ u^t (module docstring). dE_dz: (B, T, n)."""
    signal = current_signal(params, record, dE_dz)
    return pre.split(contract_over_time(signal, pre.concatenated(with_bias=False), per_task), with_bias=False)


def traces(params, record: dict[str, torch.Tensor], pre: PresynapticInputs) -> torch.Tensor:
    """Dense e^t (B, T, n, n_in + n) for diagnostics on small networks."""
    return torch.stack(list(trace_steps(params, record, pre)), dim=1)


def current_signal(params, record: dict[str, torch.Tensor], dE_dz: torch.Tensor) -> torch.Tensor:
    """Σ_{t'≥t} dE_dz^{t'} ∂z^{t'}/∂I^t through the neuron's (v, a) dynamics, by the transposed recursion.

    λ^v_t = g^t + α λ^v_{t+1} + ψ^t λ^a_{t+1},  λ^a_t = −β g^t + (ρ − β ψ^t) λ^a_{t+1},  g = dE_dz·ψ;
    the current enters v with coefficient 1, so the result is λ^v. (B, T, n) -> (B, T, n).
    """
    psi = record["psi"]
    beta = params.betas(psi.shape[2], psi)
    g = dE_dz * psi
    lam_v = torch.zeros_like(g[:, 0])
    lam_a = torch.zeros_like(g[:, 0])
    out = []
    for g_t, psi_t in zip(reversed(g.unbind(1)), reversed(psi.unbind(1)), strict=True):
        lam_v, lam_a = g_t + params.alpha * lam_v + psi_t * lam_a, -beta * g_t + (params.rho - beta * psi_t) * lam_a
        out.append(lam_v)
    return torch.stack(out[::-1], dim=1)
