"""The outer objective of e-prop 2: the test trial with the adapted weights, its task loss, and the rate
regularization of the learner (all its trials) and of the error module (every trial it ran in).

    test = learner(W_task, x)                               # the adapted weights of the inner loop
    (error_module(fresh target code, test spikes, x))       # with error_module_in_test: regularized only
    loss = task.loss(test) + Σ_layers E_reg(learner spikes) + Σ_layers E_reg(error-module spikes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from l2l.inner_loop.one_shot import Adaptation
from l2l.network import Trial
from l2l.outer_loop.algorithm.distributed import global_rates
from l2l.tasks.base import Episode
from l2l.timing import phase

if TYPE_CHECKING:  # the meta-learner holds the modules this objective reads
    from l2l.outer_loop.algorithm.meta import MetaLearner


@dataclass
class MetaStep:
    """loss: the outer loss (scalar, differentiable); metrics: floats for logging (demo_mse and test_mse:
    the family's metric before and after the update, means over tasks); per_task: those per task (B,);
    adaptation: the inner loop's result; test_output: the test trial's output (B, T, n_out); test_trial: the
    learner's test trial; test_error_trial: the error module's trial during it (with error_module_in_test)."""

    loss: torch.Tensor
    metrics: dict[str, float]
    per_task: dict[str, torch.Tensor] = field(default_factory=dict)
    adaptation: Adaptation | None = None
    test_output: torch.Tensor | None = None
    test_trial: Trial | None = None
    test_error_trial: Trial | None = None


def outer_objective(meta: MetaLearner, episode: Episode, adaptation: Adaptation,
                    test_code: torch.Tensor | None = None) -> MetaStep:
    """Run the test trial of ``episode`` (inputs (B, T, n_in)) with ``adaptation.params`` and score it.

    ``test_code`` (B, T, n_code): the coded target the error module sees in the test trial (needed, and only
    read, when ``meta.error_module_in_test``).
    """
    with phase("test trial"):
        test = meta.learner.run(episode.inputs, adaptation.params)
    error_trials = [step.error_trial for step in adaptation.steps if step.error_trial is not None]   # none: controls
    test_error_trial = None
    if meta.error_module_in_test:
        if test_code is None:
            raise ValueError("error_module_in_test needs the test trial's coded target (test_code)")
        with phase("error module"):
            test_error_trial = meta.error_module.run(test_code, test)[1]
        error_trials.append(test_error_trial)
    test_loss = meta.family.loss(test.output, episode)
    with torch.no_grad():
        demo_loss = meta.family.loss(adaptation.demo.output, episode)
    trials = [step.demo for step in adaptation.steps] + [test]
    across = (lambda rates: global_rates(rates, meta.ranks)) if meta.ranks is not None else None
    learner_reg = sum(meta.learner_reg.loss([t.layers[k].z for t in trials], across)
                      for k in range(len(meta.learner.layers)))
    error_spikes = [[trial.layers[k].z for trial in error_trials] for k in range(len(meta.error_module.network.layers))]
    error_reg = sum(meta.error_reg.loss(z, across) for z in error_spikes if z)
    loss = test_loss.mean + learner_reg + error_reg
    metric = meta.family.metric
    dt = meta.learner.readout.dt
    metrics = {
        "loss": float(loss.detach()), "task_loss": float(test_loss.mean.detach()),
        "reg_loss": float((learner_reg + error_reg).detach()),
        "demo_mse": float(demo_loss.metrics[metric].mean()), "test_mse": float(test_loss.metrics[metric].mean()),
        "learner_rate_hz": _rate_hz(trials, dt), "error_module_rate_hz": _rate_hz(error_trials, dt),
    }
    per_task = {"demo_mse": demo_loss.metrics[metric], "test_mse": test_loss.metrics[metric].detach()}
    return MetaStep(loss, metrics, per_task, adaptation, test.output, test, test_error_trial)


def _rate_hz(trials: list[Trial], dt: float) -> float:
    """Mean firing rate (Hz) over every layer, task and step of ``trials`` (0 without trials)."""
    if not trials:
        return 0.0
    with torch.no_grad():
        rates = [layer.z.float().mean() for t in trials for layer in t.layers]
        return float(torch.stack(rates).mean()) * 1000.0 / dt
