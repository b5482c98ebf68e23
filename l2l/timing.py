"""Wall-clock time per named phase, for profiling a computation without changing it.

Code marks its phases with ``with phase("demo"): ...``; this costs nothing unless a :class:`PhaseTimer`
is active (``with PhaseTimer() as timer: ...``), which then sums the seconds per phase name. Nested
phases are timed independently (an outer phase includes its inner ones).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

_active: list[PhaseTimer] = []


class PhaseTimer:
    """Seconds per phase name while active; ``seconds`` maps name -> total, ``calls`` name -> count."""

    def __init__(self, synchronize: bool = False) -> None:
        self.synchronize = synchronize
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __enter__(self) -> PhaseTimer:
        _active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _active.remove(self)

    def now(self) -> float:
        """perf_counter, after the GPU has finished its queued work when ``synchronize``."""
        if self.synchronize:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        return time.perf_counter()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the enclosed block under ``name`` for every active PhaseTimer (nothing when none is active)."""
    if not _active:
        yield
        return
    timers = list(_active)
    start = [t.now() for t in timers]
    try:
        yield
    finally:
        for timer, begun in zip(timers, start, strict=True):
            timer.seconds[name] += timer.now() - begun
            timer.calls[name] += 1
