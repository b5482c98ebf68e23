"""The recurrent synaptic input W z^{t-1} of every step of a trial, with dE/dW formed once per trial.

Autograd differentiates a step-by-step simulation one step at a time: for W_rec it forms the
weight gradient (z^{t-1})ᵀ δ^t at every step and adds T of them. With per-task weights (B, n, m)
that is T batched outer products of (B, n, m) each, which dominated the meta-training backward
pass. Here each step's backward only returns dE/dz^{t-1} = δ^t W and keeps (z^{t-1}, δ^t); the
weight's gradient is then one contraction over time, Σ_t δ^{tᵀ} z^{t-1} (one GEMM), taken when
autograd reaches the weight after the last step. Same sum, different rounding order.

Used automatically by :func:`l2l.network.simulate_layer` when the weight requires a gradient and
no ``torch.func`` transform is active; double backward through it is not supported: inside
:func:`l2l.twice_differentiable.twice_differentiable` it steps aside.
Set ``DEFERRED = False`` to fall back to autograd's per-step weight gradient (the oracle in the tests).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from l2l.synapses import contract_over_time
from l2l.twice_differentiable import twice_differentiable_required

DEFERRED = True


def _backward_pass_id() -> int:
    """The id of the autograd pass (graph task) now running; one id for every node of one backward call."""
    return torch._C._current_graph_task_id()


class _StepPairs:
    """(z^{t-1}, δ^t) of every step, filled by the steps' backward, emptied by the weight's.

    Each pair is tagged with its backward pass: a pass that does not ask for W's gradient (``autograd.grad``
    with respect to other inputs only) fills pairs that the weight never consumes, and those must not enter
    the next pass's W gradient (with ``retain_graph``). z is kept detached: a pair that held z with its
    grad_fn would tie the graph to itself through this object (graph -> step node -> pairs -> z -> graph),
    a cycle of C++ autograd nodes that Python's garbage collector cannot free.
    """

    def __init__(self) -> None:
        self.passes: list[int] = []
        self.inputs: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []

    def add(self, z: torch.Tensor, delta: torch.Tensor) -> None:
        self.passes.append(_backward_pass_id())
        self.inputs.append(z.detach())
        self.grads.append(delta)

    def take(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """This pass's (inputs, grads) in the order the steps' backward ran; every stored pair is dropped."""
        now = _backward_pass_id()
        keep = [k for k, p in enumerate(self.passes) if p == now]
        inputs, grads = [self.inputs[k] for k in keep], [self.grads[k] for k in keep]
        self.passes.clear()
        self.inputs.clear()
        self.grads.clear()
        return inputs, grads


class _WeightTap(torch.autograd.Function):
    """Identity on W in the forward pass; in the backward pass, W's gradient from all steps at once."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, pairs: _StepPairs) -> torch.Tensor:
        ctx.pairs = pairs
        ctx.w_dim = w.dim()
        ctx.set_materialize_grads(False)
        return w.view_as(w)

    @staticmethod
    @once_differentiable
    def backward(ctx, _unused: torch.Tensor | None):
        inputs, grads = ctx.pairs.take()
        if not grads:
            return None, None
        z = torch.stack(inputs, 1)  # (B, T, m)
        delta = torch.stack(grads, 1)  # (B, T, n)
        return contract_over_time(delta, z, per_task=ctx.w_dim == 3), None


class _RecurrentStep(torch.autograd.Function):
    """One step's I^t + W z^{t-1}: I (B, n), z (B, m), W (n, m) or (B, n, m) -> (B, n); W's gradient deferred."""

    @staticmethod
    def forward(ctx, current: torch.Tensor, z: torch.Tensor, w: torch.Tensor, pairs: _StepPairs) -> torch.Tensor:
        ctx.save_for_backward(z, w)
        ctx.pairs = pairs
        return _add_synaptic_input(current, z, w, w.transpose(-1, -2))

    @staticmethod
    @once_differentiable
    def backward(ctx, delta: torch.Tensor):
        z, w = ctx.saved_tensors
        ctx.pairs.add(z, delta)
        grad_z = None
        if ctx.needs_input_grad[1]:
            grad_z = delta @ w if w.dim() == 2 else (delta.unsqueeze(1) @ w).squeeze(1)
        return delta if ctx.needs_input_grad[0] else None, grad_z, None, None


def _add_synaptic_input(current: torch.Tensor, z: torch.Tensor, w: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """current + W z as one fused BLAS call; w_t is W transposed (m, n) or (B, m, n)."""
    if w.dim() == 2:
        return torch.addmm(current, z, w_t)
    return torch.baddbmm(current.unsqueeze(1), z.unsqueeze(1), w_t).squeeze(1)


class RecurrentInput:
    """``RecurrentInput(w).add_to(current, z_prev)`` = I^t + W z^{t-1} (B, n) for I^t (B, n), z_prev (B, m),
    W (n, m) shared or (B, n, m) per task."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w
        self.w_t = w.transpose(-1, -2)
        transformed = torch._C._are_functorch_transforms_active()
        self.deferred = (DEFERRED and w.requires_grad and torch.is_grad_enabled() and not transformed
                         and not twice_differentiable_required())
        if self.deferred:
            self.pairs = _StepPairs()
            self.tapped = _WeightTap.apply(w, self.pairs)

    def add_to(self, current: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        if self.deferred:
            return _RecurrentStep.apply(current, z_prev, self.tapped, self.pairs)
        return _add_synaptic_input(current, z_prev, self.w, self.w_t)
