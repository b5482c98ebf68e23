"""The error module of e-prop 2: a recurrent network that emits a learning signal per learner neuron.

It sees the population-coded target, the learner's spikes and the task input (never the error);
its spikes, filtered, are projected by a learned matrix P onto the learner's neurons:
L_j^t = Σ_k P_jk z̄_k^t (Bellec et al. 2020, e-prop 2). The filter-and-project stage is exactly a leaky
readout y^t = κ y^{t-1} + P z^t, so the module is a :class:`RecurrentNetwork` whose readout is P.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from l2l.network import RecurrentNetwork, Trial
from l2l.spike_input import input_projection
from l2l.validation import require_choice, require_size


class ErrorModule(nn.Module):
    """Learning signals for a learner with layer sizes ``learner_sizes``.

    ``signal_layers="top"`` emits signals for the learner's top layer only, ``"all"`` for every layer.
    Inputs per step: [target code (n_code), learner spikes of every layer (Σ n_k), task input (n_in)].
    """

    def __init__(
        self,
        n_code: int,
        learner_sizes: Sequence[int],
        n_task_input: int,
        hidden: int = 300,
        cell: str = "lif",
        cell_params: Any = None,
        signal_layers: str = "top",
        tau_filter: float = 20.0,
        dt: float = 1.0,
    ) -> None:
        super().__init__()
        require_size("n_code", n_code)
        require_size("n_task_input", n_task_input)
        require_choice("signal_layers", signal_layers, ("top", "all"))
        if not learner_sizes:
            raise ValueError("learner_sizes=[] is not allowed: give the learner's layer sizes")
        self.learner_sizes = list(learner_sizes)
        self.signal_layers = signal_layers
        targets = self.learner_sizes if signal_layers == "all" else self.learner_sizes[-1:]
        self.network = RecurrentNetwork(
            n_code + sum(self.learner_sizes) + n_task_input, hidden, sum(targets), cell=cell,
            cell_params=cell_params, tau_out=tau_filter, dt=dt, readout_bias=False,
        )

    def run(self, code: torch.Tensor, learner_trial: Trial, params: Mapping[str, torch.Tensor] | None = None
            ) -> tuple[list[torch.Tensor | None], Trial]:
        """Signals per learner layer ((B, T, n_k) or None) and the module's own trial.

        code (B, T, n_code); the learner trial supplies its spikes and its task input. The module's input is
        never concatenated: its first layer's current is W_code·code + Σ_k W_k·z_k + W_x·x (time-major), so that
        the gradient reaches the learner's spikes without a product over the code's and the task input's columns.
        The returned trial's ``inputs`` is therefore None.
        """
        pieces = [code, *(a.z for a in learner_trial.layers), learner_trial.inputs]
        w_in = (params or {}).get("layers.0.w_in", self.network.layers[0].w_in)
        if w_in.dim() == 2:
            trial = self.network.run(None, params, input_current=self.input_current(pieces, w_in))
        else:  # one matrix per task: the concatenated input
            trial = self.network.run(torch.cat(pieces, dim=-1), params)
        pieces = list(trial.output.split(self.learner_sizes if self.signal_layers == "all"
                                         else self.learner_sizes[-1:], dim=-1))
        signals: list[torch.Tensor | None] = (pieces if self.signal_layers == "all"
                                              else [None] * (len(self.learner_sizes) - 1) + pieces)
        return signals, trial

    @staticmethod
    def input_current(pieces: Sequence[torch.Tensor], w_in: torch.Tensor) -> torch.Tensor:
        """Σ_p x_p W_pᵀ, time-major (T, B, hidden): pieces (B, T, m_p) in the column order of w_in (hidden, Σ m_p)."""
        blocks = w_in.split([x.shape[-1] for x in pieces], dim=-1)
        current = None
        for x, w in zip(pieces, blocks, strict=True):
            part = input_projection(x, w)
            current = part if current is None else current.add_(part)
        return current
