"""Forward-mode influence tensors for a whole stack: RTRL, deep traces and the m-order family.

The network state s^t (every layer's cell state and the readout y^t) is carried with its
influence M^t = ds^t/dθ, one column per trainable number (P of them), each step computed as
P forward-mode directional derivatives (``torch.func.jvp`` batched by ``vmap``):

- exact (deep RTRL): M_t = J_t M_{t-1} + M̄_t with the full step Jacobian J;
- m-order family (Martín-Sánchez et al. 2022): J = D + E, D the step with z^{t-1} cut where it
  enters the recurrent input and the reset (within-neuron carries, plus the same-step cross-layer
  paths), E the rest (cross-neuron hops in time). M^(0)_t = D M^(0)_{t-1} + M̄_t,
  M^(k)_t = D M^(k)_{t-1} + E M^(k-1)_{t-1}; keeping k ≤ m gives order m. Order 0 is (deep)
  e-prop with its traces stored forward, order ≥ T−1 is RTRL.

Memory is (tensors kept)·P·B·|s| numbers — O(n³) per task for n neurons: it is checked against
``memory_budget_gib`` before anything is allocated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.func import jvp, vmap
from torch.utils._pytree import tree_map

from l2l.cells.base import recurrent_weight
from l2l.network import RecurrentNetwork
from l2l.synapses import synaptic_input
from l2l.validation import InvalidValueError


class MemoryBudgetError(ValueError):
    """The influence tensors would exceed the configured memory budget: ``what`` needs more than ``budget``
    GiB; ``key`` names the budget's setting (:meth:`renamed` gives the config key)."""

    def __init__(self, what: str, budget: float, key: str = "memory_budget_gib") -> None:
        self.what, self.budget, self.key = what, budget, key
        super().__init__(f"{what}, above {key}={budget}: raise {key}, or use a smaller network or batch")

    def renamed(self, key: str) -> MemoryBudgetError:
        """The same error naming ``key``."""
        return MemoryBudgetError(self.what, self.budget, key)


def network_step(network: RecurrentNetwork, params: Mapping[str, torch.Tensor], carry: tuple, x: torch.Tensor,
                 local: bool = False, offsets: tuple | None = None):
    """One step of the whole network. carry = (cell state per layer, y (B, n_out)); x (B, n_in).

    ``local`` cuts z^{t-1} where it enters each layer's recurrent input and reset (e-prop's split).
    ``offsets`` (one (B, G·n_l) per layer, then (B, n_out)) are added to each layer's input current and
    to the readout drive: differentiating along them gives ∂s^t/∂I^t, from which the explicit
    parameter derivative ∂s^t/∂W_ri = (∂s^t/∂I_r) u_i follows without one direction per parameter.
    Returns the new carry and each layer's output z^t.
    """
    states, y = carry
    new_states, zs = [], []
    u = x
    for l, (cell, state) in enumerate(zip(network.layers, states, strict=True)):
        z_prev = state.z.detach() if local else state.z
        current = synaptic_input(u, params[f"layers.{l}.w_in"]) + synaptic_input(
            z_prev, recurrent_weight(params[f"layers.{l}.w_rec"], cell.params)
        )
        if f"layers.{l}.bias" in params:
            current = current + params[f"layers.{l}.bias"]
        if offsets is not None:
            current = current + offsets[l]
        z, state, _ = cell.model.dynamics(current, z_prev, state, cell.params, False)
        new_states.append(state)
        zs.append(z)
        u = z
    drive = synaptic_input(u, params["readout.w_out"])
    if "readout.bias" in params:
        drive = drive + params["readout.bias"]
    if offsets is not None:
        drive = drive + offsets[-1]
    return (tuple(new_states), network.readout.kappa * y + drive), tuple(zs)


def influence_memory_bytes(network: RecurrentNetwork, batch: int, steps: int, order: int | None,
                           itemsize: int = 8) -> int:
    """Peak bytes of the influence computation: units of P × B × |s| numbers (the kept tensors, the
    step's directional derivatives and their temporaries; 16 units for exact and order 0, 7 more per
    order, calibrated against measured peaks) plus the stored output influence T × P × B × n_out.
    O(n³) per task for n neurons."""
    n_params = sum(p.numel() for p in network.parameters())
    state = sum(cell.n * len(cell.model.state._fields) for cell in network.layers) + network.n_out
    units = 16 if order is None else 16 + 7 * order
    return itemsize * n_params * batch * (units * state + steps * network.n_out)


@dataclass
class Influence:
    """output (B, T, n_out); spikes per layer (B, T, n_k); dy (T, P, B, n_out) = dy^t/dθ;
    dz_sum per layer (P, n_k) = Σ_{t,b} dz^t/dθ (enough for the rate regularizer, whose signal is
    constant in time)."""

    output: torch.Tensor
    spikes: list[torch.Tensor]
    dy: torch.Tensor
    dz_sum: list[torch.Tensor]


def _presynaptic(network: RecurrentNetwork, params: Mapping[str, torch.Tensor], name: str, x: torch.Tensor,
                 zs: tuple, carry: tuple) -> tuple[int | None, torch.Tensor]:
    """For parameter ``name``: which current it drives (layer index, None for the readout) and its
    presynaptic factor u (B, m) at this step (ones for biases; W_rec's masked entries get zero columns
    later)."""
    states, _ = carry
    parts = name.split(".")
    if parts[0] == "readout":
        return None, zs[-1] if parts[1] == "w_out" else x.new_ones(x.shape[0], 1)
    l, kind = int(parts[1]), parts[2]
    if kind == "w_in":
        return l, x if l == 0 else zs[l - 1]
    if kind == "w_rec":
        return l, states[l].z
    return l, x.new_ones(x.shape[0], 1)


def explicit_influence(network: RecurrentNetwork, params: Mapping[str, torch.Tensor], names: list[str],
                       d_current: tuple, x: torch.Tensor, zs: tuple, carry_before: tuple):
    """M̄^t = ∂s^t/∂θ (P, B, ...) for every state leaf, from ∂s^t/∂I^t (one direction per current)."""
    per_param = []
    for name in names:
        l, u = _presynaptic(network, params, name, x, zs, carry_before)
        ds_dI = d_current[l if l is not None else -1]  # leaves of shape (rows, B, ...)
        shape = params[name].shape
        mask = None
        if name.endswith("w_rec") and getattr(network.layers[l].params, "no_autapses", False):
            mask = recurrent_weight(torch.ones(shape, dtype=u.dtype, device=u.device), network.layers[l].params)

        def outer(leaf, u=u, mask=mask, shape=shape):
            extra = leaf.dim() - 2  # state dims after (rows, B)
            if len(shape) == 1:  # a bias: rows only
                return leaf
            # (rows, 1, B, ...) * (1, m, B, 1...) -> (rows·m, B, ...)
            full = leaf.unsqueeze(1) * u.transpose(0, 1).reshape(1, u.shape[1], u.shape[0], *([1] * extra))
            if mask is not None:
                full = full * mask.reshape(*mask.shape, *([1] * (extra + 1)))
            return full.flatten(0, 1)

        per_param.append(tree_map(outer, ds_dI))
    return tree_map(lambda *leaves: torch.cat(leaves, dim=0), *per_param)


def forward_influence(network: RecurrentNetwork, params: Mapping[str, torch.Tensor], inputs: torch.Tensor,
                      order: int | None = None, memory_budget_gib: float = 4.0) -> Influence:
    """Run the trial carrying influence tensors. ``order=None``: exact (RTRL); ``order=m``: m-order."""
    network.check_inputs(inputs)
    if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 0):
        raise InvalidValueError("order", order, ": it must be an integer >= 0 (or None for exact)")
    batch, steps = inputs.shape[:2]
    need = influence_memory_bytes(network, batch, steps, order, inputs.element_size())
    if need > memory_budget_gib * 2**30:
        raise MemoryBudgetError(
            f"influence tensors for {network.sizes} neurons, P={sum(p.numel() for p in network.parameters())} "
            f"parameters, B={batch}, T={steps}, order={order} need {need / 2**30:.2f} GiB", memory_budget_gib)
    names = list(params)
    total = sum(params[k].numel() for k in names)
    states = tuple(cell.init_state(batch, inputs.dtype, inputs.device) for cell in network.layers)
    carry = (states, inputs.new_zeros(batch, network.n_out))
    widths = [cell.model.n_gates * cell.n for cell in network.layers] + [network.n_out]
    no_offsets = tuple(inputs.new_zeros(batch, w) for w in widths)

    def along(local, d_carry, d_offsets, carry, x):
        def one(dc, do):
            return jvp(lambda c, o: network_step(network, params, c, x, local, o), (carry, no_offsets), (dc, do))
        return vmap(one)(d_carry, d_offsets)

    kept = 1 if order is None else order + 1
    zeros = tree_map(lambda s: s.new_zeros(total, *s.shape), carry)
    # one unit direction per input current of every layer and per readout drive, all in one batch
    n_dirs = sum(widths)
    eye = torch.eye(n_dirs, dtype=inputs.dtype, device=inputs.device)
    unit_offsets = tuple(eye[:, sum(widths[:i]):sum(widths[:i + 1])].unsqueeze(1).expand(n_dirs, batch, w)
                         for i, w in enumerate(widths))
    no_state = tree_map(lambda s: s.new_zeros(n_dirs, *s.shape), carry)

    def stacked(moves: list) -> tuple:
        """Apply ``along`` to several influence tensors in one batched call; returns their results in order."""
        if not moves:
            return ()
        local_flags = {flag for flag, _ in moves}
        assert len(local_flags) == 1
        joined = tree_map(lambda *leaves: torch.cat(leaves, 0), *[m for _, m in moves])
        offsets = tuple(torch.zeros(len(moves) * total, batch, w, dtype=inputs.dtype, device=inputs.device)
                        for w in widths)
        _, out = along(local_flags.pop(), joined, offsets, carry, x)
        return tuple(tree_map(lambda leaf, i=i: leaf[i * total:(i + 1) * total], out) for i in range(len(moves)))

    influences = [zeros] * kept
    outputs, spikes, dy = [], [], []
    dz_sum = [inputs.new_zeros(total, cell.n) for cell in network.layers]
    for t in range(steps):
        x = inputs[:, t]
        # ∂(s^t, z^t)/∂I^t for every layer's currents and the readout drive, split per layer
        (carry_b, z_b), tangent = along(False, no_state, unit_offsets, carry, x)
        d_current = tuple(tree_map(lambda leaf, i=i: leaf[sum(widths[:i]):sum(widths[:i + 1])], tangent)
                          for i in range(len(widths)))
        new_carry = tree_map(lambda s: s[0], carry_b)
        zs = tuple(z[0] for z in z_b)
        source = explicit_influence(network, params, names, d_current, x, zs, carry)
        if order is None:
            (moved,) = stacked([(False, influences[0])])
            terms = [tree_map(torch.add, moved, source)]
        else:
            # D·M^(k), then E·M^(k-1) = (J − D)·M^(k-1); after step t only M^(k≤t) can be nonzero
            live = min(kept, t)
            local = stacked([(True, m) for m in influences[:live]])
            full = stacked([(False, m) for m in influences[:min(kept - 1, t)]])
            terms = [tree_map(torch.add, local[0], source) if live else source]
            for k in range(1, min(kept, t + 1)):
                hop = tree_map(torch.sub, full[k - 1], local[k - 1])
                terms.append(tree_map(torch.add, local[k], hop) if k < live else hop)
        dz_total = tree_map(lambda *a: sum(a), *[term[1] for term in terms])
        influences = [term[0] for term in terms] + [zeros] * (kept - len(terms))
        carry = new_carry
        outputs.append(carry[1])
        spikes.append(zs)
        dy.append(sum(m[1] for m in influences))
        for l in range(len(network.layers)):
            dz_sum[l] = dz_sum[l] + dz_total[l].sum(1)
    return Influence(
        torch.stack(outputs, 1), [torch.stack([s[l] for s in spikes], 1) for l in range(len(network.layers))],
        torch.stack(dy), dz_sum,
    )
