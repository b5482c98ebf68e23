"""A switch for code that differentiates a gradient (``create_graph=True``), e.g. second-order MAML.

Two fast paths have hand-written, first-order backward passes: the fused spiking trial
(:mod:`l2l.spiking_trial`) and the deferred recurrent-weight gradient (:mod:`l2l.recurrent_input`). Inside
``with twice_differentiable():`` both step aside and trials take autograd's step-by-step path, whose graph can
be differentiated again. The switch is per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.autograd import forward_ad

_STATE = threading.local()


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform or forward-mode AD is active: then the hand-written autograd Functions
    (which have no rules for them) step aside for plain PyTorch operations."""
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0


def twice_differentiable_required() -> bool:
    """Whether this thread is inside :func:`twice_differentiable`."""
    return getattr(_STATE, "on", False)


@contextmanager
def twice_differentiable() -> Iterator[None]:
    """Trials run inside build a graph that ``torch.autograd.grad(..., create_graph=True)`` can go through."""
    before = twice_differentiable_required()
    _STATE.on = True
    try:
        yield
    finally:
        _STATE.on = before
