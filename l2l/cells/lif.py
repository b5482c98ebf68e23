"""Leaky integrate-and-fire neuron (Bellec et al. 2020), reset by subtraction.

v^t = α v^{t-1} + I^t − v_th z^{t-1},  z^t = H((v^t − v_th)/v_th), forced to 0 for
``n_ref`` steps after a spike; α = exp(−dt/τ_m). Autapses are removed by masking the
diagonal of W_rec in the forward pass. The pseudo-derivative ψ^t = dz^t/dv^t that the
eligibility traces read is 0 on refractory steps (``psi_refractory="zero"``) or, as in the
published e-prop 2 code, the surrogate of v^t there too (``"keep"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from l2l.cells.base import CellModel, RecurrentCell, cell_step
from l2l.spike import SURROGATES, SpikeFunction, needs_derivative, surrogate_derivative
from l2l.spiking_trial import SpikingConstants
from l2l.validation import require_choice, require_nonnegative_int, require_positive

PSI_REFRACTORY = ("zero", "keep")


@dataclass(frozen=True)
class LIFParameters:
    """τ_m and dt in ms; v_th > 0; γ and the surrogate shape.

    ``n_ref`` is the number of steps blocked after a spike: a spike at t forbids spikes at t+1 … t+n_ref.
    (The published e-prop 2 code's ``n_refractory=5`` blocks 4 steps: its counter is set to
    n_refractory − 1; ``n_ref=4`` here is that neuron.)

    ``psi_refractory`` is ψ on refractory steps in the eligibility traces (never in BPTT, where the
    masked spike has no derivative): ``"zero"`` as in e-prop (Bellec et al. 2020, Nat. Commun.: no
    pseudo-derivative while refractory) or ``"keep"``, the surrogate of v^t also there, as the inner-loop update of
    the published e-prop 2 code (IGITUGraz/eligibility_propagation, branch eprop2) computes it.
    """

    tau_m: float = 20.0
    v_th: float = 0.4
    n_ref: int = 5
    gamma: float = 0.3
    surrogate: str = "piecewise_linear"
    dt: float = 1.0
    no_autapses: bool = True
    psi_refractory: str = "zero"

    def __post_init__(self) -> None:
        require_positive("tau_m", self.tau_m)
        require_positive("v_th", self.v_th)
        require_nonnegative_int("n_ref", self.n_ref)
        require_positive("gamma", self.gamma)
        require_choice("surrogate", self.surrogate, tuple(SURROGATES))
        require_positive("dt", self.dt)
        require_choice("psi_refractory", self.psi_refractory, PSI_REFRACTORY)

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
    v: torch.Tensor, threshold_shift: torch.Tensor | None, refractory: torch.Tensor, p: LIFParameters, record: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """z = H((v − v_th − shift)/v_th) outside the refractory period (shift: ALIF's β·a, None for LIF).

    Records v − v_th − shift and the refractory counter (tensors that exist anyway: recording costs no
    operation); :func:`spiking_record` turns them into ψ for the whole trial at once. Without any
    derivative to take, the Heaviside is evaluated alone (the same comparison: v_th > 0 keeps the sign).
    """
    free = refractory <= 0
    excess = v - p.v_th if threshold_shift is None else v - p.v_th - threshold_shift
    if needs_derivative(v):
        z = SpikeFunction.apply(excess / p.v_th, p.gamma, p.surrogate) * free
    else:  # plain simulation: no autograd node, no surrogate
        z = ((excess > 0) & free).to(v.dtype)
    return z, ({"excess": excess, "refractory": refractory} if record else {})


def spiking_record(record: dict[str, torch.Tensor], p: LIFParameters) -> dict[str, torch.Tensor]:
    """ψ = dz/dv = s((v − A)/v_th)/v_th, on refractory steps zero or kept (``p.psi_refractory``); any shape
    (one step, or a whole trial).

    For the piecewise-linear surrogate ψ = max(0, γ/v_th − γ|v − A|/v_th²)·free, evaluated in place
    (one allocation) when no derivative of ψ is needed; it consumes ``record["excess"]`` then.
    """
    excess, refractory = record["excess"], record["refractory"]
    keep = p.psi_refractory == "keep"
    peak, slope = p.gamma / p.v_th, -p.gamma / p.v_th**2
    if needs_derivative(excess):  # ψ stays differentiable (the inner loop's update depends on it)
        if p.surrogate == "piecewise_linear":
            psi = (excess.abs() * slope + peak).clamp(min=0)
        else:
            psi = surrogate_derivative(excess / p.v_th, p.gamma, p.surrogate) / p.v_th
        return {"psi": psi if keep else psi.masked_fill(refractory > 0, 0)}
    if p.surrogate == "piecewise_linear":  # refractory counter r >= 1 pushes the argument below 0: ψ = 0
        psi = excess.abs_().mul_(slope).add_(peak)
        if not keep:
            psi.add_(refractory, alpha=-(peak + 1.0))
        return {"psi": psi.clamp_(min=0)}
    psi = surrogate_derivative(excess / p.v_th, p.gamma, p.surrogate) / p.v_th
    return {"psi": psi if keep else psi.masked_fill_(refractory > 0, 0)}


def next_refractory(refractory: torch.Tensor, z: torch.Tensor, n_ref: int) -> torch.Tensor:
    """Counter of refractory steps left: max(r − 1, 0) + n_ref·z."""
    return (refractory - 1).clamp(min=0).add(z.detach(), alpha=n_ref)


def lif_dynamics(
    current: torch.Tensor, z_prev_out: torch.Tensor, state: LIFState, p: LIFParameters, record: bool = False
) -> tuple[torch.Tensor, LIFState, dict[str, torch.Tensor]]:
    """One step from the input current I^t (B, n). Records what ψ^t = dz^t/dv^t (B, n) needs if asked."""
    v = current.add(state.v, alpha=p.alpha).sub_(z_prev_out, alpha=p.v_th)  # α v + I − v_th z (module docstring)
    z, rec = spike_with_refractoriness(v, None, state.refractory, p, record)
    return z, LIFState(v, z, next_refractory(state.refractory, z, p.n_ref)), rec


def lif_trial_constants(p: LIFParameters, n: int, like: torch.Tensor) -> SpikingConstants:
    """The numbers the fused trial (:mod:`l2l.spiking_trial`) needs."""
    return SpikingConstants(p.alpha, p.v_th, p.n_ref, p.gamma, p.surrogate)


MODEL = CellModel("lif", LIFParameters, LIFState, n_gates=1, has_bias=False, spiking=True, dynamics=lif_dynamics,
                  record_finish=spiking_record, trial_constants=lif_trial_constants)


def lif_step(
    x: torch.Tensor, state: LIFState, w_in: torch.Tensor, w_rec: torch.Tensor, p: LIFParameters
) -> tuple[torch.Tensor, LIFState]:
    """Pure step: x (B, n_in), weights (n, n_in)/(n, n) or per task (B, ·, ·) -> z (B, n), new state."""
    return cell_step(MODEL, x, state, w_in, w_rec, p)


class LIFCell(RecurrentCell):
    """LIF layer: W_in (n, n_in), W_rec (n, n); ``forward(x (B, n_in), state) -> (z (B, n), state)``."""

    model = MODEL
