"""Deep eligibility traces: credit across layers as well as time (docs/deep_traces.md).

For a parameter of layer l the forward recursion keeps traces in every layer k ≥ l,
ε^k_t = D^k_t ε^k_{t-1} + C^k_t ε^{k-1}_t, with D^k the within-neuron temporal Jacobian and
C^k = ∂h^k_t/∂h^{k-1}_t the cross-layer Jacobian at the same step; the update is
Σ_t L^top_t (∂z/∂h) ε^top_t (+ layer-local signals). Stored forward, ε^k for layer-l weights is
(n_k × n_l × m_l) per task. Here the same sum is taken in its factorized form: each layer turns
the signal on its outputs into a signal on its input currents through its own within-neuron
dynamics (``current_signal``, the transposed trace carry) and passes it down through its
feedforward weights (the transposed C). For LIF stacks the carry is the scalar α, so the
trace of layer-l weights seen from layer l+1, U^{l+1}·F_α(ψ^l z̄), becomes one reverse filter
and one contraction; the same holds at every depth and for every cell. Cost O(B·T·n·m), no
(n × n × m) tensor. ``l2l-verify`` checks it against autograd and against the forward recursion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from l2l.network import RecurrentNetwork, Trial
from l2l.synapses import contract_over_time
from l2l.traces import current_signal, without_autapses
from l2l.traces.presynaptic import PresynapticInputs


def deep_eligibility_gradients(
    network: RecurrentNetwork,
    trial: Trial,
    signals: Sequence[torch.Tensor | None],
    params: Mapping[str, torch.Tensor] | None = None,
    per_task: bool = False,
    across_layers: bool = True,
) -> dict[str, torch.Tensor]:
    """Deep e-prop gradients for every recurrent layer's weights.

    ``signals[k]`` (B, T, n_k) is the learning signal arriving at layer k's outputs (the top layer's
    must be given; lower ones are layer-local additions or None). ``trial`` must be recorded
    (``record=True``). Returns ``{"layers.<k>.w_in": ..., "layers.<k>.w_rec": ..., "layers.<k>.bias": ...}``,
    summed over tasks or, with ``per_task``, one per task (leading B). ``across_layers=False`` stops
    the deep recursion: each layer learns from its own signal only (layer-local e-prop).
    """
    if len(signals) != len(network.layers) or signals[-1] is None:
        raise ValueError(f"signals has {len(signals)} entries for {len(network.layers)} layers; the top one is needed")
    params = params if params is not None else network.parameter_dict()
    grads: dict[str, torch.Tensor] = {}
    arriving = signals[-1]
    for k in reversed(range(len(network.layers))):
        cell, activity = network.layers[k], trial.layers[k]
        below = trial.inputs if k == 0 else trial.layers[k - 1].z
        on_currents = current_signal(cell, activity, arriving)
        pre = PresynapticInputs(below, activity.z_prev)
        u = pre.concatenated(with_bias=cell.model.has_bias)
        layer = without_autapses(cell, pre.split(contract_over_time(on_currents, u, per_task), cell.model.has_bias))
        grads.update({f"layers.{k}.{name}": g for name, g in layer.items()})
        if k > 0 and not across_layers:
            arriving = signals[k - 1] if signals[k - 1] is not None else torch.zeros_like(below)
        elif k > 0:
            # C^T: through the feedforward weights U^k (G·n_k, n_{k-1}), shared or per task
            down = on_currents @ params[f"layers.{k}.w_in"]
            arriving = down if signals[k - 1] is None else down + signals[k - 1]
    return grads
