"""Exponential filters along the time axis (dim 1 of a (B, T, ...) tensor).

``exp_filter`` is the causal filter F_a(u)^t = a F_a(u)^{t-1} + u^t used for
presynaptic traces and the leaky readout; ``reverse_exp_filter`` is its adjoint
(anti-causal), used to move the readout's κ filter from the eligibility traces
onto the learning signal: Σ_t L^t F_κ(e)^t = Σ_t F_κ^←(L)^t e^t.

The filter is evaluated in blocks of ``BLOCK`` steps: inside a block it is one matrix
product with the lower-triangular matrix D_ts = a^{t−s} (s ≤ t), and the value carried into
the block enters as a^{t+1}·F^{t0−1}. This is the same linear recurrence (equal to float
rounding) with T/BLOCK sequential steps instead of T, and it differentiates like any matmul.
On the CPU (float32/float64, a decay that is a number or a 0-dim tensor without gradient, outside
torch.func transforms and forward-mode AD) the C++ kernel of ``l2l/csrc/exp_filter.cpp`` runs the
recurrence itself, step by step in one pass over memory (the same numbers as the PyTorch loop
``a * out + u``); its gradient is the opposite filter.
"""

from __future__ import annotations

from typing import Any

import torch

from l2l.native import filter_ops
from l2l.twice_differentiable import transforms_active

BLOCK = 32


def _decay_matrices(decay: float | torch.Tensor, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D (size, size) with D_ts = a^{t−s} for s ≤ t, else 0; carry (size, 1) = a^{t+1}."""
    steps = torch.arange(size, dtype=like.dtype, device=like.device)
    lags = steps[:, None] - steps[None, :]
    a = torch.as_tensor(decay, dtype=like.dtype, device=like.device)
    lower = lags >= 0
    matrix = torch.where(lower, a ** lags.clamp(min=0), torch.zeros((), dtype=like.dtype, device=like.device))
    return matrix, (a ** (steps + 1))[:, None]


def exp_filter(u: torch.Tensor, decay: float | torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
    """Causal filter along dim 1. u: (B, T, ...) -> (B, T, ...); ``initial`` (B, ...) is the value at t = -1.

    ``decay`` is a float or a 0-dim tensor (differentiable); any other tensor decay (one per channel,
    broadcast over u's trailing dims) takes the step-by-step loop.
    """
    if isinstance(decay, torch.Tensor) and decay.dim() > 0:
        return _exp_filter_loop(u, decay, initial)
    native = _native_filter(u, decay, initial, reverse=False)
    if native is not None:
        return native
    steps = u.shape[1]
    time_major = u.transpose(0, 1)
    if time_major.is_contiguous():  # e.g. a layer's z^{t-1}: filter the (T, B·…) storage, K GEMMs with a wide N
        out = _filter_time_major(time_major.reshape(steps, -1), decay,
                                 None if initial is None else initial.reshape(1, -1))
        return out.reshape(time_major.shape).transpose(0, 1)
    batch = u.shape[0]
    start = None if initial is None else initial.reshape(batch, 1, -1)
    out = _filter_time_major(u.reshape(batch, steps, -1), decay, start)
    return out.reshape(u.shape)


def _filter_time_major(u: torch.Tensor, decay: float | torch.Tensor, initial: torch.Tensor | None) -> torch.Tensor:
    """The blocked filter along dim −2 of u (…, T, D); ``initial`` (…, 1, D) is the value at t = −1."""
    steps = u.shape[-2]
    block = _block_size(steps)
    n_blocks = -(-steps // block)
    if n_blocks * block != steps:
        u = torch.nn.functional.pad(u, (0, 0, 0, n_blocks * block - steps))
    blocks = u.reshape(*u.shape[:-2], n_blocks, block, u.shape[-1])
    matrix, carry = _decay_matrices(decay, block, u)
    inside = matrix @ blocks  # (…, K, block, D): each block filtered from zero
    # F^{t0-1} entering each block: a recurrence over the K blocks on their last rows only
    state = initial[..., 0, :] if initial is not None else torch.zeros_like(blocks[..., 0, 0, :])
    entering = [state]
    # the blocks' last rows in one view, unbound once (one backward node, not one zero-filled copy per block)
    last_rows = inside[..., -1, :].unbind(-2)
    for k in range(n_blocks - 1):
        state = last_rows[k] + carry[-1] * state
        entering.append(state)
    out = torch.addcmul(inside, carry, torch.stack(entering, -2).unsqueeze(-2))
    return out.reshape(*u.shape[:-2], n_blocks * block, u.shape[-1])[..., :steps, :]


def _block_size(steps: int) -> int:
    """BLOCK, or a divisor of ``steps`` between BLOCK/2 and BLOCK (no padding) when there is one."""
    if steps <= BLOCK:
        return steps
    for size in range(BLOCK, BLOCK // 2 - 1, -1):
        if steps % size == 0:
            return size
    return BLOCK


def _exp_filter_loop(u: torch.Tensor, decay: torch.Tensor, initial: torch.Tensor | None) -> torch.Tensor:
    """The recurrence one step at a time (per-channel decays)."""
    out = []
    acc = initial
    for step in u.unbind(1):
        acc = step if acc is None else decay * acc + step
        out.append(acc)
    return torch.stack(out, dim=1)


def reverse_exp_filter(u: torch.Tensor, decay: float | torch.Tensor) -> torch.Tensor:
    """Anti-causal filter along dim 1: out^t = u^t + decay * out^{t+1}. u: (B, T, ...)."""
    if not (isinstance(decay, torch.Tensor) and decay.dim() > 0):
        native = _native_filter(u, decay, None, reverse=True)
        if native is not None:
            return native
    return exp_filter(u.flip(1), decay).flip(1)


def _native_filter(u: torch.Tensor, decay: float | torch.Tensor, initial: torch.Tensor | None,
                   reverse: bool) -> torch.Tensor | None:
    """The filter through the C++ kernel when it applies (see the module's docstring), else None. Time-major
    storage (``u.transpose(0, 1)`` contiguous, a layer's recorded spikes) is filtered as (1, T, B·…), any other
    u as (B, T, …) after ``contiguous()``; the result has u's shape."""
    if u.device.type != "cpu" or u.dtype not in (torch.float32, torch.float64) or u.dim() < 2:
        return None
    if isinstance(decay, torch.Tensor):
        if decay.requires_grad:
            return None
        decay = float(decay)
    elif not isinstance(decay, (int, float)):
        return None
    if initial is not None and (initial.dtype != u.dtype or initial.device != u.device):
        return None
    if transforms_active():
        return None   # torch.func transforms and forward-mode AD: the blocked products (no rule for the kernel)
    ops = filter_ops()
    if ops is None:
        return None
    steps, time_major = u.shape[1], u.transpose(0, 1)
    if time_major.is_contiguous():
        flat = time_major.reshape(1, steps, -1)
        start = None if initial is None else initial.reshape(1, -1)
        return _NativeExpFilter.apply(flat, float(decay), start, reverse).reshape(time_major.shape).transpose(0, 1)
    flat = u.reshape(u.shape[0], steps, -1)
    start = None if initial is None else initial.reshape(u.shape[0], -1)
    return _NativeExpFilter.apply(flat, float(decay), start, reverse).reshape(u.shape)


class _NativeExpFilter(torch.autograd.Function):
    """The C++ filter of u (O, T, I) along dim 1, causal or anti-causal; its gradient is the other one (itself
    this Function, so differentiable again), and the initial value's is decay · (that gradient at t = 0)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, decay: float, initial: torch.Tensor | None,
                reverse: bool) -> torch.Tensor:
        ctx.decay, ctx.reverse = decay, reverse
        return filter_ops().exp_filter(u, decay, initial, reverse)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None]:
        g_u = _NativeExpFilter.apply(grad, ctx.decay, None, not ctx.reverse)
        g_initial = g_u[:, 0] * ctx.decay if ctx.needs_input_grad[2] else None
        return g_u, None, g_initial, None
