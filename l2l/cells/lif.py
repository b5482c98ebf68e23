"""Leaky integrate-and-fire neuron (Bellec et al. 2020), reset by subtraction.

v^t = α v^{t-1} + I^t − v_th z^{t-1},  z^t = H((v^t − v_th)/v_th), forced to 0 for
``n_ref`` steps after a spike (ψ = 0 there); α = exp(−dt/τ_m). Autapses are
removed by masking the diagonal of W_rec in the forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from l2l.cells.base import CellModel, RecurrentCell, cell_step
from l2l.spike import SURROGATES, spike, surrogate_derivative
from l2l.validation import require_choice, require_nonnegative_int, require_positive


@dataclass(frozen=True)
class LIFParameters:
    """τ_m and dt in ms; v_th > 0; ``n_ref`` refractory steps; γ and the surrogate shape."""

    tau_m: float = 20.0
    v_th: float = 0.4
    n_ref: int = 5
    gamma: float = 0.3
    surrogate: str = "piecewise_linear"
    dt: float = 1.0
    no_autapses: bool = True

    def __post_init__(self) -> None:
        require_positive("tau_m", self.tau_m)
        require_positive("v_th", self.v_th)
        require_nonnegative_int("n_ref", self.n_ref)
        require_positive("gamma", self.gamma)
        require_choice("surrogate", self.surrogate, tuple(SURROGATES))
        require_positive("dt", self.dt)

    @property
    def alpha(self) -> float:
        """Membrane decay per step, exp(−dt/τ_m)."""
        return math.exp(-self.dt / self.tau_m)


class LIFState(NamedTuple):
    """v, z, refractory counter; each (B, n)."""

    v: torch.Tensor
    z: torch.Tensor
    refractory: torch.Tensor


def spike_with_refractoriness(
    scaled: torch.Tensor, refractory: torch.Tensor, gamma: float, surrogate: str, v_th: float, record: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """z = H(scaled) outside the refractory period; returns z and, if recorded, ψ = dz/dv."""
    free = (refractory <= 0).to(scaled.dtype)
    z = spike(scaled, gamma, surrogate) * free
    rec = {"psi": surrogate_derivative(scaled, gamma, surrogate) * free / v_th} if record else {}
    return z, rec


def lif_dynamics(
    current: torch.Tensor, z_prev_out: torch.Tensor, state: LIFState, p: LIFParameters, record: bool = False
) -> tuple[torch.Tensor, LIFState, dict[str, torch.Tensor]]:
    """One step from the input current I^t (B, n). Records ψ^t = dz^t/dv^t (B, n) if asked."""
    v = p.alpha * state.v + current - p.v_th * z_prev_out
    z, rec = spike_with_refractoriness((v - p.v_th) / p.v_th, state.refractory, p.gamma, p.surrogate, p.v_th, record)
    refractory = torch.clamp(state.refractory - 1, min=0) + p.n_ref * z.detach()
    return z, LIFState(v, z, refractory), rec


MODEL = CellModel("lif", LIFParameters, LIFState, n_gates=1, has_bias=False, spiking=True, dynamics=lif_dynamics)


def lif_step(
    x: torch.Tensor, state: LIFState, w_in: torch.Tensor, w_rec: torch.Tensor, p: LIFParameters
) -> tuple[torch.Tensor, LIFState]:
    """Pure step: x (B, n_in), weights (n, n_in)/(n, n) or per task (B, ·, ·) -> z (B, n), new state."""
    return cell_step(MODEL, x, state, w_in, w_rec, p)


class LIFCell(RecurrentCell):
    """LIF layer: W_in (n, n_in), W_rec (n, n); ``forward(x (B, n_in), state) -> (z (B, n), state)``."""

    model = MODEL
