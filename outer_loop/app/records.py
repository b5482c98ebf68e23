"""The one place where the app's config becomes the algorithm's records (no Hydra below this line).

``loop_node(cfg)`` names the loop's config node; ``loop_settings(cfg)`` for either mode's :class:`LoopSettings`,
``outer_settings(cfg)`` and ``direct_settings(cfg)`` for the two steppers. Each record validates its own fields,
naming the config key.
"""

from __future__ import annotations

from typing import Any

from l2l.outer_loop.algorithm.direct_train import DirectSettings
from l2l.outer_loop.algorithm.meta_train import OuterSettings
from l2l.outer_loop.algorithm.run_loop import LoopSettings


def loop_node(cfg: Any) -> str:
    """The config node of the training loop of ``cfg.mode``: ``outer`` (meta) or ``train`` (direct)."""
    return "outer" if cfg.get("mode") == "meta" else "train"


def loop_settings(cfg: Any) -> LoopSettings:
    """The loop of ``cfg.mode``: from ``outer`` (meta) or ``train`` (direct)."""
    name = loop_node(cfg)
    node = cfg[name]
    return LoopSettings(iterations=node.iterations, log_every=node.log_every, checkpoint_every=node.checkpoint_every,
                        keep_checkpoints=bool(node.keep_checkpoints), progress=bool(node.progress),
                        divergence_factor=float(node.divergence_factor), node=name)


def outer_settings(cfg: Any) -> OuterSettings:
    """One meta-training iteration, from ``outer``."""
    o = cfg.outer
    return OuterSettings(batch_size=o.batch_size, optimizer=o.optimizer, lr=float(o.lr), grad_clip=float(o.grad_clip),
                         train_error_module=bool(o.train_error_module), figure_every=o.figure_every)


def direct_settings(cfg: Any) -> DirectSettings:
    """One direct-training iteration, from ``train`` (the held-out batch from ``seed`` + 2)."""
    t = cfg.train
    return DirectSettings(batch_size=t.batch_size, eval_every=t.eval_every, eval_batch_size=t.eval_batch_size,
                          eval_seed=int(cfg.seed) + 2, probe_stages=tuple(int(k) for k in t.curriculum.probe_stages))
