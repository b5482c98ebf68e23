"""Real-time recurrent learning: exact forward-mode gradients with influence tensors (any depth).

Carries M^t = ds^t/dθ for the whole stack (``l2l.rules.influence``); the gradient is
Σ_t ∂E/∂y^t · dy^t/dθ plus the rate regularizer's Σ_t ∂E/∂z^t · dz^t/dθ. For small networks
and as an oracle; float64 works. With several layers this is exact deep RTRL.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from l2l.network import LayerActivity, RecurrentNetwork, Trial
from l2l.regularization import RateRegularization
from l2l.rules.base import GradientResult, LearningRule, LossFn, output_error
from l2l.rules.influence import Influence, forward_influence


class RTRL(LearningRule):
    """Exact gradients forward in time (equals BPTT to round-off). ``memory_budget_gib`` bounds the
    influence tensors (checked before allocating)."""

    name = "rtrl"
    order: int | None = None

    def __init__(self, rate_regularization: RateRegularization | None = None, memory_budget_gib: float = 4.0) -> None:
        super().__init__(rate_regularization)
        self.memory_budget_gib = memory_budget_gib

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        params = {k: v.detach() for k, v in (params or network.parameter_dict()).items()}
        if any(v.dim() > 2 and k.endswith(("w_in", "w_rec", "w_out")) for k, v in params.items()):
            raise ValueError(f"rule {self.name} takes shared weights only (no per-task batch dimension)")
        influence = forward_influence(network, params, inputs, self.order, self.memory_budget_gib)
        return self.result_from_influence(network, params, inputs, loss_fn, influence)

    def result_from_influence(self, network: RecurrentNetwork, params: Mapping[str, torch.Tensor],
                              inputs: torch.Tensor, loss_fn: LossFn, influence: Influence) -> GradientResult:
        """Contract the influence with ∂E/∂y (and the regularizer's ∂E/∂z) into named gradients."""
        task_loss, delta = output_error(loss_fn, influence.output)
        flat = torch.einsum("tpbk,btk->p", influence.dy, delta)
        layers = [LayerActivity(z, torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1)) for z in influence.spikes]
        trial = Trial(inputs, layers, influence.output)
        if self.rate_regularization is not None:
            for cell, z, dz_sum in zip(network.layers, influence.spikes, influence.dz_sum, strict=True):
                if cell.model.spiking:
                    # the regularizer's ∂E/∂z_j^t is the same at every t and b: contract with Σ_{t,b} dz/dθ
                    flat = flat + dz_sum @ self.rate_regularization.gradient_wrt_spikes(z)[0, 0]
        sizes = [params[k].numel() for k in params]
        grads = {k: g.reshape(params[k].shape) for k, g in zip(params, flat.split(sizes), strict=True)}
        task_loss = task_loss.detach()
        return GradientResult(task_loss + self.regularization_loss(network, trial), task_loss, grads, trial)
