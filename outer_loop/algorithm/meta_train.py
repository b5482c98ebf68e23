"""The outer loop of e-prop 2: meta-training with checkpoints, resume, NaN guard and a progress bar.

One iteration: draw B tasks from the data generator (seed + 1), then :func:`outer_step` (the meta-learner
draws the coded targets from the same generator; outer loss, backward through both trials and the update,
clipping, step), guarded by :class:`outer_loop.guard.DivergenceGuard`. ``checkpoints/last.pt`` holds
everything a resumed run needs to continue bit for bit: meta-parameters, optimizer state, the data
generator's and torch's RNG states, the iteration, the resolved config and the logged history (so that a
resumed run's metrics.jsonl is whole).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from l2l.device import resolve_device
from l2l.validation import require_nonnegative, require_nonnegative_int, require_positive, require_size
from outer_loop.algorithm.distributed import Ranks, check_same_parameters, mean_scalars, shard
from outer_loop.algorithm.meta import MetaLearner
from outer_loop.algorithm.outer_step import outer_step
from outer_loop.checkpoint import save_checkpoint
from outer_loop.guard import DivergenceGuard, GracefulStop, NonFiniteLossError, TrainingInterrupted, all_finite
from outer_loop.optimizers import make_optimizer
from tasks.base import Episode

log = logging.getLogger(__name__)


class RecordLogger(Protocol):
    """Where the logged records go (``outer_loop.app.loggers``)."""

    def log(self, record: dict[str, Any]) -> None: ...


@dataclass
class MetaTrainingResult:
    """history: the logged records; first: the iteration this process started at (> 0 when resumed);
    iterations: completed iterations; wall_time_s: this process's training time."""

    history: list[dict[str, Any]] = field(default_factory=list)
    first: int = 0
    iterations: int = 0
    wall_time_s: float = 0.0


def check_outer_config(outer: Any) -> None:
    """Raise ValueError naming the field if an ``outer`` node has an impossible value."""
    require_size("outer.iterations", outer.iterations)
    require_size("outer.batch_size", outer.batch_size)
    require_size("outer.log_every", outer.log_every)
    require_size("outer.checkpoint_every", outer.checkpoint_every)
    require_nonnegative_int("outer.figure_every", outer.figure_every)
    require_nonnegative("outer.grad_clip", outer.grad_clip)
    require_positive("outer.lr", outer.lr)
    require_nonnegative_int("outer.threads", outer.threads)


def train_meta(
    meta: MetaLearner,
    cfg: DictConfig,
    run_dir: str | Path,
    logger: RecordLogger | None = None,
    on_figure: Callable[[str, Any, int], None] | None = None,
    resume: Mapping[str, Any] | None = None,
    ranks: Ranks | None = None,
) -> MetaTrainingResult:
    """Meta-train ``meta`` per ``cfg.outer`` writing checkpoints into ``run_dir/checkpoints``.

    ``meta`` must be freshly built from ``cfg`` (seeded). ``resume``: a checkpoint's state (already checked
    against ``cfg``: ``outer_loop.app.resume``); meta-parameters, the optimizer and the RNGs continue from
    it. ``on_figure(name, figure, iteration)`` receives the family's episode figure every
    ``outer.figure_every`` iterations (name: the family's name).

    ``ranks``: this process's place when ``outer.batch_size`` is split over processes
    (:mod:`outer_loop.algorithm.distributed`; the process group must be initialized). Every rank draws the
    global batch and trains on its slice; gradients and metrics are averaged; only rank 0 writes checkpoints
    (give the others no ``logger`` and no ``on_figure``).
    """
    outer = cfg.outer
    check_outer_config(outer)
    shard(outer.batch_size, ranks)  # a batch that does not split evenly stops here, before any work
    meta.ranks = ranks
    writes = ranks is None or ranks.main
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    device = resolve_device(outer.device, "outer.device")
    if not outer.train_error_module:
        meta.error_module.requires_grad_(False)
    optimizer = make_optimizer(outer.optimizer, [p for p in meta.parameters() if p.requires_grad], outer.lr,
                               key="outer.optimizer")
    data = torch.Generator().manual_seed(int(cfg.seed) + 1)
    config = OmegaConf.to_container(cfg, resolve=True)
    result = MetaTrainingResult()
    start = 0
    if resume is not None:
        state = resume
        meta.load_state_dict(state["meta"])
        optimizer.load_state_dict(state["optimizer"])
        data.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["iteration"])
        result.history = list(state.get("history", []))
        if logger is not None:
            for record in result.history:
                logger.log(record)
        log.info("resumed from %s at iteration %d", outer.resume, start)
    elapsed_before = result.history[-1]["seconds"] if result.history else 0.0
    begin = time.perf_counter()

    def checkpoint(done: int) -> None:
        if not writes:
            return
        if not all_finite(meta.state_dict().values()):   # never replace the last good checkpoint with garbage
            raise NonFiniteLossError(_stop_message(done - 1, "a meta-parameter is not finite", checkpoints))
        state = {"meta": meta.state_dict(), "optimizer": optimizer.state_dict(), "iteration": done,
                 "data_rng": data.get_state(), "torch_rng": torch.get_rng_state(), "config": config,
                 "history": result.history}
        save_checkpoint(checkpoints / "last.pt", state)
        if outer.keep_checkpoints:
            save_checkpoint(checkpoints / f"iteration_{done:06d}.pt", state)

    guard = DivergenceGuard(outer.divergence_factor, "outer.divergence_factor")
    bar = tqdm(total=outer.iterations, initial=start, disable=not outer.progress, desc="meta-train", dynamic_ncols=True)
    with GracefulStop() as stop:
        try:
            for it in range(start, outer.iterations):
                episode, codes = rank_episode(meta, outer.batch_size, data, ranks, device)
                try:
                    step, grad_norm = outer_step(meta, optimizer, episode, data, outer.grad_clip, guard, codes)
                except NonFiniteLossError as error:
                    raise type(error)(_stop_message(it, str(error), checkpoints), error.what, error.value) from None
                if it == start:  # the ranks took the same step: bit-identical meta-parameters
                    check_same_parameters(meta.named_parameters(), ranks)
                done = it + 1
                if it % outer.log_every == 0 or done == outer.iterations:
                    record = {"iteration": it, **mean_scalars(step.metrics, ranks), "grad_norm": grad_norm,
                              **{f"inner_lr/{k}": v for k, v in meta.rates.summary().items()},
                              "seconds": elapsed_before + time.perf_counter() - begin}
                    result.history.append(record)
                    if logger is not None:
                        logger.log(record)
                    bar.set_postfix({"loss": f"{record['loss']:.4g}", "demo": f"{record['demo_mse']:.4g}",
                                     "test": f"{record['test_mse']:.4g}"}, refresh=False)
                if on_figure is not None and outer.figure_every and done % outer.figure_every == 0:
                    figure = meta.family.plot(episode.select(0), step.test_output.detach()[:1])
                    figure.suptitle(f"iteration {it}: training task 0, test trial after the one-shot update "
                                    "(dashed: target)", fontsize=9)
                    on_figure(meta.family.name, figure, it)
                if done % outer.checkpoint_every == 0 or done == outer.iterations:
                    checkpoint(done)
                bar.update(1)
                stopping = stop.requested is not None
                if ranks is not None:
                    # Every rank stops at the same iteration: the decision is the reduced flag alone, which all
                    # ranks share (a signal arriving after this rank's reduction waits for the next iteration).
                    stopping = mean_scalars({"signalled": float(stopping)}, ranks)["signalled"] > 0
                    if stopping and stop.requested is None:
                        stop.requested = int(signal.SIGTERM)  # another rank's signal: stop as if terminated
                if stopping and done < outer.iterations:
                    checkpoint(done)
                    last = checkpoints / "last.pt"
                    raise TrainingInterrupted(f"stopped by signal {stop.requested} after iteration {it}; {last} "
                                              f"holds it (continue with outer.resume={last})", stop.requested)
        finally:
            bar.close()
            meta.ranks = None  # evaluation after training runs on one rank, with nobody to reduce with
    result.first, result.iterations = start, outer.iterations
    result.wall_time_s = time.perf_counter() - begin
    return result


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


def _stop_message(iteration: int, problem: str, checkpoints: Path) -> str:
    last = checkpoints / "last.pt"
    kept = (f"the last good checkpoint is {str(last)!r} (resume with outer.resume=...)" if last.exists()
            else "no checkpoint was written yet")
    return (f"iteration {iteration}: {problem}; stopping instead of training on garbage. "
            f"{kept}. "
            "Try a smaller outer.lr or inner.lr, or outer.grad_clip > 0.")
