"""One-shot adaptation (e-prop 2's inner loop): demonstration → learning signals → one e-prop update.

``adapt`` returns an :class:`Adaptation` value (as learn2learn's clone/adapt): the per-task adapted
weights W_task = W_init − η·ΔW (B, ...), differentiable w.r.t. the learner's initial weights and the
error module, without changing either module. ΔW = Σ_t L^t · e^t with the deep eligibility traces of
``l2l.traces.deep`` (the ordinary e-prop traces for a one-layer learner).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from l2l.error_module import ErrorModule
from l2l.network import RecurrentNetwork, Trial
from l2l.traces.deep import deep_eligibility_gradients


@dataclass
class Adaptation:
    """params: the learner's per-task weights (every adapted tensor with a leading B);
    update: ΔW per adapted name (B, ...); demo: the learner's demonstration trial;
    signals: learning signals per learner layer; error_trial: the error module's trial."""

    params: dict[str, torch.Tensor]
    update: dict[str, torch.Tensor]
    demo: Trial
    signals: list[torch.Tensor | None]
    error_trial: Trial


def adapted_names(learner: RecurrentNetwork, weights: Sequence[str]) -> list[str]:
    """Parameter names of the learner's recurrent layers whose kind (``w_in``, ``w_rec``, ``bias``) adapts."""
    allowed = ("w_in", "w_rec", "bias")
    for w in weights:
        if w not in allowed:
            raise ValueError(f"adapt_weights contains {w!r}: choose from {list(allowed)}")
    return [name for name in learner.parameter_dict()
            if name.startswith("layers.") and name.split(".")[-1] in weights]


def adapt(
    learner: RecurrentNetwork,
    error_module: ErrorModule,
    inputs: torch.Tensor,
    code: torch.Tensor,
    learning_rate: float | Mapping[str, torch.Tensor],
    adapt_weights: Sequence[str] = ("w_in", "w_rec"),
    first_order: bool = False,
) -> Adaptation:
    """One e-prop update per task from one demonstration.

    inputs (B, T, n_in) task input; code (B, T, n_code) the coded target shown to the error module;
    learning_rate: η, a float or per adapted name a tensor broadcastable to the weight (learned rates).
    ``first_order`` drops the terms of ΔW's derivative w.r.t. the learner's weights (the traces and
    the spikes the error module sees are detached); the error module still gets its meta-gradient.
    """
    params = learner.parameter_dict()
    demo = learner.run(inputs, params, record=True)
    seen = demo.detached() if first_order else demo
    signals, error_trial = error_module.run(code, seen)
    grads = deep_eligibility_gradients(learner, seen, signals, params, per_task=True)
    batch = inputs.shape[0]
    names = adapted_names(learner, adapt_weights)
    update = {name: grads[name] for name in names}
    adapted = dict(params)
    for name in names:
        eta = learning_rate if isinstance(learning_rate, (int, float)) else learning_rate[name]
        adapted[name] = params[name].expand(batch, *params[name].shape) - eta * update[name]
    return Adaptation(adapted, update, demo, signals, error_trial)
