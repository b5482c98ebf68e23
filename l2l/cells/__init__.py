"""Neuron models: one module each, a pure step function plus a thin ``nn.Module``; one registry for all."""

from l2l.cells.alif import ALIFCell, ALIFParameters, ALIFState, alif_step
from l2l.cells.base import CellModel, RecurrentCell, cell_step
from l2l.cells.lif import LIFCell, LIFParameters, LIFState, lif_step
from l2l.cells.lstm import LSTMCell, LSTMParameters, LSTMState, lstm_step
from l2l.cells.registry import CELLS, CellEntry, cell_names, cells_with_border_state, get_cell, register_cell
from l2l.cells.rnn import RNNCell, RNNParameters, RNNState, rnn_step

_LIF_KEYS = ("tau_m", "v_th", "n_ref", "gamma", "surrogate", "dt", "psi_refractory")
# verify parameters: tiny networks spike, refract and adapt within 30 steps
register_cell(CellEntry(LIFCell, "l2l.traces.lif", LIFParameters(tau_m=20.0, v_th=0.4, n_ref=2),
                        {k: k for k in _LIF_KEYS}, border_state=("v",)))
register_cell(CellEntry(ALIFCell, "l2l.traces.alif",
                        ALIFParameters(tau_m=20.0, v_th=0.4, n_ref=2, tau_a=40.0, beta=0.6),
                        {k: k for k in (*_LIF_KEYS, "tau_a", "beta", "adaptive_fraction")},
                        border_state=("v", "a", "z_self")))
register_cell(CellEntry(LSTMCell, "l2l.traces.lstm", LSTMParameters(), border_state=("c",)))
register_cell(CellEntry(RNNCell, "l2l.traces.rnn", RNNParameters(tau=5.0), {"tau": "tau_m", "dt": "dt"},
                        border_state=("v",)))

__all__ = [
    "CELLS", "CellEntry", "CellModel", "RecurrentCell", "cell_names", "cell_step", "cells_with_border_state",
    "get_cell", "register_cell",
    "LIFCell", "LIFParameters", "LIFState", "lif_step",
    "ALIFCell", "ALIFParameters", "ALIFState", "alif_step",
    "LSTMCell", "LSTMParameters", "LSTMState", "lstm_step",
    "RNNCell", "RNNParameters", "RNNState", "rnn_step",
]
