"""Resuming a run: the checkpoint's config must be the run's, up to what may change.

The checkpoint's state itself (keys, shapes, finite values, RNG states) is checked by
:meth:`l2l.outer_loop.algorithm.run_loop.TrainingLoop.restore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from l2l.outer_loop.app.config import saved_config
from l2l.outer_loop.checkpoint import CheckpointError

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


def check_resume_config(cfg: DictConfig, state: Mapping[str, Any], source: str) -> None:
    """ValueError naming ``source`` and every differing entry when the checkpoint's config (``state["config"]``)
    was not this run's, up to what may change (:data:`RESUME_MUST_MATCH` or :data:`DIRECT_RESUME_MUST_MATCH`).
    A checkpoint from before a config entry existed holds that entry's default."""
    keys = RESUME_MUST_MATCH if cfg.mode == "meta" else DIRECT_RESUME_MUST_MATCH
    if not isinstance(state.get("config"), Mapping):
        raise CheckpointError(f"{source}: the checkpoint's config is not a mapping; it is not an l2l checkpoint")
    try:
        saved = OmegaConf.to_container(saved_config(state["config"]), resolve=True)
    except Exception as error:  # OmegaConf's validation errors: a config l2l does not know
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{source}: the checkpoint's config does not fit this l2l ({reason})") from None
    diffs = config_differences(saved, OmegaConf.to_container(cfg, resolve=True), keys)
    if diffs:
        raise ValueError(f"{source}: the checkpoint was trained with another config ({'; '.join(diffs)}); resume "
                         "with the same settings")
