"""Resuming a meta-training run: the checkpoint's config must be the run's, up to what may change."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from outer_loop.app.config import Config
from outer_loop.checkpoint import CheckpointError, load_checkpoint
from outer_loop.guard import all_finite

RESUME_MUST_MATCH = ("task", "network", "error_module", "inner", "seed", "outer.batch_size", "outer.optimizer",
                     "outer.train_error_module",
                     "outer.lr", "outer.grad_clip", "outer.rate_weight", "outer.learner_rate_hz",
                     "outer.error_module_rate_hz")
"""Config entries a resumed run must share with its checkpoint (others, e.g. outer.iterations, may change)."""
DIRECT_RESUME_MUST_MATCH = ("task", "network", "rule", "seed", "train.batch_size", "train.optimizer", "train.lr",
                            "train.curriculum")
"""The same for a direct run (``train.resume``)."""


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       keys: tuple[str, ...] = RESUME_MUST_MATCH) -> list[str]:
    """The entries of ``keys`` that differ between two resolved configs, as 'key: saved -> current'."""
    diffs = []
    for key in keys:
        a, b = saved, current
        for part in key.split("."):
            a = a.get(part) if isinstance(a, Mapping) else None
            b = b.get(part) if isinstance(b, Mapping) else None
        if a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def resume_state(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The checkpoint ``cfg.outer.resume`` points at, checked against ``cfg`` (None when not resuming).

    ``outer.resume=auto``: the run dir's own ``checkpoints/last.pt`` when there is one, else a fresh start (what a
    job requeued after preemption runs). A checkpoint from before a config entry existed holds that entry's
    default. ValueError naming ``outer.resume`` and every differing entry when the run would not continue the
    same training.
    """
    if not cfg.outer.resume:
        return None
    target = cfg.outer.resume
    if target == "auto":
        last = Path(run_dir if run_dir is not None else ".") / "checkpoints" / "last.pt"
        if not last.is_file():
            return None
        target = str(last)
    state = load_checkpoint(target)
    if not all_finite(state["meta"].values()):
        bad = [k for k, v in state["meta"].items() if v.is_floating_point() and not bool(v.isfinite().all())]
        raise CheckpointError(f"outer.resume={cfg.outer.resume!r}: the checkpoint holds non-finite weights in "
                              f"{bad[:4]}; resume from an earlier checkpoint (outer.keep_checkpoints=true keeps them)")
    done = int(state["iteration"])
    if cfg.outer.iterations < done:
        raise ValueError(f"outer.iterations={cfg.outer.iterations} is below the checkpoint's iteration {done} "
                         f"(outer.resume={cfg.outer.resume!r}): set outer.iterations > {done} to train further")
    saved = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(Config), state["config"]), resolve=True)
    diffs = config_differences(saved, OmegaConf.to_container(cfg, resolve=True))
    if diffs:
        raise ValueError(f"outer.resume={cfg.outer.resume!r}: the checkpoint was trained with another config "
                         f"({'; '.join(diffs)}); resume with the same settings")
    return state
