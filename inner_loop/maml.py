"""MAML as an inner backend: one BPTT step per task on the demonstration's true task loss.

    demo    = learner(W_init, x)                      # per-task copies of the adapted weights
    g_b     = ∇_W E_b(demo_b)                          # BPTT through the demonstration, task b's own loss
    W_task  = W_init − η·g_b                           # η fixed or learned (inner.lr_mode), as e-prop 2's

The meta-trained control of e-prop 2 (Finn et al. 2017, with learned rates as in Meta-SGD): the same outer loop,
budget and metrics, but the update is the true gradient, not the error module's. Second order by default: the
meta-gradient flows through g_b (``create_graph=True``), so the demonstration runs on the step-by-step trial
path (the fused trial and the deferred recurrent gradient are first-order only;
:func:`l2l.twice_differentiable.twice_differentiable`). ``inner.first_order=true``
is first-order MAML: g_b is a constant of the meta-gradient and the demonstration takes the fused path.
With ``n_demos`` > 1, one step per demonstration, each from the weights the last one left.
"""

from __future__ import annotations

import contextlib

import torch

from l2l.inner_loop.backends import register_backend
from l2l.inner_loop.one_shot import Adaptation, InnerStep, adapted_names, per_task_weights, rate_of
from l2l.inner_loop.settings import InnerSettings
from l2l.inner_loop.true_error import require_plain_step, true_loss
from l2l.timing import phase
from l2l.twice_differentiable import twice_differentiable


class MAMLBackend:
    """One BPTT step per task on the true task loss; second order unless ``inner.first_order``."""

    name = "maml"
    needs_autograd = True
    uses_error_module = False

    def check(self, settings: InnerSettings, lr_mode: str = "fixed") -> None:
        require_plain_step(settings, self.name, "a plain gradient step")

    def adapt(self, learner, error_module, inputs, codes, rates, settings, demo_loss=None) -> Adaptation:
        """inputs (B, T, n_in); ``codes`` and ``error_module`` unused. Returns per-task weights (B, ...)."""
        loss_of = true_loss(demo_loss, self.name)
        eta = rates()
        params = learner.parameter_dict()
        names = adapted_names(learner, settings.adapt_weights)
        current = per_task_weights(params, names, inputs.shape[0])
        second_order = not settings.first_order
        steps: list[InnerStep] = []
        for _ in range(settings.n_demos):
            with torch.enable_grad():
                # the weights the inner gradient is taken w.r.t.: task b's copy enters only E_b, so the gradient
                # of Σ_b E_b w.r.t. the (B, ...) copies is each task's own ∇_W E_b
                if second_order:
                    inner = {name: current[name] if current[name].requires_grad
                             else current[name].clone().requires_grad_(True) for name in names}
                else:
                    inner = {name: current[name].detach().clone().requires_grad_(True) for name in names}
                context = twice_differentiable() if second_order else contextlib.nullcontext()
                with context, phase("demo trial"):
                    demo = learner.run(inputs, {**current, **inner})
                with phase("update"):
                    total = loss_of(demo.output).sum()
                    # first order keeps the demonstration's graph too: its spikes enter the rate regularization
                    grads = torch.autograd.grad(total, [inner[name] for name in names], create_graph=second_order,
                                                retain_graph=True, allow_unused=True)
            update = {name: torch.zeros_like(inner[name]) if g is None else g
                      for name, g in zip(names, grads, strict=True)}
            base = inner if second_order else current
            current = {**current, **{name: base[name] - rate_of(eta, name) * update[name] for name in names}}
            steps.append(InnerStep(demo, [None] * len(learner.layers), None, update))
        return Adaptation(current, steps)


register_backend(MAMLBackend())
