"""One outer iteration of e-prop 2, the same for training and profiling: outer loss, backward, clip, step."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

from l2l.outer_loop.algorithm.distributed import average_gradients, mean_scalars
from l2l.outer_loop.algorithm.meta import MetaLearner
from l2l.outer_loop.algorithm.objective import MetaStep
from l2l.outer_loop.guard import DivergenceGuard, NonFiniteLossError
from l2l.tasks.base import Episode
from l2l.timing import phase


def outer_step(meta: MetaLearner, optimizer: torch.optim.Optimizer, episode: Episode,
               generator: torch.Generator | None = None, grad_clip: float = 0.0,
               guard: DivergenceGuard | None = None, codes: torch.Tensor | None = None,
               interruptible: Callable[[], AbstractContextManager[None]] = nullcontext) -> tuple[MetaStep, float]:
    """The outer loss on ``episode`` (the meta-learner draws the coded targets from ``generator``), BPTT
    through both trials and the update, the global gradient norm clipped to ``grad_clip`` (> 0; 0: no
    clipping), one optimizer step. Returns the step and the gradient norm before clipping.

    Raises :class:`l2l.outer_loop.guard.NonFiniteLossError` before stepping when the loss or the gradient norm is
    not finite, or when ``guard`` finds the loss diverged, and after it when a weight became non-finite.
    Phases for ``l2l.timing``: "forward" (with the meta-learner's own), "backward", "optimizer step".

    ``codes``: the coded targets (K, B, T, n_code), when drawn outside (a rank's slice of the global batch's).
    With ``meta.ranks`` set, the loss checked is the mean over the ranks and the gradients are averaged over
    them before clipping, so that every rank takes the same step.

    ``interruptible``: a context (``GracefulStop.interruptible``) around everything before the optimizer step
    (forward, backward, clipping), which changes no meta-parameter and no optimizer state.
    """
    with interruptible():
        with phase("forward"):
            step = meta(episode, generator) if codes is None else meta(episode, codes=codes)
        loss = mean_scalars({"loss": float(step.loss.detach())}, meta.ranks)["loss"]
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"the outer loss is {loss}", "the outer loss", loss)
        if guard is not None:
            guard.check_loss(loss)
        with phase("backward"):
            optimizer.zero_grad(set_to_none=True)
            step.loss.backward()
            average_gradients(meta.parameters(), meta.ranks)
            parameters = [p for p in meta.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else math.inf)
    if not torch.isfinite(grad_norm):
        raise NonFiniteLossError(f"the gradient norm is {float(grad_norm)}", "the gradient norm", float(grad_norm))
    with phase("optimizer step"):
        optimizer.step()
    if guard is not None:
        guard.check_weights(meta.named_parameters())
    return step, float(grad_norm)
