"""One e-prop 1 step as an inner backend: the true output error, fed back, times the eligibility traces.

    demo    = learner(W_init, x)                               # recorded for the traces
    δ^t     = ∂E_b/∂y^t                                        # the true output error of task b (autograd)
    L^t     = B · F_κ^←(δ)^t                                   # B = W_outᵀ (symmetric) or a fixed random matrix
    W_task  = W_init − η·Σ_t L^t e^t                           # deep eligibility traces (l2l.traces.deep)

The meta-trained control of e-prop 2 whose learning signal is not learned: the same outer loop, budget and metrics,
the learner's initialization (and η, when learned) meta-trained for one e-prop 1 step. The random feedback matrix
is drawn once from seed 0 (``l2l.feedback.RandomFeedback``), the same in every iteration and run.
``inner.first_order=true`` treats ΔW as a constant of the meta-gradient (as MAML's first-order variant).
"""

from __future__ import annotations

import torch

from l2l.feedback import make_feedback
from l2l.filters import reverse_exp_filter
from l2l.inner_loop.backends import register_backend
from l2l.inner_loop.one_shot import Adaptation, InnerStep, adapted_names, per_task_weights, rate_of
from l2l.inner_loop.settings import InnerSettings
from l2l.inner_loop.true_error import require_plain_step, true_loss
from l2l.synapses import synaptic_input
from l2l.timing import phase
from l2l.traces.deep import deep_eligibility_gradients

FEEDBACK_SEED = 0


class EProp1Backend:
    """One e-prop 1 step per task with the true output error and ``feedback`` (symmetric | random)."""

    needs_autograd = True
    uses_error_module = False

    def __init__(self, feedback: str) -> None:
        self.feedback = feedback
        self.name = f"eprop1_{feedback}"

    def check(self, settings: InnerSettings, lr_mode: str = "fixed") -> None:
        require_plain_step(settings, self.name, "one e-prop step")

    def learning_signals(self, learner, params, output: torch.Tensor, loss_of, create_graph: bool
                         ) -> list[torch.Tensor | None]:
        """Per learner layer: None below the top, L (B, T, n_top) at the top. output (B, T, n_out)."""
        with torch.enable_grad():
            (delta,) = torch.autograd.grad(loss_of(output).sum(), output, create_graph=create_graph)
        back = reverse_exp_filter(delta, learner.readout.kappa)                   # F_κ^←(δ), (B, T, n_out)
        options = {"seed": FEEDBACK_SEED} if self.feedback == "random" else {}
        matrix = make_feedback(self.feedback, **options).matrix(params["readout.w_out"])
        signals: list[torch.Tensor | None] = [None] * len(learner.layers)
        signals[-1] = synaptic_input(back, matrix)
        return signals

    def adapt(self, learner, error_module, inputs, codes, rates, settings, demo_loss=None) -> Adaptation:
        """inputs (B, T, n_in); ``codes`` and ``error_module`` unused. Returns per-task weights (B, ...)."""
        loss_of = true_loss(demo_loss, self.name)
        eta = rates()
        params = learner.parameter_dict()
        names = adapted_names(learner, settings.adapt_weights)
        current = per_task_weights(params, names, inputs.shape[0])
        first_order = settings.first_order
        steps: list[InnerStep] = []
        for _ in range(settings.n_demos):
            weights = current if steps else params
            with torch.enable_grad(), phase("demo trial"):
                demo = learner.run(inputs, weights, record=True)
            with phase("update"):
                signals = self.learning_signals(learner, weights, demo.output, loss_of, not first_order)
                seen = demo.detached() if first_order else demo
                if first_order:
                    signals = [None if s is None else s.detach() for s in signals]
                    weights = {name: w.detach() for name, w in weights.items()}
                grads = deep_eligibility_gradients(learner, seen, signals, weights, per_task=True)
            update = {name: grads[name] for name in names}
            current = dict(current)
            for name in names:
                current[name] = current[name] - rate_of(eta, name) * update[name]
            steps.append(InnerStep(demo, signals, None, update))
        return Adaptation(current, steps)


register_backend(EProp1Backend("symmetric"))
register_backend(EProp1Backend("random"))
