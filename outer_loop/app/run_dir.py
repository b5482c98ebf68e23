"""A run dir is never overwritten: which dirs a run may write into, and how a resume finds its checkpoint.

A run dir *holds an earlier run* when it has a checkpoint (``checkpoints/*.pt``), a non-empty
``metrics.jsonl`` or a ``summary.json``. A new run into such a dir is refused at start, before anything in it
is touched, unless it resumes that dir's own ``checkpoints/last.pt`` (``outer.resume=auto`` / ``train.resume=auto``
or its path) or ``overwrite=true`` is given (the earlier run's outputs are then removed, once the new run's
config and checkpoint have been checked).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from l2l.outer_loop.app.loggers import write_text_atomically
from l2l.outer_loop.checkpoint import MissingCheckpointError, checkpoint_file

OUTPUTS = ("metrics.jsonl", "summary.json", "eval.json", "eval.png", "learning_curve.png", "episode.png")
"""The files of a run (besides ``checkpoints/`` and ``figures/``), what ``overwrite=true`` removes."""


class RunDirUsedError(ValueError):
    """The run dir holds an earlier run and this run would overwrite it."""


def earlier_run(run_dir: Path) -> list[str]:
    """What of an earlier run ``run_dir`` holds (relative paths; [] when none)."""
    found = sorted(str(p.relative_to(run_dir)) for p in (run_dir / "checkpoints").glob("*.pt"))
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append("metrics.jsonl")
    if (run_dir / "summary.json").is_file():
        found.append("summary.json")
    return found


def resume_file(setting: str | None, run_dir: Path, key: str = "resume") -> Path | None:
    """The checkpoint a ``resume`` setting (the config key ``key``) names: None when not resuming, and for
    ``auto`` the run dir's own ``checkpoints/last.pt`` if there is one (else None: a fresh start, what a
    requeued job needs). MissingCheckpointError naming ``key`` when there is no such checkpoint."""
    if not setting:
        return None
    if setting == "auto":
        last = run_dir / "checkpoints" / "last.pt"
        return last if last.is_file() else None
    try:
        return checkpoint_file(setting)
    except MissingCheckpointError as error:
        raise MissingCheckpointError(f"{key}={setting!r} is not allowed: {error}; or auto") from None


def claim(run_dir: Path, resume: Path | None, key: str, overwrite: bool, auto: bool) -> list[str]:
    """Refuse (RunDirUsedError, one line) a run that would overwrite an earlier run in ``run_dir``.

    Allowed: an empty or new dir; resuming the dir's own checkpoint; ``auto`` without a checkpoint (an attempt
    killed before its first checkpoint left nothing to continue); ``overwrite``. Returns what the dir holds."""
    found = earlier_run(run_dir)
    if not found or overwrite:
        return found
    own = run_dir / "checkpoints" / "last.pt"
    if resume is not None and own.is_file() and resume.resolve() == own.resolve():
        return found
    if resume is None and auto:
        return found
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    raise RunDirUsedError(f"run dir {str(run_dir)!r} holds an earlier run ({shown}): continue it with {key}=auto, "
                          "give this run another hydra.run.dir, or pass overwrite=true to replace it")


def remove_earlier_run(run_dir: Path) -> None:
    """Delete an earlier run's outputs (``overwrite=true``), keeping anything else in the dir."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(run_dir / "figures", ignore_errors=True)
    for name in OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)


def write_config_record(run_dir: Path, cfg: Any) -> None:
    """Hydra's record of the job (``.hydra/config.yaml``, ``overrides.yaml``, ``hydra.yaml``), written by l2l
    once the run has been checked: ``hydra.output_subdir: null`` keeps Hydra from writing it at start, where a
    refused run would replace the earlier run's record. Does nothing outside a Hydra app, and for a config
    composed without one (``l2l-tune`` writes its trials' records itself)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode is None:
        return
    hydra = HydraConfig.get()
    record = {"config.yaml": OmegaConf.to_yaml(cfg),
              "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra})),
              "overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(list(hydra.overrides.task)))}
    for name, text in record.items():
        write_text_atomically(run_dir / ".hydra" / name, text)


NAME_LIMIT = 255
"""The most bytes a file system allows in one file or folder name."""


def run_dir_problem(path: Any, key: str = "hydra.run.dir") -> str | None:
    """Why ``path`` cannot be a run (or sweep) dir, in one line naming ``key``; None when it can."""
    text = "" if path is None else str(path)
    shown = repr(text if len(text) <= 80 else text[:60] + "…" + text[-15:])
    if not text.strip():
        return f"{key}='' is not allowed: give the run a folder (by default outputs/<name>/<time>)"
    folder = Path(text)
    long = next((part for part in folder.parts if len(part.encode()) > NAME_LIMIT), None)
    if long is not None:
        return (f"{key}={shown} is not allowed: one of its names is {len(long.encode())} bytes, more than the "
                f"{NAME_LIMIT} a file system allows (shorten name or {key})")
    if folder.exists() and not folder.is_dir():
        return f"{key}={shown} is not allowed: it is a file, not a folder"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}={shown} is not allowed: {str(existing)!r} is not a folder this user can write into"
    return None


class RunDirCheck(Callback):
    """Checks the run (or sweep) dir before Hydra creates it, so that an empty, unwritable or impossible one
    stops in one line (exit 2) instead of a traceback or a run written into the current directory."""

    def __init__(self, prog: str = "l2l-train") -> None:
        self.prog = prog

    def _stop_if(self, problem: str | None) -> None:
        if problem is not None:
            print(f"{self.prog}: error: {problem}", file=sys.stderr)
            raise SystemExit(2)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._stop_if(run_dir_problem(config.hydra.run.dir))

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._stop_if(run_dir_problem(config.hydra.sweep.dir, "hydra.sweep.dir"))
