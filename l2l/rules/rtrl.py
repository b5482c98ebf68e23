"""Real-time recurrent learning: exact forward-mode gradients with influence tensors.

The state s^t of the whole network (every layer's cell state and the readout y^t) is carried
with its influence M^t = ds^t/dθ, shape (P, ...) for P trainable numbers:
M^t = J^t M^{t-1} + ∂s^t/∂θ, computed each step as P forward-mode directional derivatives
(``torch.func.jvp`` batched with ``vmap``). The gradient is Σ_t ∂E/∂y^t · M_y^t (+ the rate
regularizer's Σ_t ∂E/∂z^t · M_z^t). Memory O(P·n), time O(P·n²) per step: for small networks
and as an oracle; float64 works.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.func import jvp, vmap

from l2l.cells.base import recurrent_weight
from l2l.linear import synaptic_input
from l2l.network import LayerActivity, RecurrentNetwork, Trial
from l2l.rules.base import GradientResult, LearningRule, LossFn, output_error


def network_step(network: RecurrentNetwork, params: Mapping[str, torch.Tensor], carry: tuple, x: torch.Tensor):
    """One time step of the whole network. carry = (cell states per layer, y (B, n_out)); x (B, n_in).

    Returns the new carry and the outputs z^t of every layer.
    """
    states, y = carry
    new_states, zs = [], []
    u = x
    for l, (cell, state) in enumerate(zip(network.layers, states, strict=True)):
        current = synaptic_input(u, params[f"layers.{l}.w_in"]) + synaptic_input(
            state.z, recurrent_weight(params[f"layers.{l}.w_rec"], cell.params)
        )
        if f"layers.{l}.bias" in params:
            current = current + params[f"layers.{l}.bias"]
        z, state, _ = cell.model.dynamics(current, state.z, state, cell.params, False)
        new_states.append(state)
        zs.append(z)
        u = z
    y = network.readout.kappa * y + synaptic_input(u, params["readout.w_out"])
    if "readout.bias" in params:
        y = y + params["readout.bias"]
    return (tuple(new_states), y), tuple(zs)


class RTRL(LearningRule):
    """Exact gradients forward in time (equals BPTT to round-off)."""

    name = "rtrl"

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        network.check_inputs(inputs)
        params = {k: v.detach() for k, v in (params or network.parameter_dict()).items()}
        if any(v.dim() > 2 and k.endswith(("w_in", "w_rec", "w_out")) for k, v in params.items()):
            raise ValueError("rule rtrl takes shared weights only (no per-task batch dimension)")
        names = list(params)
        sizes = [params[k].numel() for k in names]
        total = sum(sizes)
        basis = torch.eye(total, dtype=inputs.dtype, device=inputs.device).split(sizes, dim=1)
        directions = {k: b.reshape(total, *params[k].shape) for k, b, in zip(names, basis, strict=True)}

        batch = inputs.shape[0]
        states = tuple(cell.init_state(batch, inputs.dtype, inputs.device) for cell in network.layers)
        carry: Any = (states, inputs.new_zeros(batch, network.n_out))
        influence: Any = torch.utils._pytree.tree_map(lambda s: s.new_zeros(total, *s.shape), carry)

        def directional(d_params, d_carry, carry, x):
            return jvp(lambda p, c: network_step(network, p, c, x), (params, carry), (d_params, d_carry))

        outputs, zs, y_influence, z_influence = [], [], [], []
        for t in range(inputs.shape[1]):
            (carry_b, z_b), (influence, dz) = vmap(directional, in_dims=(0, 0, None, None))(
                directions, influence, carry, inputs[:, t]
            )
            carry = torch.utils._pytree.tree_map(lambda s: s[0], carry_b)
            outputs.append(carry[1])
            zs.append(tuple(z[0] for z in z_b))
            y_influence.append(influence[1])
            z_influence.append(dz)
        output = torch.stack(outputs, 1)
        task_loss, delta = output_error(loss_fn, output)
        flat = torch.einsum("tpbk,btk->p", torch.stack(y_influence), delta)
        spikes = [torch.stack([z[l] for z in zs], 1) for l in range(len(network.layers))]
        reg_loss = output.new_zeros(())
        if self.rate_regularization is not None:
            for l, cell in enumerate(network.layers):
                if cell.model.spiking:
                    reg_loss = reg_loss + self.rate_regularization.loss(spikes[l])
                    dz_dtheta = torch.stack([dz[l] for dz in z_influence])  # (T, P, B, n)
                    flat = flat + torch.einsum(
                        "tpbj,btj->p", dz_dtheta, self.rate_regularization.gradient_wrt_spikes(spikes[l])
                    )
        grads = {k: g.reshape(params[k].shape) for k, g in zip(names, flat.split(sizes), strict=True)}
        layers = [LayerActivity(z, torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1)) for z in spikes]
        return GradientResult(task_loss + reg_loss, task_loss, grads, Trial(inputs, layers, output))
