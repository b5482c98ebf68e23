"""A spiking learner as a NIR graph (the Neuromorphic Intermediate Representation, package ``nir``) and back.

The graph of a :class:`~l2l.network.RecurrentNetwork` of L LIF layers (names are the network's parameter names)::

    input ─► layers.0.w_in ─► layers.0.lif ─► layers.1.w_in ─► ... ─► layers.{L-1}.lif ─► readout.w_out
                                 ▲     │                                                        │
                                 └─ layers.0.w_rec ◄┘        output ◄─ readout.li ◄─────────────┘

(one recurrent Linear per layer, its diagonal zeroed: l2l's layers have no autapses)

NIR's neurons are continuous-time; l2l's are discrete (step dt). The export uses the convention under which a
forward-Euler simulation at dt reproduces l2l's leak and input exactly: an l2l decay α = exp(−dt/τ_m) becomes
``tau = dt/(1 − α)`` and ``r = tau/dt``, so ``v ← v + dt/tau·(−v + r·I) = α·v + I``; the readout's κ likewise
becomes an ``LI`` node. What NIR (1.0) cannot express, and the graph therefore does not say:

- **reset by subtraction one step later**: l2l's ``v^t = α v^{t−1} + I^t − v_th z^{t−1}``; NIR's LIF resets ``v``
  to ``v_reset`` (0) when it spikes;
- **the refractory period**: l2l blocks ``n_ref`` steps after a spike; NIR has no refractory period;
- **the time step**: a simulator that integrates the ODE exactly (``v ← e^{−dt/tau} v + (1 − e^{−dt/tau}) r I``)
  instead of forward Euler sees a slightly different leak and gain;
- **the delay of a recurrent edge** (one step in l2l) is the simulator's choice.

So each LIF node carries l2l's exact neuron in its ``metadata`` (``l2l_reset``, ``l2l_refractory_steps``,
``l2l_tau_m``, ``dt``, and what only learning reads: ``l2l_gamma``, ``l2l_surrogate``, ``l2l_psi_refractory``,
``l2l_no_autapses``): :func:`network_from_nir` reads it back exactly, and a simulator may honour it
(:mod:`l2l.nir_simulation` does, on request). The measured cost of dropping it is in ``docs/nir.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from l2l.cells.base import recurrent_weight
from l2l.cells.lif import LIFParameters
from l2l.network import RecurrentNetwork

RESET = "subtract_next_step"
"""``metadata["l2l_reset"]`` of an exported LIF node: v^t = α v^{t−1} + I^t − v_th z^{t−1}."""


def require_nir() -> Any:
    """The ``nir`` module, or one line saying how to install it."""
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export needs the nir package (and h5py): pip install 'l2l[nir]' "
                          "(or pip install nir)") from None
    return nir


def _weights(network: RecurrentNetwork, params: Mapping[str, torch.Tensor] | None) -> dict[str, np.ndarray]:
    """Every parameter as float64 numpy (``params`` overrides by name: e.g. adapted weights of one task)."""
    own = dict(network.named_parameters())
    chosen = {**own, **(params or {})}
    return {name: value.detach().to("cpu", torch.float64).numpy() for name, value in chosen.items()}


def network_to_nir(network: RecurrentNetwork, params: Mapping[str, torch.Tensor] | None = None,
                   metadata: Mapping[str, Any] | None = None) -> Any:
    """The NIR graph of ``network`` (L LIF layers and a leaky readout); ``params`` replaces weights by name
    (each the parameter's own shape, e.g. the weights adapted to one task). ``metadata`` goes on the graph.

    ValueError naming the layer for a cell NIR cannot hold (ALIF's adaptive threshold, LSTM, RNN)."""
    nir = require_nir()
    weights = _weights(network, params)
    shapes = {name: tuple(value.shape) for name, value in network.named_parameters()}
    for name, value in weights.items():
        if value.shape != shapes[name]:
            raise ValueError(f"params[{name!r}] has shape {value.shape}: expected {shapes[name]} (one task's weights)")
    dt = float(network.readout.dt)
    nodes: dict[str, Any] = {"input": nir.Input(np.array([network.n_in]))}
    edges: list[tuple[str, str]] = []
    source = "input"
    for l, cell in enumerate(network.layers):
        p = cell.params
        if cell.model.name != "lif" or not isinstance(p, LIFParameters):
            raise ValueError(f"network layer {l} is a {cell.model.name!r} cell: NIR export takes LIF layers only "
                             "(NIR 1.0 has no adaptive-threshold, LSTM or rate neuron)")
        if p.dt != dt:
            raise ValueError(f"network layer {l} has dt={p.dt}, the readout dt={dt}: one time step is exported")
        n = network.sizes[l]
        w_rec = recurrent_weight(torch.from_numpy(weights[f"layers.{l}.w_rec"]), p).numpy()
        tau = dt / (1.0 - p.alpha)
        lif = f"layers.{l}.lif"
        nodes[f"layers.{l}.w_in"] = nir.Linear(weight=weights[f"layers.{l}.w_in"])
        nodes[f"layers.{l}.w_rec"] = nir.Linear(weight=w_rec)
        nodes[lif] = nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=np.zeros(n),
                             v_threshold=np.full(n, p.v_th), v_reset=np.zeros(n),
                             metadata={"l2l_reset": RESET, "l2l_refractory_steps": int(p.n_ref),
                                       "l2l_tau_m": float(p.tau_m), "l2l_gamma": float(p.gamma),
                                       "l2l_surrogate": p.surrogate, "l2l_psi_refractory": p.psi_refractory,
                                       "l2l_no_autapses": int(p.no_autapses), "dt": dt,
                                       "discretization": "forward_euler"})
        edges += [(source, f"layers.{l}.w_in"), (f"layers.{l}.w_in", lif), (lif, f"layers.{l}.w_rec"),
                  (f"layers.{l}.w_rec", lif)]
        source = lif
    w_out, bias = weights["readout.w_out"], weights.get("readout.bias")
    nodes["readout.w_out"] = nir.Linear(weight=w_out) if bias is None else nir.Affine(weight=w_out, bias=bias)
    kappa = network.readout.kappa
    tau_out = dt / (1.0 - kappa)
    n_out = network.n_out
    nodes["readout.li"] = nir.LI(tau=np.full(n_out, tau_out), r=np.full(n_out, tau_out / dt), v_leak=np.zeros(n_out),
                                 metadata={"l2l_tau_out": float(network.readout.tau_out), "dt": dt,
                                           "discretization": "forward_euler"})
    nodes["output"] = nir.Output(np.array([n_out]))
    edges += [(source, "readout.w_out"), ("readout.w_out", "readout.li"), ("readout.li", "output")]
    info = {"producer": "l2l", "dt": dt, **dict(metadata or {})}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=info)


def _uniform(node: Any, field: str, where: str) -> float:
    """The one value of a per-neuron parameter (l2l's neurons of a layer share theirs)."""
    values = np.asarray(getattr(node, field), dtype=np.float64).ravel()
    if values.size == 0 or not np.all(values == values[0]):
        raise ValueError(f"{where}.{field} differs between neurons: l2l's LIF layer has one value per layer")
    return float(values[0])


def _text(value: Any) -> str:
    """A string read back from HDF5 (bytes or numpy scalar)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _successors(edges: list[tuple[str, str]], name: str) -> list[str]:
    return [b for a, b in edges if a == name]


def network_from_nir(graph: Any, dtype: torch.dtype = torch.float32) -> RecurrentNetwork:
    """A :class:`RecurrentNetwork` (of ``dtype``) from a NIR graph of the form :func:`network_to_nir` writes.

    The neuron is l2l's (reset by subtraction, refractory period): a LIF node's ``metadata`` (written by l2l)
    restores ``tau_m`` and ``n_ref`` exactly; without it the forward-Euler reading of ``tau`` gives α and
    ``n_ref`` is 0. An input gain ``r·dt/tau`` ≠ 1 is folded into the layer's incoming weights. ValueError
    naming the node for anything else (another topology, ``v_leak`` or ``v_reset`` ≠ 0)."""
    nir = require_nir()
    nodes, edges = graph.nodes, [tuple(e) for e in graph.edges]
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"the NIR graph has {len(inputs)} Input nodes: expected 1")
    dt = float(graph.metadata.get("dt", 1.0)) if graph.metadata else 1.0
    layers: list[dict[str, Any]] = []
    following = _successors(edges, inputs[0])
    while True:
        if len(following) != 1:
            raise ValueError(f"NIR graph: {len(following)} nodes follow one node of the chain: expected 1")
        weight_name = following[0]
        node = nodes[weight_name]
        if not isinstance(node, (nir.Linear, nir.Affine)):
            raise ValueError(f"NIR node {weight_name!r} is {type(node).__name__}: expected a Linear")
        targets = _successors(edges, weight_name)
        if len(targets) != 1:
            raise ValueError(f"NIR node {weight_name!r} feeds {len(targets)} nodes: expected 1")
        target, after = targets[0], nodes[targets[0]]
        if isinstance(after, nir.LI):
            readout = (weight_name, node, target, after)
            break
        if not isinstance(after, nir.LIF):
            raise ValueError(f"NIR node {target!r} is {type(after).__name__}: expected LIF or LI")
        recurrent = [s for s in _successors(edges, target) if (s, target) in edges]
        if len(recurrent) != 1 or not isinstance(nodes[recurrent[0]], nir.Linear):
            raise ValueError(f"NIR node {target!r} needs one recurrent Linear from and to it")
        layers.append({"name": target, "lif": after, "w_in": np.asarray(node.weight, np.float64),
                       "w_rec": np.asarray(nodes[recurrent[0]].weight, np.float64)})
        following = [s for s in _successors(edges, target) if s not in recurrent]
    if not layers:
        raise ValueError("the NIR graph has no LIF layer")
    params, state = [], {}
    for l, layer in enumerate(layers):
        lif, where = layer["lif"], layer["name"]
        for field in ("v_leak", "v_reset"):
            if _uniform(lif, field, where) != 0.0:
                raise ValueError(f"{where}.{field} is not 0: l2l's LIF rests at 0 and resets by subtraction")
        meta = lif.metadata or {}
        tau = _uniform(lif, "tau", where)
        node_dt = float(meta.get("dt", dt))
        gain = _uniform(lif, "r", where) * node_dt / tau
        tau_m = float(meta["l2l_tau_m"]) if "l2l_tau_m" in meta else -node_dt / math.log(1.0 - node_dt / tau)
        learning = {key: cast(meta[f"l2l_{key}"]) for key, cast in (("gamma", float), ("surrogate", _text),
                    ("psi_refractory", _text), ("no_autapses", bool)) if f"l2l_{key}" in meta}
        params.append(LIFParameters(tau_m=tau_m, v_th=_uniform(lif, "v_threshold", where),
                                    n_ref=int(meta.get("l2l_refractory_steps", 0)), dt=node_dt, **learning))
        state[f"layers.{l}.w_in"] = layer["w_in"] * gain
        state[f"layers.{l}.w_rec"] = layer["w_rec"] * gain
    weight_name, weight_node, li_name, li = readout
    li_meta = li.metadata or {}
    tau_li = _uniform(li, "tau", li_name)
    gain_out = _uniform(li, "r", li_name) * dt / tau_li
    tau_out = float(li_meta["l2l_tau_out"]) if "l2l_tau_out" in li_meta else -dt / math.log(1.0 - dt / tau_li)
    state["readout.w_out"] = np.asarray(weight_node.weight, np.float64) * gain_out
    has_bias = isinstance(weight_node, nir.Affine)
    if has_bias:
        state["readout.bias"] = np.asarray(weight_node.bias, np.float64) * gain_out
    sizes = [layer["w_rec"].shape[0] for layer in layers]
    network = RecurrentNetwork(layers[0]["w_in"].shape[1], sizes, state["readout.w_out"].shape[0], cell="lif",
                               cell_params=params, tau_out=tau_out, dt=dt, readout_bias=has_bias).to(dtype)
    with torch.no_grad():
        for name, value in network.named_parameters():
            value.copy_(torch.from_numpy(state[name]))
    return network


__all__ = ["RESET", "network_from_nir", "network_to_nir", "require_nir"]
