"""The interface every learning rule implements: gradients for every trainable tensor and the loss.

``rule.backward(network, inputs, loss_fn)`` is a drop-in for ``loss.backward()``: it accumulates
the rule's gradient into each parameter's ``.grad``, so any ``torch.optim`` optimizer can step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from l2l.network import RecurrentNetwork, Trial
from l2l.regularization import RateRegularization
from l2l.synapses import contract_over_time

LossFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps the readout output y (B, T, n_out) to a scalar task loss (mean over tasks)."""


@dataclass
class GradientResult:
    """loss = task_loss + regularization (detached scalars); grads by parameter name; the trial."""

    loss: torch.Tensor
    task_loss: torch.Tensor
    grads: dict[str, torch.Tensor]
    trial: Trial


class LearningRule(ABC):
    """A recurrent learning rule. Subclasses implement :meth:`gradients`."""

    name = "rule"

    def __init__(self, rate_regularization: RateRegularization | None = None) -> None:
        self.rate_regularization = rate_regularization

    @abstractmethod
    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        """Loss and gradient w.r.t. every trainable tensor of ``network`` (or of ``params``) on one batch."""

    def regularization_loss(self, network: RecurrentNetwork, trial: Trial) -> torch.Tensor:
        """E_reg summed over the spiking layers (zero without regularization)."""
        total = trial.output.new_zeros(())
        if self.rate_regularization is None:
            return total
        for cell, activity in zip(network.layers, trial.layers, strict=True):
            if cell.model.spiking:
                total = total + self.rate_regularization.loss(activity.z)
        return total

    def state_dict(self) -> dict:
        """What the rule learns besides the network (e.g. a synthetic gradient), for checkpoints; {} for most."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; most rules hold nothing, and refuse a state they cannot use."""
        if state:
            raise ValueError(f"rule {self.name} holds no state, the checkpoint gives it {sorted(state)}")

    def metrics(self) -> dict[str, float]:
        """The rule's own numbers of the last call (logged by the training loop); {} for most."""
        return {}

    def backward(self, network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn) -> GradientResult:
        """Accumulate the rule's gradients into ``p.grad`` of the network's parameters (like ``loss.backward()``)."""
        result = self.gradients(network, inputs, loss_fn)
        for name, p in network.named_parameters():
            g = result.grads[name].to(p)
            p.grad = g.clone() if p.grad is None else p.grad + g
        return result


def readout_gradients(delta_back: torch.Tensor, z: torch.Tensor, with_bias: bool,
                      per_task: bool = False) -> dict[str, torch.Tensor]:
    """The leaky readout's exact gradient from δ filtered backwards, F_κ^←(δ) (B, T, n_out), and the top layer's
    spikes z (B, T, n): {"readout.w_out": Σ_t F_κ^←(δ)^t z^t(, "readout.bias": Σ_t F_κ^←(δ)^t)}, summed over
    tasks unless ``per_task``."""
    grads = {"readout.w_out": contract_over_time(delta_back, z, per_task)}
    if with_bias:
        grads["readout.bias"] = delta_back.sum(1) if per_task else delta_back.sum((0, 1))
    return grads


def output_error(loss_fn: LossFn, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Task loss and δ^t = ∂loss/∂y^t (B, T, n_out), by autograd on the readout output only."""
    y = output.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(y)
        (delta,) = torch.autograd.grad(loss, y)
    return loss.detach(), delta
