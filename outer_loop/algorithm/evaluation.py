"""One-shot evaluation of a meta-learner against two one-step baselines that are told the true error.

On one batch of B tasks, each from the same initial weights W and the same demonstration trial:

- ``demo_mse`` / ``test_mse``: the family's metric before / after the meta-learner's update (e-prop 2);
- ``bptt_step_mse``: after W_task = W − lr·∇_W E_task (BPTT through the demonstration, the true task loss);
- ``eprop1_step_mse``: after W_task = W − lr·ΔW_task, ΔW one e-prop step with symmetric feedback
  B = W_outᵀ and the true output error ∂E_task/∂y (κ-filtered, as ``l2l.rules.eprop`` does).

Both baselines update the weights the meta-learner adapts (``meta.inner.adapt_weights``), one
gradient per task, and report the best learning rate of a grid (the lowest mean metric over tasks).
A step whose weights or metric are not finite counts as diverged: its metric is +inf.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.figure import Figure

from l2l.inner_loop.one_shot import adapted_names
from l2l.outer_loop.algorithm.meta import MetaLearner, MetaStep
from l2l.rules.deep_eprop import DeepEProp
from l2l.tasks.base import Episode


def bptt_task_gradients(meta: MetaLearner, episode: Episode) -> dict[str, torch.Tensor]:
    """∇_W E_b for every task b and every adapted weight, by autograd through the demonstration trial.

    episode.inputs (B, T, n_in). Returns name -> (B, *W.shape). The weights are expanded to per-task
    copies and the gradient is that of Σ_b E_b: task b's copy only enters E_b, so its gradient is ∂E_b/∂W.
    """
    params = {name: p.detach() for name, p in meta.learner.parameter_dict().items()}
    names = adapted_names(meta.learner, meta.inner.adapt_weights)
    batch = episode.batch_size
    with torch.enable_grad():
        per_task = {name: params[name].expand(batch, *params[name].shape).clone().requires_grad_(True)
                    for name in names}
        trial = meta.learner.run(episode.inputs, {**params, **per_task})
        loss = meta.family.loss(trial.output, episode).per_task.sum()
        grads = torch.autograd.grad(loss, [per_task[name] for name in names], allow_unused=True)
    return {name: torch.zeros_like(per_task[name]) if g is None else g.detach()
            for name, g in zip(names, grads, strict=True)}


def eprop1_task_gradients(meta: MetaLearner, episode: Episode) -> dict[str, torch.Tensor]:
    """One e-prop step per task with symmetric feedback and the true error, for every adapted weight.

    The learning signal of the top layer is L^t = W_outᵀ F_κ^←(∂E/∂y)^t with ∂E/∂y (B, T, n_out) from
    autograd on the task loss (through the arm's kinematics for the arm); deep eligibility traces carry
    it to lower layers (``DeepEProp`` in its factorized mode; with one layer it is ``EProp``). No rate
    regularization. Returns name -> (B, *W.shape).
    """
    params = {name: p.detach() for name, p in meta.learner.parameter_dict().items()}
    names = adapted_names(meta.learner, meta.inner.adapt_weights)
    rule = DeepEProp(feedback="symmetric", per_task=True)

    def loss_fn(output: torch.Tensor) -> torch.Tensor:
        # a sum over tasks, so that the per-task gradients are those of each task's own loss
        return meta.family.loss(output, episode).per_task.sum()

    result = rule.gradients(meta.learner, episode.inputs, loss_fn, params)
    return {name: result.grads[name] for name in names}


def step_grid(
    meta: MetaLearner, episode: Episode, grads: dict[str, torch.Tensor], learning_rates: Sequence[float]
) -> dict[str, Any]:
    """Score W_task = W − lr·grads (grads name -> (B, *W.shape)) on the test trial for every lr of the grid.

    Returns ``{"mse": mean metric over tasks at the best lr, "per_task": [B floats], "std": population
    std over tasks, "lr": best lr, "grid": {lr: mean metric}}``. Best = lowest mean (highest when the family's
    ``lower_is_better`` is false); ties go to the first. A non-finite result counts as the worst.
    """
    rates = [float(lr) for lr in learning_rates]
    if not rates:
        raise ValueError("learning_rates=[] is not allowed: give at least one learning rate")
    params = {name: p.detach() for name, p in meta.learner.parameter_dict().items()}
    metric = meta.family.metric
    sign = 1.0 if meta.family.lower_is_better else -1.0
    grid: dict[float, float] = {}
    best: tuple[float, float, torch.Tensor] | None = None
    with torch.no_grad():
        for lr in rates:
            adapted = {name: params[name] - lr * g for name, g in grads.items()}
            finite = torch.stack([w.flatten(1).isfinite().all(1) for w in adapted.values()]).all(0)   # (B,)
            output = meta.learner.run(episode.inputs, {**params, **adapted}).output
            values = meta.family.loss(output, episode).metrics[metric].to(torch.float64)           # (B,)
            values = torch.where(finite & values.isfinite(), values, torch.full_like(values, sign * math.inf))
            mean = float(values.mean())
            grid[lr] = mean
            if best is None or sign * mean < sign * best[1]:
                best = (lr, mean, values)
    lr, mean, values = best
    return {"mse": mean, "per_task": values.tolist(), "std": _std(values), "lr": lr, "grid": grid}


def bptt_step_mse(meta: MetaLearner, episode: Episode, learning_rates: Sequence[float]) -> dict[str, Any]:
    """The family's metric after one BPTT step per task on the demonstration (true task loss), best lr
    of ``learning_rates``. episode.inputs (B, T, n_in). Returns the dict of :func:`step_grid`."""
    return step_grid(meta, episode, bptt_task_gradients(meta, episode), learning_rates)


def eprop1_step_mse(meta: MetaLearner, episode: Episode, learning_rates: Sequence[float]) -> dict[str, Any]:
    """The family's metric after one e-prop step per task (symmetric feedback, true error), best lr of
    ``learning_rates``. episode.inputs (B, T, n_in). Returns the dict of :func:`step_grid`."""
    return step_grid(meta, episode, eprop1_task_gradients(meta, episode), learning_rates)


def one_shot_step(meta: MetaLearner, episode: Episode, codes: torch.Tensor) -> MetaStep:
    """The meta-learner on ``episode`` for evaluation: without autograd for the explicit backend (its update
    needs none), with it for ``higher`` (its optimizers need it)."""
    context = contextlib.nullcontext() if meta.backend.needs_autograd else torch.no_grad()
    with context:
        return meta(episode, codes=codes)


def evaluate_one_shot(
    meta: MetaLearner,
    episode: Episode,
    codes: torch.Tensor,
    bptt_lrs: Sequence[float],
    eprop1_lrs: Sequence[float],
    step: MetaStep | None = None,
) -> dict[str, Any]:
    """The content of eval.json: the meta-learner's one-shot metric and the two baselines' on one batch.

    episode.inputs (B, T, n_in); codes (K, B, T, n_code) the coded targets (``meta.encode``). Returns
    ``demo_mse``, ``test_mse``, ``bptt_step_mse``, ``eprop1_step_mse`` (means over tasks), ``per_task``
    and ``std`` (over tasks) of each, ``bptt_lr``, ``eprop1_lr`` (best of each grid), ``grid`` (the
    mean metric per lr of each baseline), ``n_tasks`` and ``ratio_test_over_demo``. ``step``: the
    meta-learner's result on this batch if the caller already has it (:func:`one_shot_step`).
    """
    if step is None:
        step = one_shot_step(meta, episode, codes)
    demo = step.per_task["demo_mse"].detach().to(torch.float64)
    test = step.per_task["test_mse"].detach().to(torch.float64)
    bptt = bptt_step_mse(meta, episode, bptt_lrs)
    eprop1 = eprop1_step_mse(meta, episode, eprop1_lrs)
    per_task = {"demo_mse": demo.tolist(), "test_mse": test.tolist(),
                "bptt_step_mse": bptt["per_task"], "eprop1_step_mse": eprop1["per_task"]}
    demo_mse, test_mse = float(demo.mean()), float(test.mean())
    return {
        "demo_mse": demo_mse,
        "test_mse": test_mse,
        "bptt_step_mse": bptt["mse"],
        "eprop1_step_mse": eprop1["mse"],
        "per_task": per_task,
        "std": {"demo_mse": _std(demo), "test_mse": _std(test),
                "bptt_step_mse": bptt["std"], "eprop1_step_mse": eprop1["std"]},
        "bptt_lr": bptt["lr"],
        "eprop1_lr": eprop1["lr"],
        "grid": {"bptt_step_mse": bptt["grid"], "eprop1_step_mse": eprop1["grid"]},
        "n_tasks": episode.batch_size,
        "ratio_test_over_demo": test_mse / demo_mse if demo_mse > 0 else math.inf,
    }


def one_shot_figure(
    meta: MetaLearner,
    episode: Episode,
    step_output_before: torch.Tensor,
    output_after: torch.Tensor,
    indices: Sequence[int] = (0, 1, 2),
) -> Figure:
    """Arm endpoint paths of a few tasks: target (dashed), before the update (the demonstration's output
    ω (B, T, 2)) and after it (the test trial's output (B, T, 2)).

    One column per task of ``indices`` (indices beyond the batch are skipped): the xy plane on top,
    x(t) and y(t) below; each column's title gives the metric before → after.
    """
    family = meta.family
    arm = getattr(family, "arm", None)
    if arm is None:
        raise ValueError(f"one_shot_figure draws arm trajectories; the family {family.name!r} has no arm")
    chosen = [int(i) for i in indices if 0 <= int(i) < episode.batch_size]
    if not chosen:
        raise ValueError(f"indices={tuple(indices)!r} has no task of the batch (B = {episode.batch_size})")
    before = step_output_before.detach().cpu().to(torch.float64)
    after = output_after.detach().cpu().to(torch.float64)
    cpu = episode.to("cpu", torch.float64)
    with torch.no_grad():
        mse_before = family.loss(before, cpu).metrics[family.metric]
        mse_after = family.loss(after, cpu).metrics[family.metric]
        xy_before, xy_after = arm.endpoint(before, family.dt), arm.endpoint(after, family.dt)   # (B, T, 2)
    target = cpu.target
    t = torch.arange(episode.n_steps) * family.dt
    start = arm.start_position()
    reach = arm.reach * 1.05
    fig = Figure(figsize=(3.3 * len(chosen), 6.6), layout="constrained")
    grid = fig.add_gridspec(3, len(chosen), height_ratios=(2.2, 1.0, 1.0))
    curves = (("target", target, dict(ls="--", color="C0")),
              ("before update (demo)", xy_before, dict(color="C1", alpha=0.8)),
              ("after update (test)", xy_after, dict(color="C2")))
    for col, i in enumerate(chosen):
        ax_xy = fig.add_subplot(grid[0, col])
        ax_x = fig.add_subplot(grid[1, col])
        ax_y = fig.add_subplot(grid[2, col], sharex=ax_x)
        for label, xy, style in curves:
            ax_xy.plot(xy[i, :, 0], xy[i, :, 1], label=label, **style)
            ax_x.plot(t, xy[i, :, 0], **style)
            ax_y.plot(t, xy[i, :, 1], **style)
        ax_xy.plot([0.0], [0.0], "ks", ms=4)
        ax_xy.plot([float(start[0])], [float(start[1])], "o", color="gray", ms=4, label="start")
        ax_xy.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal", xlabel="x", ylabel="y",
                  title=f"task {i}: {family.metric} {float(mse_before[i]):.3g} → {float(mse_after[i]):.3g}")
        ax_xy.title.set_fontsize(8)
        ax_x.set(ylabel="x")
        ax_y.set(ylabel="y", xlabel="time (ms)")
        if col == 0:
            ax_xy.legend(fontsize=7, loc="lower left")
    return fig


def _std(values: torch.Tensor) -> float:
    """Population standard deviation of values (B,) over tasks (0 for one task)."""
    return float(values.to(torch.float64).std(correction=0))
