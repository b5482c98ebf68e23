"""One-shot adaptation (e-prop 2's inner loop): demonstration → learning signals → one e-prop update.

``adapt`` returns an :class:`Adaptation` value (as learn2learn's clone/adapt): the per-task adapted
weights W_task = W_init − η·ΔW (B, ...), differentiable w.r.t. the learner's initial weights, the
error module and learned rates, without changing any module. ΔW = Σ_t L^t · e^t with the deep
eligibility traces of ``l2l.traces.deep`` (the ordinary e-prop traces for a one-layer learner).
With ``n_demos`` > 1 the demonstration is shown again after each update, to the updated weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from l2l.error_module import ErrorModule
from l2l.network import RecurrentNetwork, Trial
from l2l.timing import phase
from l2l.traces.deep import deep_eligibility_gradients
from l2l.validation import require_size

LearningRate = float | Mapping[str, float | torch.Tensor]


@dataclass
class InnerStep:
    """One demonstration and its update. demo: the learner's trial; signals: learning signals per
    learner layer ((B, T, n_k) or None); error_trial: the error module's trial (None for the controls told the
    true error, which run no error module); update: ΔW per name (B, ...)."""

    demo: Trial
    signals: list[torch.Tensor | None]
    error_trial: Trial | None
    update: dict[str, torch.Tensor]


@dataclass
class Adaptation:
    """params: the learner's per-task weights after every step (adapted tensors with a leading B);
    steps: one :class:`InnerStep` per demonstration, in order."""

    params: dict[str, torch.Tensor]
    steps: list[InnerStep]

    @property
    def demo(self) -> Trial:
        """The first demonstration trial (the learner before any update)."""
        return self.steps[0].demo

    @property
    def signals(self) -> list[torch.Tensor | None]:
        """The learning signals of the first demonstration, per learner layer."""
        return self.steps[0].signals

    @property
    def error_trial(self) -> Trial | None:
        """The error module's trial during the first demonstration (None for the controls)."""
        return self.steps[0].error_trial

    @property
    def update(self) -> dict[str, torch.Tensor]:
        """ΔW summed over the steps, per adapted name (B, ...)."""
        total = dict(self.steps[0].update)
        for step in self.steps[1:]:
            total = {name: total[name] + step.update[name] for name in total}
        return total


def adapted_names(learner: RecurrentNetwork, weights: Sequence[str]) -> list[str]:
    """Parameter names of the learner's recurrent layers whose kind (``w_in``, ``w_rec``, ``bias``) adapts."""
    allowed = ("w_in", "w_rec", "bias")
    if not weights:
        raise ValueError("inner.adapt_weights=[] is not allowed: name at least one of " + str(list(allowed)))
    for w in weights:
        if w not in allowed:
            raise ValueError(f"inner.adapt_weights={list(weights)!r} is not allowed: {w!r} is none of {list(allowed)}")
    return [name for name in learner.parameter_dict()
            if name.startswith("layers.") and name.split(".")[-1] in weights]


def per_task_weights(params: Mapping[str, torch.Tensor], names: Sequence[str], batch: int
                     ) -> dict[str, torch.Tensor]:
    """``params`` with each of ``names`` expanded to per-task copies (B, ...) (views: no memory, same values)."""
    weights = dict(params)
    for name in names:
        weights[name] = params[name].expand(batch, *params[name].shape)
    return weights


def rate_of(rates: LearningRate, name: str) -> float | torch.Tensor:
    """η of the adapted tensor ``name`` from a float or a per-name mapping (``InnerLearningRates()``)."""
    return rates if isinstance(rates, (int, float)) else rates[name]


def adapt(
    learner: RecurrentNetwork,
    error_module: ErrorModule,
    inputs: torch.Tensor,
    code: torch.Tensor | Sequence[torch.Tensor],
    learning_rate: LearningRate,
    adapt_weights: Sequence[str] = ("w_in", "w_rec"),
    first_order: bool = False,
    n_demos: int = 1,
) -> Adaptation:
    """``n_demos`` e-prop updates per task, one after each demonstration.

    inputs (B, T, n_in) task input; code (B, T, n_code) the coded target shown to the error module in
    every demonstration, or one per demonstration ((K ≥ n_demos, B, T, n_code) as ``MetaLearner.encode``
    draws them, or a sequence);
    learning_rate: η, a float or per adapted name a float or tensor broadcastable to the weight
    (learned rates, :class:`l2l.inner_loop.learning_rates.InnerLearningRates`).
    ``first_order`` drops the terms of ΔW's derivative w.r.t. the learner's weights (the traces and
    the spikes the error module sees are detached); the error module still gets its meta-gradient.
    """
    require_size("n_demos", n_demos)
    if isinstance(code, torch.Tensor):
        codes = list(code.unbind(0)) if code.dim() == 4 else [code] * n_demos
    else:
        codes = list(code)
    if len(codes) < n_demos:
        raise ValueError(f"code has {len(codes)} entries for n_demos={n_demos}: give one per demonstration")
    params = learner.parameter_dict()
    names = adapted_names(learner, adapt_weights)
    current = per_task_weights(params, names, inputs.shape[0])
    steps: list[InnerStep] = []
    for demo_code in codes[:n_demos]:
        with phase("demo trial"):
            demo = learner.run(inputs, current if steps else params, record=True)
        seen = demo.detached() if first_order else demo
        with phase("error module"):
            signals, error_trial = error_module.run(demo_code, seen)
        weights = current if steps else params
        if first_order:
            weights = {name: w.detach() for name, w in weights.items()}
        with phase("update"):
            grads = deep_eligibility_gradients(learner, seen, signals, weights, per_task=True)
        update = {name: grads[name] for name in names}
        current = dict(current)
        for name in names:
            current[name] = current[name] - rate_of(learning_rate, name) * update[name]
        steps.append(InnerStep(demo, signals, error_trial, update))
    return Adaptation(current, steps)
