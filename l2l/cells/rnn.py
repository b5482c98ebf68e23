"""Leaky tanh RNN: v^t = α v^{t-1} + (1 − α) I^t,  z^t = tanh(v^t),  α = exp(−dt/τ).

With τ → 0 it is the vanilla tanh RNN; with τ ≫ dt a leaky integrator like the LIF membrane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from l2l.cells.base import CellModel, RecurrentCell, cell_step
from l2l.validation import require_positive


@dataclass(frozen=True)
class RNNParameters:
    """τ and dt in ms."""

    tau: float = 10.0
    dt: float = 1.0
    no_autapses: bool = False

    def __post_init__(self) -> None:
        require_positive("tau", self.tau)
        require_positive("dt", self.dt)

    @property
    def alpha(self) -> float:
        """Leak per step, exp(−dt/τ)."""
        return math.exp(-self.dt / self.tau)


class RNNState(NamedTuple):
    """Pre-activation v and output z = tanh(v); each (B, n)."""

    v: torch.Tensor
    z: torch.Tensor


def rnn_dynamics(
    current: torch.Tensor, z_prev_out: torch.Tensor, state: RNNState, p: RNNParameters, record: bool = False
) -> tuple[torch.Tensor, RNNState, dict[str, torch.Tensor]]:
    """One step from I^t (B, n). Records ψ^t = dz^t/dv^t = 1 − z² if asked."""
    v = p.alpha * state.v + (1 - p.alpha) * current
    z = torch.tanh(v)
    rec = {"psi": 1 - z * z} if record else {}
    return z, RNNState(v, z), rec


MODEL = CellModel("rnn", RNNParameters, RNNState, n_gates=1, has_bias=True, spiking=False, dynamics=rnn_dynamics)


def rnn_step(
    x: torch.Tensor, state: RNNState, w_in: torch.Tensor, w_rec: torch.Tensor, bias: torch.Tensor,
    p: RNNParameters | None = None,
) -> tuple[torch.Tensor, RNNState]:
    """Pure step: x (B, n_in), W_in (n, n_in), W_rec (n, n), bias (n) (or per task) -> z (B, n), state."""
    return cell_step(MODEL, x, state, w_in, w_rec, p or RNNParameters(), bias)


class RNNCell(RecurrentCell):
    """Leaky tanh RNN layer: W_in (n, n_in), W_rec (n, n), bias (n)."""

    model = MODEL
