"""Single-layer eligibility traces, one module per neuron model (docs/verification.md).

``eligibility_gradient`` computes Σ_t dE_dz_j^t e_ji^t for every weight of a layer from
the forward record; it is the e-prop update when dE_dz is a learning signal and
equals BPTT when dE_dz is BPTT's total derivative (Bellec eq. 1). To use a leaky
readout's learning signal L, pass ``reverse_exp_filter(L, κ)``: Σ_t L^t F_κ(e)^t is
the same sum. ``eligibility_traces`` returns the dense e^t for small networks.
"""

from __future__ import annotations

from typing import Any

import torch

from l2l.cells import CELLS, RecurrentCell
from l2l.cells.base import recurrent_weight
from l2l.network import LayerActivity
from l2l.traces.presynaptic import PresynapticInputs


def trace_module(cell: RecurrentCell) -> Any:
    """The eligibility-trace functions of ``cell``'s model (its registry entry's ``traces``)."""
    return CELLS[cell.model.name].trace_module()


def eligibility_gradient(
    cell: RecurrentCell, activity: LayerActivity, inputs: torch.Tensor, dE_dz: torch.Tensor, per_task: bool = False
) -> dict[str, torch.Tensor]:
    """Σ_t dE_dz^t · e^t. inputs (B, T, n_in), dE_dz (B, T, n) -> {"w_in", "w_rec"(, "bias")}.

    Sums over tasks unless ``per_task`` (then each gradient has a leading B). ``activity`` must come
    from a run with ``record=True``. The W_rec diagonal is zero when the cell has no autapses.
    """
    pre = PresynapticInputs(inputs, activity.z_prev)
    return without_autapses(cell, trace_module(cell).gradient(cell.params, activity.record, pre, dE_dz,
                                                                           per_task))


def eligibility_traces(cell: RecurrentCell, activity: LayerActivity, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dense traces e^t per weight: {"w_in": (B, T, G·n, n_in), "w_rec": (B, T, G·n, n)(, "bias": (B, T, G·n))}.

    For inspection and tests on small networks only; apply ``exp_filter(e, κ)`` for F_κ(e).
    """
    pre = PresynapticInputs(inputs, activity.z_prev)
    module = trace_module(cell)
    return without_autapses(cell, pre.split(module.traces(cell.params, activity.record, pre), cell.model.has_bias))


def current_signal(cell: RecurrentCell, activity: LayerActivity, dE_dz: torch.Tensor) -> torch.Tensor:
    """The signal on the layer's input currents, Σ_{t'≥t} dE_dz^{t'} ∂z^{t'}/∂I^t (within-neuron paths).

    dE_dz (B, T, n) -> (B, T, G·n). Σ_t current_signal^t ⊗ u^t equals ``eligibility_gradient`` (the same
    sum taken backwards in time), and current_signal @ U is what a layer passes to the layer below
    through its feedforward weights U: the depth step of deep eligibility traces.
    """
    return trace_module(cell).current_signal(cell.params, activity.record, dE_dz)


def without_autapses(cell: RecurrentCell, per_weight: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zero the W_rec diagonal (..., n, n) when the cell has no autapses: those synapses do not exist."""
    if getattr(cell.params, "no_autapses", False):
        per_weight["w_rec"] = recurrent_weight(per_weight["w_rec"], cell.params)
    return per_weight


__all__ = ["current_signal", "eligibility_gradient", "eligibility_traces", "PresynapticInputs", "trace_module"]
