"""The one training loop of l2l: meta-training and direct training are two steppers plugged into it.

The loop owns what both modes share: the order of iterations and the training-data generator, the
divergence guard, the logged records (``iteration``, the stepper's metrics, ``seconds``), periodic and final
checkpoints, signals, resume and the final evaluation. A stepper owns one iteration of its mode (draw the
batch from the loop's generator, compute, step its optimizer) and the state it adds to a checkpoint.

A checkpoint is the stepper's :meth:`Stepper.state_dict` plus ``iteration`` (completed), ``data_rng`` (the
generator), ``torch_rng``, ``config`` (the run's resolved config, a plain dict) and ``history`` (every
logged record), so a resumed run continues bit for bit and its ``metrics.jsonl`` is whole.
:meth:`TrainingLoop.restore` validates all of it before the run writes anything.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from l2l.outer_loop.algorithm.distributed import Ranks, mean_scalars
from l2l.outer_loop.checkpoint import CheckpointError, save_checkpoint
from l2l.outer_loop.guard import (
    DivergenceGuard,
    GracefulStop,
    IterationAbortedError,
    NonFiniteLossError,
    TrainingInterrupted,
    all_finite,
)
from l2l.validation import require_size

LOOP_KEYS = ("iteration", "data_rng", "torch_rng", "config", "history")
"""What the loop adds to every checkpoint (the stepper adds its own keys)."""


@dataclass(frozen=True)
class LoopSettings:
    """The loop's settings; ``node`` names the config node they come from in messages (outer | train).

    ``iterations`` in all; a record every ``log_every`` iterations and at the last; ``checkpoints/last.pt``
    every ``checkpoint_every`` iterations, at the last and on a stop; a numbered copy too when
    ``keep_checkpoints``; ``divergence_factor``: the guard's."""

    iterations: int
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: bool = False
    progress: bool = True
    divergence_factor: float = 1000.0
    node: str = "outer"

    def __post_init__(self) -> None:
        require_size(f"{self.node}.iterations", self.iterations)
        require_size(f"{self.node}.log_every", self.log_every)
        require_size(f"{self.node}.checkpoint_every", self.checkpoint_every)
        DivergenceGuard(self.divergence_factor, f"{self.node}.divergence_factor")   # validates the factor


class Stepper(Protocol):
    """One iteration of a training mode and its part of the checkpoint."""

    label: str
    """The progress bar's label."""
    keys: tuple[str, ...]
    """The checkpoint keys the stepper needs (e.g. ``("meta", "optimizer")``)."""
    advice: str
    """What to try when the run diverges (ends the stop message), e.g. 'Try a smaller train.lr.'."""

    def step(self, iteration: int, data: torch.Generator, guard: DivergenceGuard,
             interruptible: Callable[[], AbstractContextManager[None]], logged: bool) -> dict[str, Any]:
        """Train one iteration on a batch drawn from ``data``; check the loss and weights with ``guard``.

        Everything before the first change to the weights, optimizer or rule state runs inside
        ``with interruptible():`` (a signal there abandons the iteration). Returns the record's metrics
        when ``logged`` (else anything, unused)."""

    def state_dict(self) -> dict[str, Any]:
        """The stepper's part of a checkpoint (weights, optimizer, ...)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict`; raise (any exception) if it does not fit the stepper's objects."""

    def weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        """The named tensors that must be finite before a checkpoint is written."""

    def snapshot(self) -> Any:
        """What an abandoned iteration may have changed besides the RNGs (a rule's own state), or None."""

    def restore(self, snapshot: Any) -> None:
        """Undo an abandoned iteration from :meth:`snapshot`."""

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        """What the progress bar shows of a record."""


@dataclass
class LoopResult:
    """history: every logged record (a resumed run's earlier ones included); first: the iteration this process
    started at; iterations: completed; wall_time_s: this process's training time; final_eval: the evaluation
    after training ({} without one)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    first: int = 0
    iterations: int = 0
    wall_time_s: float = 0.0
    final_eval: dict[str, Any] = field(default_factory=dict)


class RecordLogger(Protocol):
    """Where records go (``l2l.outer_loop.app.loggers``): ``begin(history)`` once (a resumed run's earlier records),
    then ``log(record)`` per logged iteration."""

    def begin(self, history: list[dict[str, Any]]) -> None: ...

    def log(self, record: Mapping[str, Any]) -> None: ...


class TrainingLoop:
    """``TrainingLoop(stepper, settings, checkpoints, config, data)``; ``restore(state)`` to resume; ``run()``.

    ``checkpoints``: the folder of ``last.pt`` (None: no checkpoints). ``config``: the resolved config stored
    in every checkpoint. ``data``: the generator the batches are drawn from. ``ranks`` (torchrun): only rank 0
    writes checkpoints, every rank stops at the same iteration, and a signal waits for the iteration's end.
    """

    def __init__(self, stepper: Stepper, settings: LoopSettings, checkpoints: str | Path | None,
                 config: Mapping[str, Any], data: torch.Generator, ranks: Ranks | None = None) -> None:
        self.stepper, self.settings, self.config, self.data, self.ranks = stepper, settings, dict(config), data, ranks
        self.checkpoints = Path(checkpoints) if checkpoints is not None else None
        self.writes = self.checkpoints is not None and (ranks is None or ranks.main)
        self.start = 0
        self.history: list[dict[str, Any]] = []

    # -- resume ---------------------------------------------------------------------------------------------

    def restore(self, state: Mapping[str, Any], source: str = "the checkpoint") -> int:
        """Continue from ``state`` (a checkpoint's dict); returns its iteration. Every part is checked first
        (keys, the stepper's shapes, finite weights, the RNG states, the history) and nothing is written, so a
        refused checkpoint leaves the run dir as it was. CheckpointError naming ``source`` and the problem."""
        missing = [k for k in ("iteration", "config", *self.stepper.keys) if k not in state]
        if missing:
            raise CheckpointError(f"{source} lacks {missing}: it is not an l2l training checkpoint")
        done = state["iteration"]
        if isinstance(done, bool) or not isinstance(done, int) or not done >= 0:
            raise CheckpointError(f"{source} has iteration={done!r}: expected a whole number >= 0")
        if done > self.settings.iterations:
            node = self.settings.node
            raise ValueError(f"{node}.iterations={self.settings.iterations} is below the checkpoint's iteration "
                             f"{done} ({source}): set {node}.iterations > {done} to train further")
        history = state.get("history", [])
        if not isinstance(history, list) or not all(isinstance(r, dict) and "iteration" in r for r in history):
            raise CheckpointError(f"{source} has a damaged history: expected a list of records with an iteration")
        data_rng = state.get("data_rng", state.get("generator"))   # "generator": direct checkpoints before 0.3
        if data_rng is None:
            raise CheckpointError(f"{source} lacks 'data_rng' (the training-data generator's state): it cannot "
                                  "continue the same batches")
        _check_generator_state(data_rng, "data_rng", source)
        torch_rng = state.get("torch_rng")
        if torch_rng is not None:
            _check_torch_rng(torch_rng, source)
        candidate = {k: v for k, v in state.items() if k not in LOOP_KEYS}
        bad = [name for name, t in _tensors(candidate) if t.is_floating_point() and not bool(t.isfinite().all())]
        if bad:
            raise CheckpointError(f"{source} holds non-finite values in {bad[:4]}; resume from an earlier "
                                  f"checkpoint ({self.settings.node}.keep_checkpoints=true keeps them)")
        wanted = dict(_tensors(self.stepper.state_dict()))
        for name, tensor in _tensors(candidate):
            if name in wanted and tensor.shape != wanted[name].shape:
                raise CheckpointError(f"{source} does not fit this run's model or optimizer: {name} has shape "
                                      f"{list(tensor.shape)} there, {list(wanted[name].shape)} in the model this "
                                      "config builds")
        try:
            self.stepper.load_state_dict(candidate)
        except Exception as error:  # load_state_dict's RuntimeError/KeyError/ValueError: shapes, keys
            reason = " ".join(str(error).split())[:300] or type(error).__name__
            raise CheckpointError(f"{source} does not fit this run's model or optimizer: {reason}") from None
        self.data.set_state(data_rng)
        if torch_rng is not None:
            torch.set_rng_state(torch_rng)
        self.start, self.history = done, [dict(r) for r in history]
        return done

    # -- checkpoints -----------------------------------------------------------------------------------------

    def checkpoint(self, done: int) -> Path | None:
        """Write ``last.pt`` after ``done`` completed iterations (rank 0 only); never a non-finite one."""
        if not self.writes:
            return None
        if not all_finite(t for _, t in self.stepper.weights()):   # never replace the last good checkpoint
            raise NonFiniteLossError(self._stop_message(done - 1, "a weight is not finite"), "a weight")
        state = {**self.stepper.state_dict(), "iteration": done, "data_rng": self.data.get_state(),
                 "torch_rng": torch.get_rng_state(), "config": self.config, "history": self.history}
        last = save_checkpoint(self.checkpoints / "last.pt", state)
        if self.settings.keep_checkpoints:
            save_checkpoint(self.checkpoints / f"iteration_{done:06d}.pt", state)
        return last

    def _stop_message(self, iteration: int, problem: str) -> str:
        last = self.checkpoints / "last.pt" if self.checkpoints is not None else None
        kept = (f"The last good checkpoint is {str(last)!r} (resume with {self.settings.node}.resume=...)"
                if last is not None and last.exists() else "No checkpoint was written yet")
        return (f"iteration {iteration}: {problem}; stopping instead of training on garbage. {kept}. "
                f"{self.stepper.advice}")

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self, logger: RecordLogger | None = None,
            evaluate: Callable[[], Mapping[str, Any] | None] | None = None) -> LoopResult:
        """Train from :attr:`start` to ``settings.iterations``; then ``evaluate()`` (its numbers are logged as
        ``eval/<key>`` at the last iteration). Raises NonFiniteLossError (the last good checkpoint kept) and
        TrainingInterrupted (after a checkpoint of the last complete iteration) on a signal."""
        s, stepper = self.settings, self.stepper
        result = LoopResult(first=self.start)
        if logger is not None:
            logger.begin(self.history)
        elapsed_before = float(self.history[-1].get("seconds", 0.0) or 0.0) if self.history else 0.0
        guard = DivergenceGuard(s.divergence_factor, f"{s.node}.divergence_factor")
        bar = tqdm(total=s.iterations, initial=self.start, disable=not s.progress, desc=stepper.label,
                   dynamic_ncols=True)
        begin = time.perf_counter()
        with GracefulStop() as stop:
            interruptible = stop.interruptible if self.ranks is None else nullcontext   # ranks finish together
            try:
                for it in range(self.start, s.iterations):
                    saved = (self.data.get_state(), torch.get_rng_state(), stepper.snapshot())
                    done = it + 1
                    logged = it % s.log_every == 0 or done == s.iterations
                    try:
                        metrics = stepper.step(it, self.data, guard, interruptible, logged)
                    except IterationAbortedError as abort:
                        self.data.set_state(saved[0])
                        torch.set_rng_state(saved[1])
                        stepper.restore(saved[2])
                        raise self._interrupted(abort.signal_number, it, abandoned=True) from None
                    except NonFiniteLossError as error:
                        raise type(error)(self._stop_message(it, str(error)), error.what, error.value) from None
                    if logged:
                        record = {"iteration": it, **metrics,
                                  "seconds": elapsed_before + time.perf_counter() - begin}
                        self.history.append(record)
                        if logger is not None:
                            logger.log(record)
                        bar.set_postfix(stepper.postfix(record), refresh=False)
                    if done == s.iterations or done % s.checkpoint_every == 0:
                        self.checkpoint(done)
                    bar.update(1)
                    if self._stopping(stop) and done < s.iterations:
                        raise self._interrupted(stop.requested, done)
            finally:
                bar.close()
        result.wall_time_s = time.perf_counter() - begin
        result.history, result.iterations = self.history, s.iterations
        if evaluate is not None:
            result.final_eval = dict(evaluate() or {})
            if result.final_eval and logger is not None:
                logger.log({"iteration": s.iterations, **{f"eval/{k}": v for k, v in result.final_eval.items()
                                                          if isinstance(v, (int, float))}})
        return result

    def _stopping(self, stop: GracefulStop) -> bool:
        """Whether a signal asks to stop after this iteration; under torchrun the ranks' flags are reduced, so
        that all stop at the same iteration (a signal after this rank's reduction waits for the next one)."""
        stopping = stop.requested is not None
        if self.ranks is not None:
            stopping = mean_scalars({"signalled": float(stopping)}, self.ranks)["signalled"] > 0
            if stopping and stop.requested is None:
                stop.requested = int(signal.SIGTERM)   # another rank's signal: stop as if terminated
        return stopping

    def _interrupted(self, signal_number: int, done: int, abandoned: bool = False) -> TrainingInterrupted:
        """Checkpoint the ``done`` complete iterations and say how to continue."""
        last = self.checkpoint(done)
        when = (f"during iteration {done}, which was abandoned ({done} complete)" if abandoned
                else f"after iteration {done - 1}")
        where = (f"; {last} holds it (continue with {self.settings.node}.resume={last})" if last is not None
                 else "; no checkpoint is written in this run")
        return TrainingInterrupted(f"stopped by signal {signal_number} {when}{where}", signal_number, completed=done)


def _tensors(value: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts and lists, with its path."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            yield from _tensors(v, f"{prefix}[{k}]")


def _check_generator_state(value: Any, key: str, source: str) -> None:
    try:
        torch.Generator().set_state(value)
    except (RuntimeError, TypeError) as error:
        reason = " ".join(str(error).split())[:160]
        raise CheckpointError(f"{source} has a damaged {key} (a random generator's state): {reason}") from None


def _check_torch_rng(value: Any, source: str) -> None:
    expected = torch.get_rng_state()
    if (not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.shape != expected.shape):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(f"{source} has a damaged torch_rng: expected a uint8 tensor of shape "
                              f"{tuple(expected.shape)}, found {shape}")
    _check_generator_state(value, "torch_rng", source)


def check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every per-parameter tensor of a loaded optimizer state (Adam's moments) has its parameter's shape:
    ``load_state_dict`` does not check it, and a wrong one would fail only at the next step."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise CheckpointError(f"the optimizer state's {key} has shape {tuple(value.shape)} for a "
                                          f"parameter of shape {tuple(p.shape)}")
