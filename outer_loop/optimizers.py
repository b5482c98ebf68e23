"""The optimizers of both training loops (direct training and meta-training), chosen by name."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from l2l.validation import require_positive

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def make_optimizer(name: str, parameters: Iterable[torch.nn.Parameter], lr: float,
                   key: str = "train.optimizer") -> torch.optim.Optimizer:
    """``adam`` or ``sgd`` over ``parameters`` with learning rate ``lr``; ``key`` names the config entry in errors
    (the learning rate's is its sibling ``lr``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"{key}={name!r} is not allowed: choose one of {sorted(OPTIMIZERS)}")
    require_positive(f"{key.rpartition('.')[0]}.lr" if "." in key else "lr", lr)
    return OPTIMIZERS[name](parameters, lr=lr)
