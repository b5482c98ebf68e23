"""The ``higher`` backend of the one-shot update: the same adaptation through higher's differentiable
optimizers (which also allows an inner Adam).

Per task, the learner is patched by ``higher.innerloop_ctx(..., copy_initial_weights=False)`` so that
meta-gradients reach the original weights; the optimizer steps on a zero loss built from the fast
weights and a ``grad_callback`` that substitutes the e-prop updates ΔW (with their graph) for the
autograd gradients. With plain SGD this is W − η·ΔW, the explicit
backend's update, and gives the same meta-gradients (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import higher
import torch

from l2l.error_module import ErrorModule
from l2l.inner_loop.one_shot import Adaptation, InnerStep, adapted_names
from l2l.network import RecurrentNetwork, Trial
from l2l.traces.deep import deep_eligibility_gradients
from l2l.validation import require_choice, require_positive

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def adapt_with_higher(
    learner: RecurrentNetwork,
    error_module: ErrorModule,
    inputs: torch.Tensor,
    code: torch.Tensor,
    learning_rate: float,
    adapt_weights: Sequence[str] = ("w_in", "w_rec"),
    first_order: bool = False,
    inner_optimizer: str = "sgd",
) -> Adaptation:
    """One inner step per task with higher's differentiable ``inner_optimizer`` (``sgd`` or ``adam``).

    Shapes as :func:`l2l.inner_loop.one_shot.adapt`; tasks are adapted one at a time and stacked (B, ...).
    """
    require_positive("learning_rate", learning_rate)
    require_choice("inner_optimizer", inner_optimizer, tuple(OPTIMIZERS))
    names = list(learner.parameter_dict())
    adapted = adapted_names(learner, adapt_weights)
    per_task: list[dict[str, torch.Tensor]] = []
    updates: list[dict[str, torch.Tensor]] = []
    demos, signal_list, error_trials = [], [], []
    for b in range(inputs.shape[0]):
        optimizer = OPTIMIZERS[inner_optimizer](learner.parameters(), lr=learning_rate)
        with higher.innerloop_ctx(learner, optimizer, copy_initial_weights=False) as (fast, diff_opt):
            params = dict(zip(names, fast.parameters(), strict=True))
            demo = learner.run(inputs[b:b + 1], params, record=True)
            seen = demo.detached() if first_order else demo
            signals, error_trial = error_module.run(code[b:b + 1], seen)
            grads = deep_eligibility_gradients(
                learner, seen, signals, {n: p.detach() for n, p in params.items()} if first_order else params)
            zero = sum((p * 0).sum() for p in fast.parameters())
            diff_opt.step(zero, grad_callback=lambda autograd_grads, grads=grads: [
                grads[n] if n in adapted else g for n, g in zip(names, autograd_grads, strict=True)])
            per_task.append(dict(zip(names, fast.parameters(), strict=True)))
            updates.append({n: grads[n] for n in adapted})
            demos.append(demo)
            signal_list.append(signals)
            error_trials.append(error_trial)
    stacked = {n: torch.stack([p[n] for p in per_task]) if n in adapted else learner.parameter_dict()[n]
               for n in names}
    update = {n: torch.stack([u[n] for u in updates]) for n in adapted}
    demo = _stack_trials(demos)
    signals = [None if s[0] is None else torch.cat(s) for s in zip(*signal_list, strict=True)]
    return Adaptation(stacked, [InnerStep(demo, signals, _stack_trials(error_trials), update)])


def _stack_trials(trials: list[Trial]) -> Trial:
    """Concatenate single-task trials along the batch dimension (outputs and spikes; records dropped)."""
    from l2l.network import LayerActivity

    layers = [LayerActivity(torch.cat([t.layers[k].z for t in trials]), torch.cat([t.layers[k].z_prev for t in trials]))
              for k in range(len(trials[0].layers))]
    inputs = None if trials[0].inputs is None else torch.cat([t.inputs for t in trials])
    return Trial(inputs, layers, torch.cat([t.output for t in trials]))
