"""Online e-prop for one LIF layer: the same gradients as :class:`~l2l.rules.eprop.EProp`, chunk by chunk in time.

:class:`EProp` records the whole trial (ψ, z over T: O(B·T·n) memory) and moves the readout's κ filter onto
the learning signal, which is anti-causal: Σ_t L^t F_κ(e)^t = Σ_t F_κ^←(L)^t e^t needs the future of L.
Here the trial is simulated ``chunk`` steps at a time and everything the gradient needs from the past is
carried across chunk borders in tensors whose size does not depend on T:

* the cell state, the readout's y, and the causal filters ū = F_α(u) (u = [x, z^{t-1}]), F_κ(z), F_κ(1);
* ē = F_κ(e) at the end of the previous chunk, per task: (B, n, n_in + n), e^t_ji = ψ^t_j ū^t_i (Bellec eq. 20);
* with rate regularization, Σ_t e^t and the spike count of each neuron.

Peak memory is O(B·n·(n_in + n) + B·chunk·(n_in + n)), independent of T. Within a chunk t0..t1 (C steps)
the κ filter goes onto the learning signal as in EProp, and the part of F_κ(e) that comes from before the
chunk is the carried ē decayed (κ^{t−t0+1} ē^{t0−1}):

    Σ_{t=t0..t1} L^t_j ē^t_ji = κ R^{t0}_j ē^{t0−1}_ji + Σ_{s=t0..t1} R^s_j ψ^s_j ū^s_i,    R = F_κ^←(L) over the chunk
    ē^{t1}_ji = κ^C ē^{t0−1}_ji + Σ_{s=t0..t1} κ^{t1−s} ψ^s_j ū^s_i

(κ R^{t0}_j = Σ_t L^t_j κ^{t−t0+1}). Each sum over s (and Σ_s ψ^s ū^s for the regularizer) is one batched
matrix product per chunk, accumulated in place. Carrying ē costs a second contraction of the gradient's size,
so the online rule does about twice the offline rule's contraction FLOPs.

The loss must be a sum over time so that δ^t = ∂loss/∂y^t is known when the chunk holding t is processed:
pass a :class:`SeparableLoss` to :meth:`OnlineEProp.gradients` (it is also an ordinary loss function of the
whole output, so the same object works with every other rule), or call :meth:`OnlineEProp.gradients_online`
with the per-chunk function directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from l2l.filters import exp_filter, reverse_exp_filter
from l2l.network import RecurrentNetwork, Trial, simulate_layer
from l2l.regularization import RateRegularization
from l2l.rules.base import GradientResult, LossFn
from l2l.rules.eprop import EProp
from l2l.synapses import synaptic_input
from l2l.traces import without_autapses
from l2l.validation import require_size

ChunkLoss = Callable[[torch.Tensor, slice], torch.Tensor]
"""chunk_loss(y_chunk (B, C, n_out), time_slice) -> this chunk's scalar contribution to the task loss.

``time_slice`` is the chunk's position in the trial (``slice(t0, t1)``), e.g. to index the target.
The task loss is the sum of the contributions over the chunks that cover the trial. A chunk without
targets may return a constant (e.g. ``y.new_zeros(())``): its δ is zero."""


class SeparableLoss:
    """A task loss that is a sum over time, given by its per-chunk contribution.

    ``SeparableLoss(chunk_loss)(y)`` with y (B, T, n_out) is ``chunk_loss(y, slice(0, T))``, the whole-trial
    loss, so it can be passed to any rule. The caller guarantees separability: for every split of 0..T into
    consecutive slices, Σ_slices chunk_loss(y[:, s], s) equals chunk_loss(y, slice(0, T)). For example the
    mean squared error 0.5·mean((y − target)²) is::

        SeparableLoss(lambda y, s: 0.5 * ((y - target[:, s]) ** 2).sum() / target.numel())
    """

    def __init__(self, chunk_loss: ChunkLoss) -> None:
        self.chunk_loss = chunk_loss

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """Whole-trial task loss: y (B, T, n_out) -> scalar."""
        return self.chunk_loss(y, slice(0, y.shape[1]))


class OnlineEProp(EProp):
    """e-prop for a single LIF layer, online in chunks of ``chunk`` steps; gradients equal :class:`EProp`'s.

    Options as EProp: ``feedback`` (``symmetric``, ``random``, ``adaptive`` or a :class:`Feedback`),
    ``rate_regularization``, ``per_task`` (one gradient per task, leading B). The readout gets its exact
    gradient. :meth:`gradients` takes a :class:`SeparableLoss`; the returned ``GradientResult.trial``
    holds the LAST chunk only (inputs, activity and output of its C steps): keeping the whole trial would
    defeat the point of the rule.
    """

    name = "eprop_online"

    def __init__(self, *args, chunk: int = 50, **options) -> None:
        """As :class:`EProp` (feedback, rate_regularization, per_task, feedback options), plus ``chunk`` >= 1 steps."""
        require_size("chunk", chunk)
        super().__init__(*args, **options)
        self.chunk = chunk

    def check_network(self, network: RecurrentNetwork) -> None:
        """Raise ValueError unless the network is exactly one LIF layer."""
        cells = [cell.model.name for cell in network.layers]
        if cells != ["lif"]:
            raise ValueError(
                f"rule {self.name} supports one LIF layer, the network has {len(cells)} layer(s) with cell(s) "
                f"{cells}: use eprop or deep_eprop for other networks"
            )

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        """As :meth:`gradients_online`; ``loss_fn`` must be a :class:`SeparableLoss` (a sum over time)."""
        if not isinstance(loss_fn, SeparableLoss):
            raise TypeError(
                f"rule {self.name} needs a loss that is a sum over time, got {loss_fn!r}: wrap its per-chunk "
                "contribution as SeparableLoss(chunk_loss), chunk_loss(y_chunk, time_slice) -> scalar"
            )
        return self.gradients_online(network, inputs, loss_fn.chunk_loss, params)

    def gradients_online(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        chunk_loss: ChunkLoss,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        """Loss and e-prop gradients, simulating inputs (B, T, n_in) ``chunk`` steps at a time.

        ``chunk_loss(y (B, C, n_out), slice(t0, t1))`` is each chunk's contribution to the task loss.
        Weights in ``params`` may be shared (n, m) or per task (B, n, m). Gradients: ``layers.0.w_in``
        (·, n, n_in), ``layers.0.w_rec`` (·, n, n), ``readout.w_out`` (·, n_out, n) and, if the readout has
        one, ``readout.bias`` (·, n_out), with · = B when ``per_task``.
        """
        self.check_network(network)
        network.check_inputs(inputs)
        own = network.parameter_dict()
        params = {**own, **params} if params is not None else own
        cell = network.layers[0]
        kappa, alpha = network.readout.kappa, cell.params.alpha
        batch, steps, n_in = inputs.shape
        n = cell.n
        with torch.no_grad():
            w_in, w_rec, w_out = params["layers.0.w_in"], params["layers.0.w_rec"], params["readout.w_out"]
            b_out = params.get("readout.bias")
            if b_out is not None and b_out.dim() == 2:
                b_out = b_out.unsqueeze(1)
            feedback = self.feedback.matrix(w_out)  # once per trial: adaptive feedback updates on each call
            lead = (batch,) if self.per_task else ()  # gradients per task or summed over tasks
            carry = _Carry(e_bar=inputs.new_zeros(batch, n, n_in + n))
            task_loss = inputs.new_zeros(())
            g_layer = inputs.new_zeros(*lead, n, n_in + n)  # Σ_t L^t F_κ(e)^t for [W_in, W_rec]
            g_out = inputs.new_zeros(*lead, *w_out.shape[-2:])
            g_bias = inputs.new_zeros(*lead, w_out.shape[-2])
            e_sum = inputs.new_zeros(*lead, n, n_in + n) if self.rate_regularization is not None else None
            spikes = inputs.new_zeros(n)
            for t0 in range(0, steps, self.chunk):
                span = slice(t0, min(t0 + self.chunk, steps))
                x = inputs[:, span]
                size = x.shape[1]
                activity = simulate_layer(cell, x, w_in, w_rec, None, initial_state=carry.state, record=True)
                carry.state = activity.final_state
                drive = synaptic_input(activity.z, w_out)
                if b_out is not None:
                    drive = drive + b_out
                y = exp_filter(drive, kappa, carry.y)
                carry.y = y[:, -1]
                loss, delta = _chunk_error(chunk_loss, y, span)
                task_loss = task_loss + loss

                # Readout, exact: Σ_t δ^t F_κ(z)^t and Σ_t δ^t F_κ(1)^t.
                z_bar = exp_filter(activity.z, kappa, carry.z_bar)
                ones_bar = exp_filter(inputs.new_ones(1, size), kappa, carry.ones_bar)
                carry.z_bar, carry.ones_bar = z_bar[:, -1], ones_bar[:, -1]
                _add_contraction(g_out, delta, z_bar)
                g_bias += torch.einsum("bco,c->bo" if self.per_task else "bco,c->o", delta, ones_bar[0])

                # Layer: e^s = ψ^s ū^s with ū = F_α([x, z^{t-1}]) carried across chunks.
                u_bar = exp_filter(torch.cat([x, activity.z_prev], dim=-1), alpha, carry.u_bar)
                carry.u_bar = u_bar[:, -1]
                psi = activity.record["psi"]
                signal = reverse_exp_filter(synaptic_input(delta, feedback), kappa)  # R = F_κ^←(Bδ) on the chunk
                # Σ_t L^t κ^{t−t0+1} ē^{t0−1} = κ R^{t0} ē^{t0−1}, before ē moves on (module docstring).
                weight = kappa * signal[:, 0]
                if self.per_task:
                    g_layer.addcmul_(weight.unsqueeze(-1), carry.e_bar)
                else:
                    g_layer += torch.einsum("bj,bji->ji", weight, carry.e_bar)
                _add_contraction(g_layer, signal * psi, u_bar)  # Σ_s R^s ψ^s ū^s
                if span.stop < steps:  # ē^{t1} = κ^C ē^{t0−1} + Σ_s κ^{t1−s} e^s, for the next chunk
                    decay = kappa ** torch.arange(size - 1, -1, -1, dtype=inputs.dtype, device=inputs.device)
                    _add_contraction(carry.e_bar, decay.view(1, -1, 1) * psi, u_bar, beta=kappa**size)
                if e_sum is not None:
                    _add_contraction(e_sum, psi, u_bar)  # Σ_s e^s for the rate regularizer
                    spikes += activity.z.sum((0, 1))

            reg_loss = task_loss.new_zeros(())
            if self.rate_regularization is not None:
                reg_loss, dE_dz = _rate_regularization(self.rate_regularization, spikes, batch * steps)
                g_layer.addcmul_(dE_dz.unsqueeze(-1), e_sum)  # Σ_t c_j e^t: ∂E_reg/∂z_j^t = c_j for all t
            split = {"w_in": g_layer[..., :n_in].contiguous(), "w_rec": g_layer[..., n_in:].contiguous()}
            grads = without_autapses(cell, split)
            grads = {f"layers.0.{k}": v for k, v in grads.items()}
            grads["readout.w_out"] = g_out
            if b_out is not None:
                grads["readout.bias"] = g_bias
        return GradientResult(task_loss + reg_loss, task_loss, grads, Trial(x, [activity], y))


class _Carry:
    """What one chunk hands to the next; None before the first chunk (zero initial state and filters).

    state: the LIF state; y: readout (B, n_out); z_bar: F_κ(z) (B, n); ones_bar: F_κ(1) (1,);
    u_bar: F_α([x, z^{t-1}]) (B, n_in + n); e_bar: F_κ(e) per task (B, n, n_in + n), zeros at the start.
    """

    def __init__(self, e_bar: torch.Tensor) -> None:
        self.state: Any = None
        self.y: torch.Tensor | None = None
        self.z_bar: torch.Tensor | None = None
        self.ones_bar: torch.Tensor | None = None
        self.u_bar: torch.Tensor | None = None
        self.e_bar = e_bar


def _add_contraction(acc: torch.Tensor, post: torch.Tensor, pre: torch.Tensor, beta: float = 1.0) -> None:
    """In place acc ← β·acc + Σ_t post^t ⊗ pre^t. post (B, C, n), pre (B, C, m); acc (B, n, m) per task or
    (n, m) summed over tasks. No (B, C, n, m) or extra (B, n, m) tensor is built."""
    if acc.dim() == 3:
        acc.baddbmm_(post.transpose(1, 2), pre, beta=beta)
    else:
        acc.addmm_(post.reshape(-1, post.shape[-1]).transpose(0, 1), pre.reshape(-1, pre.shape[-1]), beta=beta)


def _chunk_error(chunk_loss: ChunkLoss, y: torch.Tensor, span: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk's loss and δ = ∂loss/∂y (B, C, n_out); δ = 0 where the loss does not depend on y."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = chunk_loss(y, span)
        if not loss.requires_grad:
            return loss.detach(), torch.zeros_like(y)
        (delta,) = torch.autograd.grad(loss, y, allow_unused=True)
    return loss.detach(), torch.zeros_like(y) if delta is None else delta


def _rate_regularization(reg: RateRegularization, spikes: torch.Tensor, samples: int) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """E_reg and ∂E_reg/∂z_j^t (n,) from the spike counts (n,) over ``samples`` = B·T task-steps.

    The same formulas as :class:`RateRegularization` (f̄_j = count_j / (B·T·dt)), without the (B, T, n) spikes.
    """
    gap = spikes / samples / reg.dt - reg.target_hz / 1000.0
    return reg.weight * (gap**2).sum(), 2 * reg.weight * gap / (samples * reg.dt)
