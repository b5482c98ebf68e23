"""Direct (non-meta) training of a network on a task family with any learning rule.

One iteration: sample a batch of episodes, let the rule put its gradient into ``p.grad``
(``rule.backward``; any rule of ``l2l.rules``), step the optimizer. Every ``log_every`` iterations a
record goes to the logger: the training batch's loss (task + regularization) and task loss as the
rule computed them before the step, the family's metrics on that batch, the mean firing rate (Hz)
and the elapsed wall time; the held-out evaluation batch (``eval_*`` keys) is scored every
``eval_every`` iterations, at the last one, and once more after training (``final_eval``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from l2l.network import RecurrentNetwork
from l2l.rules import LearningRule, OnlineEProp, SeparableLoss
from l2l.validation import require_nonnegative_int, require_size
from outer_loop.app.curriculum import Curriculum
from outer_loop.app.loggers import MetricsLogger
from outer_loop.guard import DivergenceGuard, GracefulStop, NonFiniteLossError, TrainingInterrupted
from tasks.base import Episode, TaskFamily


@dataclass
class TrainingResult:
    """history: the logged records (dicts, one per logged iteration); final_eval: metrics on the eval batch."""

    history: list[dict[str, Any]] = field(default_factory=list)
    final_eval: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0


def evaluate(network: RecurrentNetwork, family: TaskFamily, episode: Episode) -> tuple[dict[str, float], torch.Tensor]:
    """Loss and metrics (means over tasks) of ``network`` on ``episode``, and its output (B, T, n_out)."""
    with torch.no_grad():
        trial = network.run(episode.inputs)
        summary = family.loss(trial.output, episode).summary()
    if any(cell.model.spiking for cell in network.layers):
        summary["rate_hz"] = mean_rate_hz(trial.layers, network)
    return summary, trial.output


def mean_rate_hz(layers: list, network: RecurrentNetwork) -> float:
    """Mean firing rate (Hz) over the spiking layers' neurons, tasks and time; NaN without spiking layers."""
    rates = [a.z.float().mean() * 1000.0 / cell.params.dt for a, cell in zip(layers, network.layers, strict=True)
             if cell.model.spiking]
    return float(torch.stack(rates).mean()) if rates else float("nan")


def task_loss(rule: LearningRule, family: TaskFamily, episode: Episode) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loss ``rule`` minimizes on ``episode``: the family's mean task loss (for online e-prop as a sum over
    time, :class:`l2l.rules.SeparableLoss`, from the family's ``chunk_loss``)."""
    if isinstance(rule, OnlineEProp):
        return SeparableLoss(lambda y, steps: family.chunk_loss(y, episode, steps))
    return lambda y: family.loss(y, episode).mean


def _check_step(guard: DivergenceGuard, iteration: int, loss: float, network: RecurrentNetwork) -> None:
    """The loss (finite, not diverged) and every gradient (finite) of this iteration, before the step."""
    try:
        guard.check_loss(loss)
        for name, p in network.named_parameters():
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                raise NonFiniteLossError(f"the gradient of {name} has non-finite entries", f"the gradient of {name}")
    except NonFiniteLossError as error:
        raise type(error)(f"iteration {iteration}: {error}; stopping before the optimizer steps on it. "
                          "Try a smaller train.lr.", error.what, error.value) from None


def _check_weights(guard: DivergenceGuard, iteration: int, network: RecurrentNetwork) -> None:
    """Every weight finite after the step of ``iteration``."""
    try:
        guard.check_weights(network.named_parameters())
    except NonFiniteLossError as error:
        raise type(error)(f"iteration {iteration}: {error} after the optimizer step. Try a smaller train.lr.",
                          error.what, error.value) from None


def train_direct(
    network: RecurrentNetwork,
    rule: LearningRule,
    family: TaskFamily,
    optimizer: torch.optim.Optimizer,
    *,
    iterations: int,
    batch_size: int,
    generator: torch.Generator,
    eval_episode: Episode | None = None,
    log_every: int = 10,
    eval_every: int = 0,
    logger: MetricsLogger | None = None,
    metric: str | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
    on_log: Callable[[dict[str, Any]], None] | None = None,
    divergence_factor: float = 1000.0,
    first: int = 0,
    curriculum: Curriculum | None = None,
    eval_batch_size: int = 64,
    eval_seed: int = 0,
) -> TrainingResult:
    """Train ``network`` for ``iterations`` steps of ``optimizer`` on batches of ``batch_size`` episodes.

    ``generator`` draws the training episodes (same seed, same batches). ``metric`` (a key of the
    family's metrics) is shown in the progress bar. Returns the logged history and the final evaluation.
    Raises :class:`outer_loop.guard.NonFiniteLossError` (before the step) on a non-finite or diverged loss or
    gradient, or a non-finite weight, and :class:`outer_loop.guard.TrainingInterrupted` at the end of the
    iteration in which Ctrl-C or SIGTERM arrived (``.iteration`` of the exception: the completed ones).
    ``first``: the iterations already done (a resumed run continues at ``first``). With a ``curriculum`` the
    episodes come from its current stage, every training batch's metric is shown to it, the records carry
    ``stage``, and the evaluation batch is ``eval_batch_size`` episodes of the current stage drawn from ``eval_seed``.
    """
    require_size("train.iterations", iterations)
    require_size("train.batch_size", batch_size)
    require_size("train.log_every", log_every)
    require_nonnegative_int("train.eval_every", eval_every)
    guard = DivergenceGuard(divergence_factor, "train.divergence_factor")
    result = TrainingResult()
    start = time.perf_counter()
    bar = tqdm(total=iterations, initial=first, disable=not progress, desc=family.name, dynamic_ncols=True,
               leave=True)
    stage_eval: dict[int, Episode] = {}

    def current_eval() -> Episode | None:
        if curriculum is None:
            return eval_episode
        if curriculum.stage not in stage_eval:
            g = torch.Generator().manual_seed(eval_seed)
            stage_eval[curriculum.stage] = curriculum.sample(eval_batch_size, g).to(device)
        return stage_eval[curriculum.stage]

    with GracefulStop() as stop:
        try:
            for it in range(first, iterations):
                if curriculum is not None:
                    family = curriculum.family
                    episode = curriculum.sample(batch_size, generator).to(device)
                else:
                    episode = family.sample(batch_size, generator).to(device)

                loss_fn = task_loss(rule, family, episode)

                optimizer.zero_grad(set_to_none=True)
                grad = rule.backward(network, episode.inputs, loss_fn)
                trial = grad.trial
                if trial.output.shape[1] != episode.n_steps:   # online e-prop keeps its last chunk only
                    with torch.no_grad():
                        trial = network.run(episode.inputs)       # the same weights, the whole trial
                _check_step(guard, it, float(grad.loss), network)
                optimizer.step()
                _check_weights(guard, it, network)
                last = it == iterations - 1
                logged = it % log_every == 0 or last
                stage = curriculum.stage if curriculum is not None else None
                metrics = family.loss(trial.output, episode).summary() if logged or curriculum else {}
                if curriculum is not None:
                    curriculum.observe(metrics[curriculum.metric])
                if logged:
                    record: dict[str, Any] = {"iteration": it, "loss": float(grad.loss),
                                              "task_loss": float(grad.task_loss)}
                    record.update({k: v for k, v in metrics.items() if k != "loss"})
                    record.update(rule.metrics())
                    if stage is not None:
                        record["stage"] = stage
                    if any(cell.model.spiking for cell in network.layers):
                        record["rate_hz"] = mean_rate_hz(trial.layers, network)
                    if current_eval() is not None and eval_every > 0 and (it % eval_every == 0 or last):
                        summary, _ = evaluate(network, family, current_eval())
                        record.update({f"eval_{k}": v for k, v in summary.items()})
                    record["time_s"] = time.perf_counter() - start
                    result.history.append(record)
                    if logger is not None:
                        logger.log(record)
                    if on_log is not None:
                        on_log(record)
                    shown = {"loss": f"{record['task_loss']:.4g}"}
                    if metric is not None and metric in record:
                        shown[metric] = f"{record[metric]:.3g}"
                    bar.set_postfix(shown, refresh=False)
                bar.update(1)
                if stop.requested is not None and not last:
                    raise TrainingInterrupted(f"stopped by signal {stop.requested} after iteration {it}",
                                              stop.requested, completed=it + 1)
        finally:
            bar.close()
    if current_eval() is not None:
        result.final_eval, _ = evaluate(network, curriculum.family if curriculum else family, current_eval())
    result.wall_time_s = time.perf_counter() - start
    return result
