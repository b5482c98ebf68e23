"""LSTM eligibility traces along the cell state (Bellec et al. 2020, Methods).

For the input, forget and candidate gates, ε^t = f^t ε^{t-1} + (∂c^t/∂I^t) u^t with
∂c/∂I_i = g i(1−i), ∂c/∂I_f = c^{t-1} f(1−f), ∂c/∂I_g = i(1−g²), and
e^t = o^t (1 − tanh² c^t) ε^t; the output gate has e_o^t = tanh(c^t) o(1−o) u^t.
u^t = [x^t, m^{t-1}, 1]; recurrent paths through m^{t-1} are left to the learning signal.

The gradient Σ_t L^t e^t never carries ε (B, 4n, n_in + n + 1) forward: the same sum taken backwards in time is
Σ_t λ^t ⊗ u^t with λ = :func:`current_signal` (one backward recursion over (B, n), then one contraction over
time), exact up to summation order; the forward traces remain as the dense oracle (:func:`traces`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from l2l.synapses import contract_over_time
from l2l.traces.presynaptic import PresynapticInputs


def trace_steps(params, record: dict[str, torch.Tensor], pre: PresynapticInputs) -> Iterator[torch.Tensor]:
    """Yield e^t (B, 4n, n_in + n + 1), gate rows in the order (i, f, g, o)."""
    i, f, g, o, c, c_prev = (record[k] for k in ("i", "f", "g", "o", "c", "c_prev"))
    u = pre.concatenated(with_bias=True)
    # ∂c^t/∂I^t for the gates that feed the cell state: (B, T, 3, n)
    dc_dI = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=2)
    tanh_c = torch.tanh(c)
    dm_dc = o * (1 - tanh_c * tanh_c)
    dm_dIo = tanh_c * o * (1 - o)
    eps = None
    for t in range(u.shape[1]):
        source = dc_dI[:, t].unsqueeze(-1) * u[:, t, None, None, :]
        eps = source if eps is None else f[:, t, None, :, None] * eps + source
        e_cell = (dm_dc[:, t, None, :, None] * eps).flatten(1, 2)
        e_out = dm_dIo[:, t].unsqueeze(-1) * u[:, t].unsqueeze(-2)
        yield torch.cat([e_cell, e_out], dim=1)


def gradient(params, record: dict[str, torch.Tensor], pre: PresynapticInputs, dE_dz: torch.Tensor,
             per_task: bool) -> dict[str, torch.Tensor]:
    """Σ_t dE_dz^t e^t for W_in (4n, n_in), W_rec (4n, n) and bias (4n), as Σ_t λ^t ⊗ u^t (module docstring).
    dE_dz: (B, T, n)."""
    signal = current_signal(params, record, dE_dz)
    return pre.split(contract_over_time(signal, pre.concatenated(with_bias=True), per_task), with_bias=True)


def traces(params, record: dict[str, torch.Tensor], pre: PresynapticInputs) -> torch.Tensor:
    """Dense e^t (B, T, 4n, n_in + n + 1) for diagnostics on small networks."""
    return torch.stack(list(trace_steps(params, record, pre)), dim=1)


def current_signal(params, record: dict[str, torch.Tensor], dE_dz: torch.Tensor) -> torch.Tensor:
    """Σ_{t'≥t} dE_dz^{t'} ∂m^{t'}/∂I^t along the cell state: λ_t = dE_dz^t ∂m^t/∂c^t + f^{t+1} λ_{t+1}.

    (B, T, n) -> (B, T, 4n) in the gate order (i, f, g, o).
    """
    i, f, g, o, c, c_prev = (record[k] for k in ("i", "f", "g", "o", "c", "c_prev"))
    tanh_c = torch.tanh(c)
    source = dE_dz * o * (1 - tanh_c * tanh_c)
    lam = torch.zeros_like(source[:, 0])
    lams = []
    for t in reversed(range(source.shape[1])):
        carry = f[:, t + 1] * lam if t + 1 < source.shape[1] else lam
        lam = source[:, t] + carry
        lams.append(lam)
    lam = torch.stack(lams[::-1], dim=1)
    return torch.cat([lam * g * i * (1 - i), lam * c_prev * f * (1 - f), lam * i * (1 - g * g),
                      dE_dz * tanh_c * o * (1 - o)], dim=-1)
