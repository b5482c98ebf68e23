"""How hard the held-out tasks are from a learned initialization: k Adam steps of BPTT on each demonstration.

From the learner's initial weights W, every task b gets its own copy of the adapted weights and takes k steps of
Adam on its demonstration's true task loss E_b (BPTT through the trial); the family's metric after k steps is the
"difficulty reference" beside the one-step rules (e-prop 2, MAML, one BPTT step). Adam is elementwise, so one
Adam over the stacked (B, ...) copies with the loss Σ_b E_b is B independent per-task runs (each copy enters only
its task's loss). The metric is read at every k of ``steps`` on the way to the largest; the best learning rate of
``learning_rates`` is reported per k (lowest mean metric; a non-finite result counts as the worst).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from l2l.inner_loop.one_shot import adapted_names
from l2l.outer_loop.algorithm.meta import MetaLearner
from l2l.tasks.base import Episode

ADAM_STEPS = (10, 100)
ADAM_LRS = (1e-3, 3e-3, 1e-2, 3e-2)


def adam_trajectory(meta: MetaLearner, episode: Episode, steps: Sequence[int], lr: float) -> dict[int, torch.Tensor]:
    """The family's metric per task (B,) after each k of ``steps`` Adam steps with learning rate ``lr``.

    episode.inputs (B, T, n_in); the adapted weights are ``meta.inner.adapt_weights``; other weights stay."""
    params = {name: p.detach() for name, p in meta.learner.parameter_dict().items()}
    names = adapted_names(meta.learner, meta.inner.adapt_weights)
    batch = episode.batch_size
    copies = [params[name].expand(batch, *params[name].shape).clone().requires_grad_(True) for name in names]
    optimizer = torch.optim.Adam(copies, lr=lr)
    wanted = sorted({int(k) for k in steps})
    metric, sign = meta.family.metric, (1.0 if meta.family.lower_is_better else -1.0)
    reached: dict[int, torch.Tensor] = {}
    for k in range(wanted[-1] + 1):
        if k in wanted:
            with torch.no_grad():
                output = meta.learner.run(episode.inputs, {**params, **dict(zip(names, copies, strict=True))}).output
                values = meta.family.loss(output, episode).metrics[metric].to(torch.float64)
                finite = torch.stack([c.detach().flatten(1).isfinite().all(1) for c in copies]).all(0)
                reached[k] = torch.where(finite & values.isfinite(), values, torch.full_like(values, sign * math.inf))
        if k == wanted[-1]:
            break
        optimizer.zero_grad()
        with torch.enable_grad():
            trial = meta.learner.run(episode.inputs, {**params, **dict(zip(names, copies, strict=True))})
            meta.family.loss(trial.output, episode).per_task.sum().backward()
        optimizer.step()
    return reached


def adam_steps_mse(meta: MetaLearner, episode: Episode, steps: Sequence[int] = ADAM_STEPS,
                   learning_rates: Sequence[float] = ADAM_LRS) -> dict[str, dict[str, Any]]:
    """Per k of ``steps``: ``{"mse": mean metric at the best lr, "std": over tasks, "lr": the best lr,
    "grid": {lr: mean metric}}`` (keys are str(k), for JSON)."""
    if not steps or any(int(k) < 1 for k in steps):
        raise ValueError(f"steps={list(steps)!r} is not allowed: give step counts >= 1")
    if not learning_rates or any(not (lr > 0 and math.isfinite(lr)) for lr in learning_rates):
        raise ValueError(f"learning_rates={list(learning_rates)!r} is not allowed: give finite rates > 0")
    sign = 1.0 if meta.family.lower_is_better else -1.0
    runs = {float(lr): adam_trajectory(meta, episode, steps, float(lr)) for lr in learning_rates}
    result = {}
    for k in sorted({int(k) for k in steps}):
        grid = {lr: float(values[k].mean()) for lr, values in runs.items()}
        best = min(grid, key=lambda lr: sign * grid[lr])
        values = runs[best][k]
        result[str(k)] = {"mse": grid[best], "std": float(values.std(unbiased=False)), "lr": best, "grid": grid}
    return result
