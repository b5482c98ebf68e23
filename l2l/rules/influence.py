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
from l2l.linear import synaptic_input
from l2l.network import RecurrentNetwork


class MemoryBudgetError(ValueError):
    """The influence tensors would exceed the configured memory budget."""


def network_step(network: RecurrentNetwork, params: Mapping[str, torch.Tensor], carry: tuple, x: torch.Tensor,
                 local: bool = False):
    """One step of the whole network. carry = (cell state per layer, y (B, n_out)); x (B, n_in).

    ``local`` cuts z^{t-1} where it enters each layer's recurrent input and reset (e-prop's split).
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
        z, state, _ = cell.model.dynamics(current, z_prev, state, cell.params, False)
        new_states.append(state)
        zs.append(z)
        u = z
    y = network.readout.kappa * y + synaptic_input(u, params["readout.w_out"])
    if "readout.bias" in params:
        y = y + params["readout.bias"]
    return (tuple(new_states), y), tuple(zs)


def influence_memory_bytes(network: RecurrentNetwork, batch: int, steps: int, order: int | None,
                           itemsize: int = 8) -> int:
    """Bytes the influence tensors need: kept tensors (order+1, or 1 for exact, plus 3 for the step's
    temporaries) × P × B × |state|, plus the stored output influence T × P × B × n_out."""
    n_params = sum(p.numel() for p in network.parameters())
    state = sum(cell.n * len(cell.model.state._fields) for cell in network.layers) + network.n_out
    kept = (1 if order is None else order + 1) + 3
    return itemsize * n_params * batch * (kept * state + steps * network.n_out)


@dataclass
class Influence:
    """output (B, T, n_out); spikes per layer (B, T, n_k); dy (T, P, B, n_out) = dy^t/dθ;
    dz_sum per layer (P, n_k) = Σ_{t,b} dz^t/dθ (enough for the rate regularizer, whose signal is
    constant in time)."""

    output: torch.Tensor
    spikes: list[torch.Tensor]
    dy: torch.Tensor
    dz_sum: list[torch.Tensor]


def forward_influence(network: RecurrentNetwork, params: Mapping[str, torch.Tensor], inputs: torch.Tensor,
                      order: int | None = None, memory_budget_gib: float = 4.0) -> Influence:
    """Run the trial carrying influence tensors. ``order=None``: exact (RTRL); ``order=m``: m-order."""
    network.check_inputs(inputs)
    if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 0):
        raise ValueError(f"order={order!r} is not allowed: it must be an integer >= 0 (or None for exact)")
    batch, steps = inputs.shape[:2]
    need = influence_memory_bytes(network, batch, steps, order, inputs.element_size())
    if need > memory_budget_gib * 2**30:
        raise MemoryBudgetError(
            f"influence tensors for {network.sizes} neurons, P={sum(p.numel() for p in network.parameters())} "
            f"parameters, B={batch}, T={steps}, order={order} need {need / 2**30:.2f} GiB, above "
            f"memory_budget_gib={memory_budget_gib}: raise memory_budget_gib, or use a smaller network or batch"
        )
    names = list(params)
    sizes = [params[k].numel() for k in names]
    total = sum(sizes)
    basis = torch.eye(total, dtype=inputs.dtype, device=inputs.device).split(sizes, dim=1)
    unit = {k: b.reshape(total, *params[k].shape) for k, b in zip(names, basis, strict=True)}
    no_params = {k: torch.zeros_like(v) for k, v in unit.items()}
    states = tuple(cell.init_state(batch, inputs.dtype, inputs.device) for cell in network.layers)
    carry = (states, inputs.new_zeros(batch, network.n_out))

    def step_jvp(local, d_params, d_carry, carry, x):
        return jvp(lambda p, c: network_step(network, p, c, x, local), (params, carry), (d_params, d_carry))

    def apply(local, d_params, d_carry, carry, x):
        return vmap(lambda dp, dc: step_jvp(local, dp, dc, carry, x))(d_params, d_carry)

    kept = 1 if order is None else order + 1
    zeros = tree_map(lambda s: s.new_zeros(total, *s.shape), carry)
    influences = [zeros] * kept
    outputs, spikes, dy = [], [], []
    dz_sum = [inputs.new_zeros(total, cell.n) for cell in network.layers]
    for t in range(steps):
        x = inputs[:, t]
        if order is None:
            (carry_b, z_b), (new, dz) = apply(False, unit, influences[0], carry, x)
            influences, dz_total = [new], dz
        else:
            # M̄ (source) and D·M^(k) for every kept order, then E·M^(k-1) = (J − D)·M^(k-1)
            (carry_b, z_b), (source, dz_source) = apply(True, unit, zeros, carry, x)
            local = [apply(True, no_params, m, carry, x)[1] for m in influences]
            full = [apply(False, no_params, m, carry, x)[1] for m in influences[:-1]]
            new = [tree_map(torch.add, source, local[0][0])]
            dz_new = [tree_map(torch.add, dz_source, local[0][1])]
            for k in range(1, kept):
                hop = tree_map(torch.sub, full[k - 1], local[k - 1])
                new.append(tree_map(torch.add, local[k][0], hop[0]))
                dz_new.append(tree_map(torch.add, local[k][1], hop[1]))
            influences = new
            dz_total = tree_map(lambda *a: sum(a), *dz_new)
        carry = tree_map(lambda s: s[0], carry_b)
        outputs.append(carry[1])
        spikes.append(tuple(z[0] for z in z_b))
        dy.append(sum(m[1] for m in influences))
        for l in range(len(network.layers)):
            dz_sum[l] = dz_sum[l] + dz_total[l].sum(1)
    return Influence(
        torch.stack(outputs, 1), [torch.stack([s[l] for s in spikes], 1) for l in range(len(network.layers))],
        torch.stack(dy), dz_sum,
    )
