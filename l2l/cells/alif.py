"""Adaptive LIF neuron (LSNN, Bellec et al. 2018/2020).

a^t = ρ a^{t-1} + z^{t-1},  A^t = v_th + β a^t,  v^t = α v^{t-1} + I^t − v_th z^{t-1},
z^t = H((v^t − A^t)/v_th) with the LIF refractory period; ρ = exp(−dt/τ_a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from l2l.cells.base import CellModel, RecurrentCell, cell_step
from l2l.cells.lif import LIFParameters, next_refractory, spike_with_refractoriness, spiking_record
from l2l.spiking_trial import SpikingConstants
from l2l.validation import InvalidValueError, require_nonnegative, require_positive


@dataclass(frozen=True)
class ALIFParameters(LIFParameters):
    """LIF parameters plus the adaptation time constant τ_a (ms), strength β >= 0 and the adaptive fraction.

    a^t = ρ a^{t-1} + z^{t-1} has no (1 − ρ) factor here: each spike raises the threshold by β, so
    the reference's β_ref (with (1 − ρ)) is β = β_ref·(1 − ρ) in this convention (the evidence
    accumulation config uses 0.0174).
    """

    v_th: float = 0.6
    tau_a: float = 2000.0
    beta: float = 1.8
    adaptive_fraction: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive("tau_a", self.tau_a)
        require_nonnegative("beta", self.beta)
        if not 0.0 <= self.adaptive_fraction <= 1.0:
            raise InvalidValueError("adaptive_fraction", self.adaptive_fraction, ": it must be in [0, 1]")

    def betas(self, n: int, like: torch.Tensor) -> float | torch.Tensor:
        """β per neuron: the last round(adaptive_fraction·n) neurons adapt, the others are LIF (β = 0).

        A float when every neuron adapts, else a (n,) tensor (the LSNN's mixed LIF + ALIF population).
        """
        if self.adaptive_fraction == 1.0:
            return self.beta
        n_adaptive = round(self.adaptive_fraction * n)
        beta = torch.zeros(n, dtype=like.dtype, device=like.device)
        beta[n - n_adaptive:] = self.beta
        return beta

    @property
    def rho(self) -> float:
        """Adaptation decay per step, exp(−dt/τ_a)."""
        return math.exp(-self.dt / self.tau_a)


class ALIFState(NamedTuple):
    """v, threshold adaptation a, z, refractory counter; each (B, n)."""

    v: torch.Tensor
    a: torch.Tensor
    z: torch.Tensor
    refractory: torch.Tensor


def alif_dynamics(
    current: torch.Tensor, z_prev_out: torch.Tensor, state: ALIFState, p: ALIFParameters, record: bool = False
) -> tuple[torch.Tensor, ALIFState, dict[str, torch.Tensor]]:
    """One step from I^t (B, n). The adaptation uses the within-neuron z^{t-1} (``state.z``)."""
    a = p.rho * state.a + state.z
    v = current.add(state.v, alpha=p.alpha).sub_(z_prev_out, alpha=p.v_th)
    z, rec = spike_with_refractoriness(v, p.betas(v.shape[-1], v) * a, state.refractory, p, record)
    return z, ALIFState(v, a, z, next_refractory(state.refractory, z, p.n_ref)), rec


def alif_trial_constants(p: ALIFParameters, n: int, like: torch.Tensor) -> SpikingConstants:
    """The numbers the fused trial (:mod:`l2l.spiking_trial`) needs; β a float or (n,)."""
    return SpikingConstants(p.alpha, p.v_th, p.n_ref, p.gamma, p.surrogate, p.rho, p.betas(n, like))


MODEL = CellModel("alif", ALIFParameters, ALIFState, n_gates=1, has_bias=False, spiking=True, dynamics=alif_dynamics,
                  record_finish=spiking_record, trial_constants=alif_trial_constants)


def alif_step(
    x: torch.Tensor, state: ALIFState, w_in: torch.Tensor, w_rec: torch.Tensor, p: ALIFParameters
) -> tuple[torch.Tensor, ALIFState]:
    """Pure step: x (B, n_in), weights (n, n_in)/(n, n) or per task (B, ·, ·) -> z (B, n), new state."""
    return cell_step(MODEL, x, state, w_in, w_rec, p)


class ALIFCell(RecurrentCell):
    """ALIF layer: W_in (n, n_in), W_rec (n, n); ``forward(x (B, n_in), state) -> (z (B, n), state)``."""

    model = MODEL
