"""How gradient-like a learned one-shot update is: its cosine with the true gradient, and the error along it.

For each held-out task b the update's step is d_b = W − W_task,b (η included, whatever its shape: the learned
update as it is applied) and the true gradient g_b = ∇_W E_b is BPTT through the same demonstration
(:func:`l2l.outer_loop.algorithm.evaluation.bptt_task_gradients`). Reported per adapted tensor and over all
of them at once: the cosine between d_b and g_b, mean ± std over tasks. A step along the gradient scores 1 (MAML's
own step does: the positive control); e-prop 1's true-error step scores below 1; e-prop 2's learned step need not be
gradient-like at all.

The step-scale curve: the family's metric after W − s·d_b for each s of ``scales`` (s = 0 before the update,
s = 1 the update itself). A gradient-like step keeps improving for s a little above 1; a step tuned to its length
has its minimum at s = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from l2l.outer_loop.algorithm.evaluation import bptt_task_gradients, one_shot_step
from l2l.outer_loop.algorithm.meta import MetaLearner
from l2l.tasks.base import Episode

SCALES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine per task of (B, ...) tensors, flattened after the batch dimension (0 where either is zero)."""
    a, b = a.flatten(1).to(torch.float64), b.flatten(1).to(torch.float64)
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 0, (a * b).sum(1) / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)


def _stats(values: torch.Tensor) -> dict[str, float]:
    return {"mean": float(values.mean()), "std": float(values.std(unbiased=False))}


def update_alignment(meta: MetaLearner, episode: Episode, codes: torch.Tensor,
                     scales: Sequence[float] = SCALES) -> dict[str, Any]:
    """``{"cosine": {name or "all": {"mean", "std"}}, "step_scale": {str(s): mean metric}}`` on ``episode``
    (inputs (B, T, n_in)) with the coded targets ``codes`` (``meta.encode``)."""
    params = {name: p.detach() for name, p in meta.learner.parameter_dict().items()}
    adapted = {name: w.detach() for name, w in one_shot_step(meta, episode, codes).adaptation.params.items()
               if w.dim() == params[name].dim() + 1}
    steps = {name: params[name] - w for name, w in adapted.items()}                      # d_b, (B, ...)
    gradients = bptt_task_gradients(meta, episode)
    names = [name for name in steps if name in gradients]
    cosine = {name: _stats(_cosine(steps[name], gradients[name])) for name in names}
    cosine["all"] = _stats(_cosine(torch.cat([steps[n].flatten(1) for n in names], 1),
                                   torch.cat([gradients[n].flatten(1) for n in names], 1)))
    curve = {}
    with torch.no_grad():
        for s in scales:
            weights = {**params, **{name: params[name] - float(s) * steps[name] for name in names}}
            output = meta.learner.run(episode.inputs, weights).output
            curve[str(float(s))] = float(meta.family.loss(output, episode).metrics[meta.family.metric].mean())
    return {"cosine": cosine, "step_scale": curve}
