"""Neuron models: one module each, a pure step function plus a thin ``nn.Module``."""

from l2l.cells.alif import ALIFCell, ALIFParameters, ALIFState, alif_step
from l2l.cells.base import CellModel, RecurrentCell, cell_step
from l2l.cells.lif import LIFCell, LIFParameters, LIFState, lif_step
from l2l.cells.lstm import LSTMCell, LSTMParameters, LSTMState, lstm_step
from l2l.cells.rnn import RNNCell, RNNParameters, RNNState, rnn_step

CELLS: dict[str, type[RecurrentCell]] = {"lif": LIFCell, "alif": ALIFCell, "lstm": LSTMCell, "rnn": RNNCell}

__all__ = [
    "CELLS", "CellModel", "RecurrentCell", "cell_step",
    "LIFCell", "LIFParameters", "LIFState", "lif_step",
    "ALIFCell", "ALIFParameters", "ALIFState", "alif_step",
    "LSTMCell", "LSTMParameters", "LSTMState", "lstm_step",
    "RNNCell", "RNNParameters", "RNNState", "rnn_step",
]
