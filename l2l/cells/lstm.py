"""LSTM cell with gates on u^t = [x^t, m^{t-1}] in the order (input i, forget f, candidate g, output o).

c^t = f^t c^{t-1} + i^t g^t,  m^t = o^t tanh(c^t);  z^t = m^t is the observable output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from l2l.cells.base import CellModel, RecurrentCell, cell_step


@dataclass(frozen=True)
class LSTMParameters:
    """The LSTM has no hyperparameters beyond its sizes; autapses are ordinary here."""

    no_autapses: bool = False


class LSTMState(NamedTuple):
    """Cell state c and output z = m; each (B, n)."""

    c: torch.Tensor
    z: torch.Tensor


def lstm_dynamics(
    current: torch.Tensor, z_prev_out: torch.Tensor, state: LSTMState, p: LSTMParameters, record: bool = False
) -> tuple[torch.Tensor, LSTMState, dict[str, torch.Tensor]]:
    """One step from the gate pre-activations (B, 4n). Records the gates and c^{t-1}, c^t if asked."""
    pre_i, pre_f, pre_g, pre_o = current.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(pre_i), torch.sigmoid(pre_f), torch.tanh(pre_g), torch.sigmoid(pre_o)
    c = f * state.c + i * g
    m = o * torch.tanh(c)
    rec = {"i": i, "f": f, "g": g, "o": o, "c": c, "c_prev": state.c} if record else {}
    return m, LSTMState(c, m), rec


def _forget_bias_one(n: int) -> torch.Tensor:
    bias = torch.zeros(4 * n)
    bias[n : 2 * n] = 1.0
    return bias


MODEL = CellModel(
    "lstm", LSTMParameters, LSTMState, n_gates=4, has_bias=True, spiking=False,
    dynamics=lstm_dynamics, bias_init=_forget_bias_one,
)


def lstm_step(
    x: torch.Tensor, state: LSTMState, w_in: torch.Tensor, w_rec: torch.Tensor, bias: torch.Tensor,
    p: LSTMParameters | None = None,
) -> tuple[torch.Tensor, LSTMState]:
    """Pure step: x (B, n_in), W_in (4n, n_in), W_rec (4n, n), bias (4n) (or per task) -> m (B, n), state."""
    return cell_step(MODEL, x, state, w_in, w_rec, p or LSTMParameters(), bias)


class LSTMCell(RecurrentCell):
    """LSTM layer: W_in (4n, n_in), W_rec (4n, n), bias (4n) with forget bias 1."""

    model = MODEL
