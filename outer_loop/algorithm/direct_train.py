"""Direct (non-meta) training of a network on a task family with any learning rule: the direct stepper of
:mod:`l2l.outer_loop.algorithm.run_loop`.

One iteration: sample a batch of episodes (from the curriculum's current stage when there is one), let the
rule put its gradient into ``p.grad`` (``rule.backward``; any rule of ``l2l.rules``), check the loss and the
gradients, step the optimizer. A logged record holds the training batch's loss (task + regularization) and
task loss as the rule computed them before the step, the family's metrics on that batch, the rule's own
numbers, the mean firing rate (Hz) and, every ``eval_every`` iterations and at the last, the held-out
evaluation batch (``eval_*`` keys); the loop adds ``iteration`` and ``seconds``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from l2l.network import RecurrentNetwork
from l2l.outer_loop.algorithm.curriculum import Curriculum
from l2l.outer_loop.algorithm.run_loop import (
    LoopResult,
    LoopSettings,
    RecordLogger,
    TrainingLoop,
    check_optimizer_state,
)
from l2l.outer_loop.guard import DivergenceGuard, NonFiniteLossError
from l2l.rules import LearningRule, OnlineEProp, SeparableLoss
from l2l.tasks.base import Episode, TaskFamily
from l2l.validation import require_nonnegative_int, require_size


@dataclass(frozen=True)
class DirectSettings:
    """``batch_size`` episodes per iteration; the held-out batch (``eval_batch_size`` episodes drawn from
    ``eval_seed``; with a curriculum, one per stage) is scored every ``eval_every`` iterations (0: only at the
    end); so are the held-out batches of the curriculum's ``probe_stages`` (``probe<k>_*`` keys)."""

    batch_size: int = 16
    eval_every: int = 0
    eval_batch_size: int = 64
    eval_seed: int = 2
    probe_stages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        require_size("train.batch_size", self.batch_size)
        require_nonnegative_int("train.eval_every", self.eval_every)
        require_size("train.eval_batch_size", self.eval_batch_size)


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


def check_gradients(network: RecurrentNetwork) -> None:
    """NonFiniteLossError naming the first parameter whose gradient has a NaN or inf entry."""
    for name, p in network.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            raise NonFiniteLossError(f"the gradient of {name} has non-finite entries", f"the gradient of {name}")


class DirectStepper:
    """One iteration of ``optimizer`` on ``network`` with ``rule`` (see :class:`run_loop.Stepper`).

    ``iterations``: the run's length (the held-out batch is also scored at the last). ``eval_episode``: the
    held-out batch (without a curriculum; None: no evaluation). ``curriculum``: the episodes come from its
    current stage and every training batch's metric is shown to it."""

    keys = ("network", "optimizer")
    advice = "Try a smaller train.lr."

    def __init__(self, network: RecurrentNetwork, rule: LearningRule, family: TaskFamily,
                 optimizer: torch.optim.Optimizer, settings: DirectSettings, iterations: int,
                 eval_episode: Episode | None = None, curriculum: Curriculum | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.network, self.rule, self.optimizer, self.settings = network, rule, optimizer, settings
        self.iterations = iterations
        self.base_family, self.eval_episode, self.curriculum, self.device = family, eval_episode, curriculum, device
        self.label = family.name
        self._stage_eval: dict[int, Episode] = {}

    @property
    def family(self) -> TaskFamily:
        """The family trained on now (the curriculum's current stage)."""
        return self.curriculum.family if self.curriculum is not None else self.base_family

    def current_eval(self) -> Episode | None:
        """The held-out batch of the current stage (drawn once per stage from ``eval_seed``)."""
        if self.curriculum is None:
            return self.eval_episode
        return self.stage_eval(self.curriculum.stage)

    def stage_eval(self, stage: int) -> Episode:
        """The held-out batch of curriculum stage ``stage`` (drawn once from ``eval_seed``)."""
        if stage not in self._stage_eval:
            g = torch.Generator().manual_seed(self.settings.eval_seed)
            episode = self.curriculum.families[stage].sample(self.settings.eval_batch_size, g)
            self._stage_eval[stage] = self.curriculum.pad(episode).to(self.device)     # padded as in training
        return self._stage_eval[stage]

    def step(self, iteration: int, data: torch.Generator, guard: DivergenceGuard,
             interruptible: Callable[[], AbstractContextManager[None]], logged: bool) -> dict[str, Any]:
        family, network = self.family, self.network
        with interruptible():   # a learned synthetic gradient steps inside rule.backward: snapshot() restores it
            if self.curriculum is not None:
                episode = self.curriculum.sample(self.settings.batch_size, data).to(self.device)
            else:
                episode = family.sample(self.settings.batch_size, data).to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            grad = self.rule.backward(network, episode.inputs, task_loss(self.rule, family, episode))
            trial = grad.trial
            if trial.output.shape[1] != episode.n_steps:   # online e-prop keeps its last chunk only
                with torch.no_grad():
                    trial = network.run(episode.inputs)       # the same weights, the whole trial
            guard.check_loss(float(grad.loss))
            check_gradients(network)
        self.optimizer.step()
        guard.check_weights(network.named_parameters())
        stage = self.curriculum.stage if self.curriculum is not None else None
        metrics = family.loss(trial.output, episode).summary() if logged or self.curriculum else {}
        if self.curriculum is not None:
            self.curriculum.observe(metrics[self.curriculum.metric])
        if not logged:
            return {}
        record: dict[str, Any] = {"loss": float(grad.loss), "task_loss": float(grad.task_loss)}
        record.update({k: v for k, v in metrics.items() if k != "loss"})
        record.update(self.rule.metrics())
        if stage is not None:
            record["stage"] = stage
        if any(cell.model.spiking for cell in network.layers):
            record["rate_hz"] = mean_rate_hz(trial.layers, network)
        every, held_out = self.settings.eval_every, self.current_eval()
        if held_out is not None and every > 0 and (iteration % every == 0 or iteration + 1 == self.iterations):
            summary, _ = evaluate(network, family, held_out)
            record.update({f"eval_{k}": v for k, v in summary.items()})
            for stage in self.settings.probe_stages if self.curriculum is not None else ():
                probe, _ = evaluate(network, self.curriculum.families[stage], self.stage_eval(stage))
                record.update({f"probe{stage}_{k}": v for k, v in probe.items()})
        return record

    def final_evaluation(self) -> dict[str, float]:
        """The held-out batch of the current stage after training ({} without one)."""
        held_out = self.current_eval()
        return evaluate(self.network, self.family, held_out)[0] if held_out is not None else {}

    def state_dict(self) -> dict[str, Any]:
        state = {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "rule": self.rule.state_dict()}
        if self.curriculum is not None:
            state["curriculum"] = self.curriculum.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        check_optimizer_state(self.optimizer)
        self.rule.load_state_dict(state.get("rule") or {})
        if self.curriculum is not None and "curriculum" in state:
            self.curriculum.load_state_dict(state["curriculum"])

    def weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        return self.network.state_dict().items()

    def snapshot(self) -> dict[str, Any] | None:
        state = self.rule.state_dict()
        return copy.deepcopy(state) if state else None

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        if snapshot is not None:
            self.rule.load_state_dict(snapshot)

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        shown = {"loss": f"{record['task_loss']:.4g}"}
        metric = self.family.metric
        if metric in record and metric != "loss":
            shown[metric] = f"{record[metric]:.3g}"
        return shown


def train_direct(network: RecurrentNetwork, rule: LearningRule, family: TaskFamily,
                 optimizer: torch.optim.Optimizer, settings: DirectSettings, loop: LoopSettings,
                 generator: torch.Generator, *, eval_episode: Episode | None = None,
                 curriculum: Curriculum | None = None, logger: RecordLogger | None = None,
                 device: torch.device | str = "cpu") -> LoopResult:
    """Train ``network`` for ``loop.iterations`` steps of ``optimizer`` on batches drawn from ``generator``
    (same seed, same batches), without checkpoints; returns the history and the final evaluation."""
    stepper = DirectStepper(network, rule, family, optimizer, settings, loop.iterations, eval_episode, curriculum,
                            device)
    return TrainingLoop(stepper, loop, None, {}, generator).run(logger, stepper.final_evaluation)
