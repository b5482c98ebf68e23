"""The outer loop of e-prop 2: the meta-training stepper of :mod:`l2l.outer_loop.algorithm.run_loop`.

One iteration: draw B tasks from the loop's data generator (seed + 1), then :func:`outer_step` (the
meta-learner draws the coded targets from the same generator; outer loss, backward through both trials and
the update, clipping, step). The loop around it (logging, checkpoints, resume, signals, the divergence guard)
is the one direct training uses. Settings come as records (:class:`OuterSettings`, :class:`LoopSettings`):
nothing here reads a Hydra config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from l2l.outer_loop.algorithm.distributed import Ranks, check_same_parameters, mean_scalars, shard
from l2l.outer_loop.algorithm.meta import MetaLearner
from l2l.outer_loop.algorithm.outer_step import outer_step
from l2l.outer_loop.algorithm.run_loop import (
    LoopResult,
    LoopSettings,
    RecordLogger,
    TrainingLoop,
    check_optimizer_state,
)
from l2l.outer_loop.guard import DivergenceGuard
from l2l.outer_loop.optimizers import make_optimizer
from l2l.tasks.base import Episode
from l2l.validation import require_nonnegative, require_nonnegative_int, require_positive, require_size


@dataclass(frozen=True)
class OuterSettings:
    """One meta-training iteration: ``batch_size`` tasks, ``optimizer`` (adam | sgd) with ``lr``, the global
    gradient norm clipped to ``grad_clip`` (0: off); ``train_error_module=false`` freezes the error module;
    ``figure_every`` > 0: a figure of training task 0 every that many iterations."""

    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    grad_clip: float = 0.0
    train_error_module: bool = True
    figure_every: int = 0

    def __post_init__(self) -> None:
        require_size("outer.batch_size", self.batch_size)
        require_positive("outer.lr", self.lr)
        require_nonnegative("outer.grad_clip", self.grad_clip)
        require_nonnegative_int("outer.figure_every", self.figure_every)


class MetaStepper:
    """One outer iteration of e-prop 2 on ``meta`` (see :class:`l2l.outer_loop.algorithm.run_loop.Stepper`).

    ``on_figure(name, figure, iteration)`` receives the family's episode figure every ``figure_every``
    iterations. ``ranks``: this process's slice of the batch under torchrun (the group must be initialized)."""

    label = "meta-train"
    keys = ("meta", "optimizer")
    advice = "Try a smaller outer.lr or inner.lr, or outer.grad_clip > 0."

    def __init__(self, meta: MetaLearner, settings: OuterSettings, device: torch.device | str = "cpu",
                 ranks: Ranks | None = None, on_figure: Callable[[str, Any, int], None] | None = None) -> None:
        shard(settings.batch_size, ranks)   # a batch that does not split evenly stops here, before any work
        self.meta, self.settings, self.device, self.ranks, self.on_figure = meta, settings, device, ranks, on_figure
        if not settings.train_error_module:
            meta.error_module.requires_grad_(False)
        self.optimizer = make_optimizer(settings.optimizer, [p for p in meta.parameters() if p.requires_grad],
                                        settings.lr, key="outer.optimizer")
        self._checked_ranks = False

    def step(self, iteration: int, data: torch.Generator, guard: DivergenceGuard,
             interruptible: Callable[[], AbstractContextManager[None]], logged: bool) -> dict[str, Any]:
        with interruptible():
            episode, codes = rank_episode(self.meta, self.settings.batch_size, data, self.ranks, self.device)
        step, grad_norm = outer_step(self.meta, self.optimizer, episode, data, self.settings.grad_clip, guard, codes,
                                     interruptible)
        if not self._checked_ranks:   # the ranks took the same step: bit-identical meta-parameters
            check_same_parameters(self.meta.named_parameters(), self.ranks)
            self._checked_ranks = True
        every = self.settings.figure_every
        if self.on_figure is not None and every and (iteration + 1) % every == 0:
            figure = self.meta.family.plot(episode.select(0), step.test_output.detach()[:1])
            figure.suptitle(f"iteration {iteration}: training task 0, test trial after the one-shot update "
                            "(dashed: target)", fontsize=9)
            self.on_figure(self.meta.family.name, figure, iteration)
        if not logged:
            return {}
        return {**mean_scalars(step.metrics, self.ranks), "grad_norm": grad_norm,
                **{f"inner_lr/{k}": v for k, v in self.meta.rates.summary().items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"meta": self.meta.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.meta.load_state_dict(state["meta"])
        self.optimizer.load_state_dict(state["optimizer"])
        check_optimizer_state(self.optimizer)

    def weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        return self.meta.state_dict().items()

    def snapshot(self) -> None:
        return None

    def restore(self, snapshot: None) -> None:
        pass

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        return {"loss": f"{record['loss']:.4g}", "demo": f"{record['demo_mse']:.4g}",
                "test": f"{record['test_mse']:.4g}"}


def train_meta(meta: MetaLearner, settings: OuterSettings, loop: LoopSettings, seed: int,
               run_dir: str | Path | None = None, config: Mapping[str, Any] | None = None,
               logger: RecordLogger | None = None, resume: Mapping[str, Any] | None = None,
               ranks: Ranks | None = None, device: torch.device | str = "cpu",
               on_figure: Callable[[str, Any, int], None] | None = None) -> LoopResult:
    """Meta-train ``meta`` (freshly built, seeded) for ``loop.iterations``; the tasks come from seed + 1.

    ``run_dir``: checkpoints go to ``run_dir/checkpoints`` (None: none). ``resume``: a checkpoint's state to
    continue from (validated first). ``ranks``: under torchrun, every rank trains its slice of the batch and
    only rank 0 writes (give the others no ``logger`` and no ``on_figure``)."""
    meta.ranks = ranks
    try:
        stepper = MetaStepper(meta, settings, device, ranks, on_figure)
        data = torch.Generator().manual_seed(int(seed) + 1)
        checkpoints = Path(run_dir) / "checkpoints" if run_dir is not None else None
        training = TrainingLoop(stepper, loop, checkpoints, config or {}, data, ranks)
        if resume is not None:
            training.restore(resume)
        return training.run(logger)
    finally:
        meta.ranks = None   # evaluation after training runs on one rank, with nobody to reduce with


def rank_episode(meta: MetaLearner, batch_size: int, data: torch.Generator, ranks: Ranks | None,
                 device: torch.device | str) -> tuple[Episode, torch.Tensor | None]:
    """This rank's tasks of the next batch and their coded targets (None: the meta-learner draws them).

    Every rank draws the whole batch and its codes from ``data`` (the draws of a single process), then keeps
    its slice: tasks are disjoint across ranks and the same as the single-process batch together.
    """
    episode = meta.family.sample(batch_size, data)
    if ranks is None:
        return episode.to(device), None
    codes = meta.encode(episode, data)
    part = shard(batch_size, ranks)
    return episode.select(part).to(device), codes[:, part].to(device)
