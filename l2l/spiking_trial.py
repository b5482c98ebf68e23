"""A LIF or ALIF layer's whole trial as one autograd node: a lean forward loop and its BPTT by hand.

The step-by-step simulation of :func:`l2l.network.simulate_layer` builds about ten autograd nodes
per step; at 32 tasks × 100 neurons the time goes to that bookkeeping, not to arithmetic. Here the
forward pass is one loop over time writing into preallocated time-major buffers, and the backward
pass is the adjoint recursion of the same dynamics, run backward in time:

    a^t = ρ a^{t-1} + z_in^{t-1}                     (ALIF only; z_in: the within-neuron spike)
    v^t = α v^{t-1} + I^t + W z^{t-1} − v_th z^{t-1}  (z: the spike as it leaves the neuron, z_in + ζ)
    e^t = v^t − v_th − β a^t,   z_in^t = H(e^t / v_th) · [r^{t-1} = 0]
    r^t = max(r^{t-1} − 1, 0) + n_ref z_in^t          (no derivative)

    Z^t   = g_z^t + (W − v_th·1)ᵀ δv^{t+1}          (total dE/dz^t; dropped with ``detach_recurrent``)
    δe^t  = g_e^t + (Z^t + δa^{t+1}) · s(e^t/v_th) [r^{t-1} = 0] / v_th
    δv^t  = δe^t + α δv^{t+1},   δa^t = ρ δa^{t+1} − β δe^t,   dE/dI^t = δv^t,   dE/dW = Σ_t δv^t ⊗ z^{t-1}

Two implementations of both loops: C++ (``l2l/csrc/spiking_trial.cpp``, built on first use by
:mod:`l2l.native`; on the CPU, float32/64, the three built-in surrogates), whose forward gathers W z^{t-1}
from the neurons that spiked only; and PyTorch operations (everywhere else, e.g. on a GPU, or with
``NATIVE = False``), which repeat the cells' operations in their order, so that its spikes are
bit-identical to the step-by-step path. ``e`` is returned too (ψ, the eligibility traces'
pseudo-derivative, is a function of it), and its gradient g_e enters the recursion: the inner loop's
update depends on ψ. Both equal the step-by-step path to round-off (tested in float64, ≤ 1e-10;
``l2l-verify`` rows ``fused_trial_vs_step``). First-order only: ``create_graph=True`` through a fused trial
raises. Under ``torch.func`` transforms, forward-mode AD or :func:`l2l.twice_differentiable.twice_differentiable`
the step-by-step path is used; ``FUSED = False`` uses it always.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from l2l.native import spiking_ops
from l2l.spike import surrogate_derivative
from l2l.twice_differentiable import transforms_active, twice_differentiable_required

FUSED = True  # False: every trial takes the step-by-step path (the oracle in the tests)
NATIVE = True  # False: the fused trial runs its PyTorch loop instead of the C++ one (l2l.native)


@dataclass(frozen=True)
class SpikingConstants:
    """The numbers of one layer's dynamics: α, v_th, n_ref, γ and the surrogate; ρ and β for ALIF
    (``rho=None``: LIF). β is a float or a (n,) tensor."""

    alpha: float
    v_th: float
    n_ref: int
    gamma: float
    surrogate: str
    rho: float | None = None
    beta: Any = 0.0


@dataclass
class SpikingTrial:
    """z: (T+1, B, n) with z[0] the initial state's z and z[t+1] the output spike of step t;
    excess: (T, B, n) e^t = v^t − A^t; refractory: (T, B, n) the counter entering each step;
    v, a, z_in, r: the state after the last step (B, n) (a is None for LIF)."""

    z: torch.Tensor
    excess: torch.Tensor
    refractory: torch.Tensor
    v: torch.Tensor
    a: torch.Tensor | None
    z_in: torch.Tensor
    r: torch.Tensor


def fusable() -> bool:
    """Whether the fused trial may run: switched on (``FUSED``), not inside
    :func:`l2l.twice_differentiable.twice_differentiable`, no ``torch.func`` transform, no forward-mode AD."""
    return FUSED and not twice_differentiable_required() and not transforms_active()


def run_spiking_trial(
    current: torch.Tensor,
    w_rec: torch.Tensor,
    constants: SpikingConstants,
    v0: torch.Tensor,
    a0: torch.Tensor | None,
    z0: torch.Tensor,
    r0: torch.Tensor,
    zeta: torch.Tensor | None = None,
    detach_recurrent: bool = False,
) -> SpikingTrial:
    """One trial. current (T, B, n) = W_in x^t (+ b), time-major; w_rec (n, n) or (B, n, n) as used in the
    forward pass (autapses already masked); initial state v0, a0 (ALIF, else None), z0, r0 (B, n);
    zeta (T, B, n) or None, added to the spike as it leaves the neuron."""
    args = (current, w_rec, zeta, v0, a0, z0, r0)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        outputs = _FusedSpikingTrial.apply(current, w_rec, zeta, v0, a0, z0, r0, constants, detach_recurrent)
    else:
        outputs = _forward(current, w_rec, zeta, v0, a0, z0, r0, constants)
    z, excess, refractory, v, a, z_in, r = outputs
    return SpikingTrial(z, excess, refractory[:-1], v, a if constants.rho is not None else None, z_in, r)


def shifted_spikes(both: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z^1..z^T and z^0..z^{T-1} (T, B, n), views of the trial's (T+1, B, n) spike buffer ``both``. Their gradients
    meet in one pass; two slices would each zero-fill a (T+1, B, n) gradient, copy into it and add the two."""
    if torch.is_grad_enabled() and both.requires_grad:
        return _ShiftedSpikes.apply(both)
    return both[1:], both[:-1]


class _ShiftedSpikes(torch.autograd.Function):
    """both (T+1, B, n) -> (both[1:], both[:-1]); the gradient of both from either or both views' gradients."""

    @staticmethod
    def forward(ctx, both):
        ctx.set_materialize_grads(False)
        ctx.shape = both.shape
        return both[1:], both[:-1]

    @staticmethod
    @once_differentiable
    def backward(ctx, g_z, g_prev):
        if g_z is None and g_prev is None:
            return None
        out = (g_z if g_z is not None else g_prev).new_empty(ctx.shape)
        if g_z is not None and g_prev is not None:
            out[0] = g_prev[0]
            torch.add(g_prev[1:], g_z[:-1], out=out[1:-1])
            out[-1] = g_z[-1]
        elif g_z is not None:
            out[0] = 0
            out[1:] = g_z
        else:
            out[:-1] = g_prev
            out[-1] = 0
        return out


SURROGATE_KINDS = {"piecewise_linear": 0, "fast_sigmoid": 1, "gaussian": 2}  # as numbered in l2l/csrc


def _native(like: torch.Tensor, c: SpikingConstants) -> Any | None:
    """The C++ operators when they apply (CPU, float32/64, a surrogate they know), else None."""
    if not NATIVE or like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64):
        return None
    if c.surrogate not in SURROGATE_KINDS:
        return None
    return spiking_ops()


def _beta(c: SpikingConstants, n: int, like: torch.Tensor) -> torch.Tensor | None:
    """β as a (n,) tensor for the C++ kernel (None for LIF)."""
    if c.rho is None:
        return None
    return torch.as_tensor(c.beta, dtype=like.dtype, device=like.device).expand(n).contiguous()


def _forward(current, w_rec, zeta, v0, a0, z0, r0, c: SpikingConstants):
    """The trial without autograd: the C++ loop when available, else the PyTorch loop."""
    ops = _native(current, c)
    if ops is None:
        return _forward_python(current, w_rec, zeta, v0, a0, z0, r0, c)
    adaptive = c.rho is not None
    z, excess, refractory, v, a, z_in = ops.forward(
        current, w_rec.transpose(-1, -2), zeta, v0, a0 if adaptive else None, z0, r0, c.alpha, c.v_th,
        float(c.n_ref), c.rho if adaptive else -1.0, _beta(c, current.shape[-1], current))
    return z, excess, refractory, v, (a if adaptive else v.new_zeros(())), z_in, refractory[-1].clone()


def _forward_python(current, w_rec, zeta, v0, a0, z0, r0, c: SpikingConstants):
    """The lean PyTorch loop: the cells' operations in their order, written into preallocated buffers."""
    steps, batch, n = current.shape
    z = current.new_empty(steps + 1, batch, n)
    z[0] = z0
    excess = current.new_empty(steps, batch, n)
    refractory = current.new_empty(steps + 1, batch, n)
    refractory[0] = r0
    v = v0.clone()
    drive = current.new_empty(batch, n)
    fire = torch.empty(batch, n, dtype=torch.bool, device=current.device)
    free = torch.empty_like(fire)
    shared = w_rec.dim() == 2
    w_t = w_rec.transpose(-1, -2)
    adaptive = c.rho is not None
    if adaptive:
        a = a0.clone()
        shift = current.new_empty(batch, n)
        beta = c.beta
    alpha, v_th, n_ref = c.alpha, c.v_th, c.n_ref
    z_in = z0.clone() if zeta is not None else None  # the within-neuron spike, when ζ makes it differ
    for t in range(steps):
        z_prev = z[t]
        if shared:
            torch.addmm(current[t], z_prev, w_t, out=drive)
        else:
            torch.baddbmm(current[t].unsqueeze(1), z_prev.unsqueeze(1), w_t, out=drive.unsqueeze(1))
        torch.add(drive, v, alpha=alpha, out=v)
        v.sub_(z_prev, alpha=v_th)
        e = excess[t]
        if adaptive:
            a.mul_(c.rho).add_(z_prev if z_in is None else z_in)
            torch.mul(a, beta, out=shift)
            torch.sub(v, v_th, out=e).sub_(shift)
        else:
            torch.sub(v, v_th, out=e)
        torch.gt(e, 0, out=fire)
        torch.le(refractory[t], 0, out=free)
        spikes = z[t + 1]
        torch.logical_and(fire, free, out=spikes)
        torch.sub(refractory[t], 1, out=refractory[t + 1]).clamp_(min=0).add_(spikes, alpha=n_ref)
        if z_in is not None:
            z_in.copy_(spikes)
            spikes.add_(zeta[t])
    z_last = z_in if z_in is not None else z[steps].clone()
    a_last = a if adaptive else v.new_zeros(())
    return z, excess, refractory, v, a_last, z_last, refractory[steps].clone()


class _FusedSpikingTrial(torch.autograd.Function):
    """The trial forward without autograd nodes; backward by the adjoint recursion (module docstring)."""

    @staticmethod
    def forward(ctx, current, w_rec, zeta, v0, a0, z0, r0, constants: SpikingConstants, detach_recurrent: bool):
        outputs = _forward(current, w_rec, zeta, v0, a0, z0, r0, constants)
        z, excess, refractory = outputs[:3]
        ctx.constants, ctx.detach_recurrent = constants, detach_recurrent
        ctx.has_zeta, ctx.has_a0 = zeta is not None, a0 is not None
        ctx.save_for_backward(w_rec, z, excess, refractory)
        ctx.mark_non_differentiable(refractory, outputs[6], *(() if constants.rho is not None else (outputs[4],)))
        ctx.set_materialize_grads(False)
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative would silently miss this node's terms
            raise RuntimeError("the fused spiking trial has first-order gradients only (create_graph=True asks for "
                               "more): set l2l.spiking_trial.FUSED = False to differentiate the step-by-step path")
        return _FusedSpikingTrial._backward(ctx, *grads)

    @staticmethod
    @once_differentiable
    def _backward(ctx, g_z, g_excess, _g_refractory, g_v, g_a, g_z_in, _g_r):
        w_rec, z, excess, refractory = ctx.saved_tensors
        c: SpikingConstants = ctx.constants
        g_a = g_a if c.rho is not None else None
        ops = _native(excess, c)
        if ops is None:
            delta_v, total_z, g_v0, g_a0, g_z0 = _backward_python(
                w_rec, excess, refractory, g_z, g_excess, g_v, g_a, g_z_in, c, not ctx.detach_recurrent, ctx.has_zeta)
        else:
            delta_v, total_z, g_v0, g_a0, g_z0 = ops.backward(
                w_rec, z, excess, refractory, g_z, g_excess, g_v, g_a, g_z_in, c.alpha, c.v_th, c.gamma,
                SURROGATE_KINDS[c.surrogate], c.rho if c.rho is not None else -1.0,
                _beta(c, excess.shape[-1], excess), not ctx.detach_recurrent, ctx.has_zeta)
        n = excess.shape[-1]
        z_prev = z[:-1]
        if ops is not None and not ctx.has_zeta:   # z^{t-1} is spikes (mostly 0): summed over its events
            g_w = ops.weight_gradient(delta_v, z_prev, w_rec.dim() == 3)
        elif w_rec.dim() == 2:
            g_w = delta_v.reshape(-1, n).transpose(0, 1) @ z_prev.reshape(-1, n)
        else:
            g_w = delta_v.permute(1, 2, 0) @ z_prev.transpose(0, 1)
        return (delta_v, g_w, total_z if ctx.has_zeta else None, g_v0,
                g_a0 if c.rho is not None and ctx.has_a0 else None, g_z0, None, None, None)


def _backward_python(w_rec, excess, refractory, g_z, g_excess, g_v, g_a, g_z_in, c: SpikingConstants,
                     recurrent: bool, want_total_z: bool):
    """The adjoint recursion in PyTorch operations: dE/dI (T, B, n), total dE/dz (T, B, n) or None, and the
    initial state's gradients g_v0, g_a0 (ALIF, else None), g_z0 (B, n)."""
    steps, batch, n = excess.shape
    adaptive = c.rho is not None
    # s(e/v_th)·[r = 0]/v_th for the whole trial at once
    slope = surrogate_derivative(excess / c.v_th, c.gamma, c.surrogate)
    slope.mul_(refractory[:-1] <= 0).div_(c.v_th)
    # (W − v_th·1): the recurrent input and the reset, both through z^{t-1}
    eye = torch.eye(n, dtype=w_rec.dtype, device=w_rec.device)
    w_loop = w_rec - c.v_th * eye
    shared = w_rec.dim() == 2
    delta_v = excess.new_empty(steps, batch, n)
    total_z = excess.new_empty(steps, batch, n) if want_total_z else None
    dv_next = da_next = None  # δv^{t+1}, δa^{t+1}
    on_z = excess.new_empty(batch, n)
    for t in range(steps - 1, -1, -1):
        last = t == steps - 1
        if g_z is not None:
            on_z.copy_(g_z[t + 1])
        else:
            on_z.zero_()
        if recurrent and dv_next is not None:
            if shared:
                on_z.addmm_(dv_next, w_loop)
            else:
                on_z.unsqueeze(1).baddbmm_(dv_next.unsqueeze(1), w_loop)
        if total_z is not None:
            total_z[t] = on_z
        if last and g_z_in is not None:
            on_z.add_(g_z_in)  # the final state's within-neuron z
        if da_next is not None:
            on_z.add_(da_next)  # z_in^t enters a^{t+1}
        d_e = on_z.mul_(slope[t])
        if g_excess is not None:
            d_e.add_(g_excess[t])
        dv = delta_v[t]
        if dv_next is not None:
            torch.add(d_e, dv_next, alpha=c.alpha, out=dv)
        else:
            dv.copy_(d_e)
        if last and g_v is not None:
            dv.add_(g_v)
        if adaptive:
            da = d_e * (-c.beta)
            if da_next is not None:
                da.add_(da_next, alpha=c.rho)
            if last and g_a is not None:
                da.add_(g_a)
            da_next = da
        dv_next = dv
    # first step: the initial state
    g_v0 = dv_next * c.alpha
    g_z0 = g_z[0].clone() if g_z is not None else torch.zeros_like(g_v0)
    if shared:
        g_z0.addmm_(dv_next, w_loop)
    else:
        g_z0.unsqueeze(1).baddbmm_(dv_next.unsqueeze(1), w_loop)
    g_a0 = None
    if adaptive:
        g_z0.add_(da_next)  # a^0 = ρ a0 + z_in^{-1}, and z_in^{-1} is the initial z
        g_a0 = da_next * c.rho
    return delta_v, total_z, g_v0, g_a0, g_z0
