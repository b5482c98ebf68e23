"""Checkpoints written atomically: a crash or a full disk never leaves a half-written file behind.

The state goes to ``<path>.tmp`` first, is flushed to disk, and then renamed over ``path``
(``os.replace`` is atomic on POSIX and Windows), so ``path`` always holds the last complete checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

REQUIRED_KEYS = ("meta", "optimizer", "iteration", "config")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (anything ``torch.save`` takes) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    with partial.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A meta-training checkpoint (``last.pt`` or a run dir containing ``checkpoints/last.pt``), on the CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist: give last.pt or its run dir")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"checkpoint {str(path)!r} could not be read ({error})") from error
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} is not an l2l meta-training checkpoint: it lacks {missing}")
    return state
