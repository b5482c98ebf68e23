"""Backpropagation through time: autograd through the whole trial."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from l2l.network import RecurrentNetwork
from l2l.rules.base import GradientResult, LearningRule, LossFn


class BPTT(LearningRule):
    """Exact gradient by reverse-mode autodiff (the reference every other rule is compared with)."""

    name = "bptt"

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        params = dict(params) if params is not None else network.parameter_dict()
        with torch.enable_grad():
            trial = network.run(inputs, params)
            task_loss = loss_fn(trial.output)
            loss = task_loss + self.regularization_loss(network, trial)
            names = [k for k, v in params.items() if v.requires_grad]
            grads = torch.autograd.grad(loss, [params[k] for k in names], allow_unused=True)
        out = {k: torch.zeros_like(v) for k, v in params.items()}
        out.update({k: g if g is not None else torch.zeros_like(params[k]) for k, g in zip(names, grads, strict=True)})
        return GradientResult(loss.detach(), task_loss.detach(), out, trial.detached())

