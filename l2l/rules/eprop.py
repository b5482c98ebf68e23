"""e-prop 1 (Bellec et al. 2020): eligibility traces × learning signals, online and local.

dE/dW_ji ≈ Σ_t L_j^t F_κ(e_ji)^t with L_j^t = Σ_k B_jk δ_k^t (+ the rate regularizer's ∂E/∂z_j^t).
The κ filter is moved onto the learning signal (Σ_t L^t F_κ(e)^t = Σ_t F_κ^←(L)^t e^t), which
keeps the LIF update a single contraction. The readout weights get their exact gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from l2l.feedback import Feedback, make_feedback
from l2l.filters import reverse_exp_filter
from l2l.network import RecurrentNetwork, Trial
from l2l.regularization import RateRegularization
from l2l.rules.base import GradientResult, LearningRule, LossFn, output_error, readout_gradients
from l2l.synapses import synaptic_input
from l2l.traces import eligibility_gradient
from l2l.validation import require_nonnegative_int


@dataclass
class ReadoutSignals:
    """What the readout tells the network: losses, exact readout gradients, the output error filtered
    backwards by κ (B, T, n_out), and the learning signal per layer (B, T, n_k): feedback of that error
    at the top, the rate regularizer's ∂E/∂z in every spiking layer."""

    task_loss: torch.Tensor
    reg_loss: torch.Tensor
    readout_grads: dict[str, torch.Tensor]
    error: torch.Tensor
    signals: list[torch.Tensor | None]


class EProp(LearningRule):
    """e-prop for a single recurrent layer with ``symmetric``, ``random`` or ``adaptive`` feedback.

    ``feedback_seed`` draws a random or adaptive B (None: 0). ``per_task=True`` returns one gradient per task
    (leading B) for per-task weights; the loss must then be a sum over tasks for the gradients to be those of
    each task's own loss.
    """

    name = "eprop"

    def __init__(
        self,
        feedback: str | Feedback = "symmetric",
        rate_regularization: RateRegularization | None = None,
        per_task: bool = False,
        feedback_seed: int | None = None,
        **feedback_options,
    ) -> None:
        super().__init__(rate_regularization)
        self.feedback = (make_feedback(feedback, **feedback_seeded(feedback, feedback_seed, feedback_options))
                         if isinstance(feedback, str) else feedback)
        self.per_task = per_task

    def readout_signals(self, network: RecurrentNetwork, params: Mapping[str, torch.Tensor], trial: Trial,
                        loss_fn: LossFn) -> ReadoutSignals:
        """Loss, readout gradients and learning signals from a recorded trial."""
        task_loss, delta = output_error(loss_fn, trial.output)
        with torch.no_grad():
            delta_back = reverse_exp_filter(delta, network.readout.kappa)
            top = trial.layers[-1]
            signals: list[torch.Tensor | None] = [None] * len(network.layers)
            signals[-1] = synaptic_input(delta_back, self.feedback.matrix(params["readout.w_out"]))
            if self.rate_regularization is not None:
                for k, (cell, activity) in enumerate(zip(network.layers, trial.layers, strict=True)):
                    if cell.model.spiking:
                        reg = self.rate_regularization.gradient_wrt_spikes(activity.z)
                        signals[k] = reg if signals[k] is None else signals[k] + reg
            grads = readout_gradients(delta_back, top.z, "readout.bias" in params, self.per_task)
        return ReadoutSignals(task_loss, self.regularization_loss(network, trial), grads, delta_back, signals)

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        if len(network.layers) != 1:
            raise ValueError(
                f"rule eprop takes a single recurrent layer, the network has {len(network.layers)}: "
                "use deep_eprop for stacks"
            )
        params = dict(params) if params is not None else network.parameter_dict()
        with torch.no_grad():
            trial = network.run(inputs, params, record=True)
        out = self.readout_signals(network, params, trial, loss_fn)
        with torch.no_grad():
            layer = eligibility_gradient(network.layers[0], trial.layers[0], inputs, out.signals[0], self.per_task)
        grads = {**{f"layers.0.{k}": v for k, v in layer.items()}, **out.readout_grads}
        return GradientResult(out.task_loss + out.reg_loss, out.task_loss, grads, trial)


def feedback_seeded(feedback: str, seed: int | None, options: dict) -> dict:
    """The feedback's options with ``seed`` (a random or adaptive B's; symmetric feedback has none)."""
    if seed is None or feedback == "symmetric":
        return options
    require_nonnegative_int("feedback_seed", seed)
    return {**options, "seed": seed}
