"""Stopping a training run that has gone wrong, in both loops (meta-training and direct training).

A run stops, before its optimizer steps on garbage and before any checkpoint is overwritten, when the loss
or the gradient norm is not finite, when a weight is not finite after a step, or when the loss grows
beyond ``factor`` times the median of the last ``window`` losses (from the second iteration on; factor 0
turns that test off). The exception says what, where, and which key to change. Ctrl-C, SIGTERM and SIGUSR1
stop it (:class:`GracefulStop`) after a checkpoint of the last complete iteration: at once while the
iteration is still computing (inside :meth:`GracefulStop.interruptible`, which nothing persistent changes in),
else at the end of the iteration.
"""

from __future__ import annotations

import math
import signal
import statistics
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


class NonFiniteLossError(FloatingPointError):
    """The loss, the gradient norm or a weight became NaN/inf: ``what`` names it, ``value`` is its value."""

    def __init__(self, message: str, what: str = "", value: float = math.nan) -> None:
        super().__init__(message)
        self.what, self.value = what, value


class DivergedError(NonFiniteLossError):
    """The loss grew beyond the configured factor of its running median."""


class DivergenceGuard:
    """``check_loss(loss)`` per iteration and ``check_weights(parameters)`` after each step.

    ``factor_key`` names the config entry of ``factor`` in the message (``outer.divergence_factor``).
    """

    def __init__(self, factor: float, factor_key: str, window: int = 50, warmup: int = 1) -> None:
        if not (factor == 0 or (math.isfinite(factor) and factor > 1)):
            raise ValueError(f"{factor_key}={factor!r} is not allowed: it must be 0 (off) or a finite number > 1")
        self.factor, self.factor_key, self.warmup = float(factor), factor_key, warmup
        self.recent: deque[float] = deque(maxlen=window)

    def check_loss(self, loss: float) -> None:
        """Raise unless ``loss`` is finite and within ``factor`` × the running median; then remember it."""
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"the loss is {loss}", "the loss", loss)
        if self.factor and len(self.recent) >= self.warmup:
            median = statistics.median(self.recent)
            if median > 0 and loss > self.factor * median:
                raise DivergedError(f"the loss is {loss:.4g}, more than {self.factor_key}={self.factor:g} times its "
                                    f"running median {median:.4g}", "the loss", loss)
        self.recent.append(loss)

    @staticmethod
    def check_weights(named_parameters: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Raise naming the first weight with a NaN or inf entry."""
        for name, p in named_parameters:
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteLossError(f"the weight {name} has non-finite entries", f"the weight {name}", math.nan)


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every tensor is free of NaN and inf (what a checkpoint may hold)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run at an iteration boundary: ``signal_number`` is the one
    received, ``completed`` the iterations done (when the loop knows it)."""

    def __init__(self, message: str, signal_number: int, completed: int | None = None) -> None:
        super().__init__(message)
        self.signal_number, self.completed = signal_number, completed


class IterationAbortedError(Exception):
    """A signal arrived while the iteration was still computing: it is dropped, and the run stops after the
    last complete one (raised inside :meth:`GracefulStop.interruptible`)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"signal {signal_number} arrived during the iteration")
        self.signal_number = signal_number


class GracefulStop:
    """While active (``with GracefulStop() as stop``), SIGINT, SIGTERM and SIGUSR1 (SLURM's warning before a
    time limit or preemption, ``sbatch --signal=USR1@90``) set ``stop.requested`` (the signal number) and, inside
    ``with stop.interruptible():`` (the part of an iteration that changes nothing the checkpoint holds), raise
    :class:`IterationAbortedError` at once, so that a long iteration does not delay the stop; elsewhere the loop
    finishes its iteration, writes a checkpoint and stops. A second SIGINT interrupts at once. Outside the main
    thread it does nothing (signals go to the main thread only)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}
        self._interruptible = False

    def _handle(self, number: int, frame: object) -> None:
        if self.requested is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = number
        if self._interruptible:
            self._interruptible = False
            raise IterationAbortedError(number)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """The block may be abandoned by a signal (:class:`IterationAbortedError`); it must change nothing that
        the next checkpoint holds (weights, optimizer state, rule state), or the caller restores it."""
        if self.requested is not None:
            raise IterationAbortedError(self.requested)
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM, *((signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ())):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
