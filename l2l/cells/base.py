"""What every neuron model provides to the network and to the learning rules.

Every cell receives one pre-activation current per gate and neuron,
``I^t = W_in x^t + W_rec z_out^{t-1} (+ b)`` of shape (B, G·n), and updates its
within-neuron state from it. ``z_out^{t-1}`` is the observable output as it leaves
the neuron (recurrent input, reset, readout, next layer); the within-neuron
copy ``state.z`` (used by ALIF's adaptation) stays in the state. This split is
the one e-prop's eligibility traces and ``factorization_vs_bptt`` rely on
(docs/verification.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from l2l.synapses import synaptic_input
from l2l.validation import require_size

# dynamics(current (B, G·n), z_prev_out (B, n), state, params, record) -> (z (B, n), state, record dict)
Dynamics = Callable[[torch.Tensor, torch.Tensor, Any, Any, bool], tuple[torch.Tensor, Any, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class CellModel:
    """A neuron model as the network sees it."""

    name: str
    parameters: type
    state: type[NamedTuple]
    n_gates: int
    has_bias: bool
    spiking: bool
    dynamics: Dynamics
    bias_init: Callable[[int], torch.Tensor] | None = field(default=None)
    record_finish: Callable[[dict[str, torch.Tensor], Any], dict[str, torch.Tensor]] | None = field(default=None)
    # (params, n, like) -> SpikingConstants: the model can run a whole trial as one node (l2l.spiking_trial)
    trial_constants: Callable[[Any, int, torch.Tensor], Any] | None = field(default=None)

    def finish_record(self, record: dict[str, torch.Tensor], params: Any) -> dict[str, torch.Tensor]:
        """What the eligibility traces read, from what ``dynamics`` recorded (per step or stacked (B, T, n)).

        Models whose trace factors are cheap functions of per-step quantities (ψ from the membrane)
        record those quantities during the loop and compute the factors here once for the whole trial.
        """
        return self.record_finish(record, params) if self.record_finish is not None else record

    def initial_bias(self, n: int) -> torch.Tensor:
        """Initial bias (G·n,): zeros unless the model says otherwise."""
        return self.bias_init(n) if self.bias_init is not None else torch.zeros(self.n_gates * n)

    def init_state(self, batch: int, n: int, dtype: torch.dtype, device: torch.device | str | None = None):
        """All-zero state for ``batch`` tasks of ``n`` neurons."""
        zeros = torch.zeros(batch, n, dtype=dtype, device=device)
        return self.state(*([zeros] * len(self.state._fields)))


def recurrent_weight(w_rec: torch.Tensor, params: Any) -> torch.Tensor:
    """W_rec as used in the forward pass: diagonal masked when ``params.no_autapses`` (no autapses)."""
    if not getattr(params, "no_autapses", False):
        return w_rec
    n = w_rec.shape[-1]
    rows = w_rec.shape[-2]
    eye = torch.eye(n, dtype=w_rec.dtype, device=w_rec.device).repeat(rows // n, 1)
    return w_rec * (1 - eye)


def cell_step(
    model: CellModel,
    x: torch.Tensor,
    state: Any,
    w_in: torch.Tensor,
    w_rec: torch.Tensor,
    params: Any,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Any]:
    """Pure step of any cell: x (B, n_in), weights (G·n, ·) or per task (B, G·n, ·) -> z (B, n), new state."""
    current = synaptic_input(x, w_in) + synaptic_input(state.z, recurrent_weight(w_rec, params))
    if bias is not None:
        current = current + bias
    z, state, _ = model.dynamics(current, state.z, state, params)
    return z, state


class RecurrentCell(nn.Module):
    """Thin module around a cell's pure step holding W_in (G·n, n_in), W_rec (G·n, n) and bias (G·n).

    Weights start as N(0, 1)/√fan_in (the reference initialization); subclasses set ``model``.
    """

    model: CellModel

    def __init__(self, n_in: int, n: int, params: Any = None) -> None:
        super().__init__()
        require_size("n_in", n_in)
        require_size("n", n)
        self.n_in, self.n = n_in, n
        self.params = params if params is not None else self.model.parameters()
        if not isinstance(self.params, self.model.parameters):
            raise ValueError(
                f"params={self.params!r} is not allowed for a {self.model.name} cell: "
                f"pass a {self.model.parameters.__name__}"
            )
        g = self.model.n_gates
        self.w_in = nn.Parameter(torch.randn(g * n, n_in) / math.sqrt(n_in))
        self.w_rec = nn.Parameter(torch.randn(g * n, n) / math.sqrt(n))
        self.bias = nn.Parameter(self.model.initial_bias(n)) if self.model.has_bias else None

    def init_state(self, batch: int, dtype: torch.dtype | None = None, device=None):
        """All-zero state for ``batch`` tasks."""
        return self.model.init_state(batch, self.n, dtype or self.w_in.dtype, device or self.w_in.device)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """x (B, n_in) -> z (B, n), new state."""
        if state is None:
            state = self.init_state(x.shape[0], x.dtype, x.device)
        return cell_step(self.model, x, state, self.w_in, self.w_rec, self.params, self.bias)
