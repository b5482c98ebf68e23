"""The raw log of the published e-prop 2 code (``docs/data/published_code/*.log``) as a learning curve.

The program prints ``ITER k seconds`` after every outer iteration and ``CURVE k demo_mse test_mse`` every
``print_every`` iterations (the Cartesian MSE of that iteration's training batch before and after the one-shot
update); anything else in the log (TensorFlow's warnings) is skipped. The curve has the keys of
:func:`l2l.outer_loop.reports.reference_curve.read_curve`, so the published runs go through the same per-bin and
across-seed tables as l2l's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


class PublishedLogError(ValueError):
    """A log that is not the published code's output: the message names the file and what is wrong."""


def read_published_log(path: str | Path) -> dict[str, np.ndarray]:
    """``iteration``, ``seconds`` (the ITER seconds summed up to and including that iteration), ``demo_mse``,
    ``test_mse`` and ``ratio`` (test/demo) of every CURVE line of ``path``, as float arrays of one length."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        reason = error.strerror or error
        raise PublishedLogError(f"published-code log {str(path)!r} cannot be read ({reason})") from None
    seconds: dict[int, float] = {}
    curve: list[tuple[int, float, float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] not in ("ITER", "CURVE"):
            continue
        try:
            if fields[0] == "ITER" and len(fields) == 3:
                seconds[int(fields[1])] = float(fields[2])
                continue
            if fields[0] == "CURVE" and len(fields) == 4:
                iteration, demo, test = int(fields[1]), float(fields[2]), float(fields[3])
                if math.isfinite(demo) and math.isfinite(test) and demo > 0:
                    curve.append((iteration, demo, test))
                continue
        except ValueError:
            pass
        raise PublishedLogError(f"published-code log {str(path)!r} line {number} is not 'ITER k s' or "
                                f"'CURVE k demo test': {line[:80]!r}")
    if not curve:
        raise PublishedLogError(f"published-code log {str(path)!r} has no CURVE line: is it the output of "
                                "tutorial_eprop2.py?")
    iterations = np.array([c[0] for c in curve], dtype=float)
    if np.any(np.diff(iterations) <= 0):
        raise PublishedLogError(f"published-code log {str(path)!r}: its CURVE iterations do not increase "
                                "(two runs in one file?)")
    per_iteration = np.zeros(int(iterations.max()) + 1)
    for k, value in seconds.items():
        if 0 <= k < per_iteration.size:
            per_iteration[k] = value
    elapsed = np.cumsum(per_iteration)
    demo = np.array([c[1] for c in curve])
    test = np.array([c[2] for c in curve])
    return {"iteration": iterations, "seconds": elapsed[iterations.astype(int)], "demo_mse": demo,
            "test_mse": test, "ratio": test / demo}
