"""A small discrete-time simulator of NIR graphs, written from the NIR specification (numpy only).

It knows nothing of l2l's networks: it reads a ``nir.NIRGraph`` of ``Input``, ``Output``, ``Linear``, ``Affine``,
``LIF`` and ``LI`` nodes, so it can check what an exported graph says. Per time step (dt from the graph's
metadata, default 1 ms) the nodes are evaluated in breadth-first order from the input; a node sums what arrives on
its edges, and an edge from a node not yet evaluated in this step (a recurrent edge) carries that node's value of
the previous step (zeros at the start). The neurons (``tau dv/dt = (v_leak − v) + r·I``):

- ``discretization="euler"``: ``v ← v + dt/tau·(v_leak − v + r·I)``;
- ``discretization="exact"``: the ODE solved over the step with I held: ``v ← v_leak + e^{−dt/tau}(v − v_leak)
  + (1 − e^{−dt/tau})·r·I``;
- LIF: a spike where ``v > v_threshold``, then ``v ← v_reset`` (NIR's neuron).

``l2l_neuron=True`` honours the l2l neuron a node's metadata describes (``l2l_reset``: reset by subtracting
``v_threshold`` one step later; ``l2l_refractory_steps``: no spike for that many steps after one) instead of NIR's
reset: the graph's wiring, weights and constants can then be checked against l2l exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

DISCRETIZATIONS = ("euler", "exact")


@dataclass
class NIRRun:
    """output (B, T, n_out); spikes: per LIF node (B, T, n); potentials: per LIF/LI node (B, T, n) after reset."""

    output: np.ndarray
    spikes: dict[str, np.ndarray]
    potentials: dict[str, np.ndarray]


def _order(nodes: dict[str, Any], edges: list[tuple[str, str]], start: str) -> list[str]:
    """Breadth-first order of the nodes reachable from ``start``."""
    seen, order, queue = {start}, [], deque([start])
    while queue:
        name = queue.popleft()
        order.append(name)
        for a, b in edges:
            if a == name and b not in seen:
                seen.add(b)
                queue.append(b)
    return order


def _decay(node: Any, dt: float, discretization: str) -> tuple[np.ndarray, np.ndarray]:
    """(keep, gain): v ← keep·v + gain·(r·I) + (1 − keep)·v_leak for the chosen discretization."""
    tau = np.asarray(node.tau, np.float64)
    if discretization == "euler":
        keep = 1.0 - dt / tau
        return keep, dt / tau
    keep = np.exp(-dt / tau)
    return keep, 1.0 - keep


def simulate_nir(graph: Any, inputs: np.ndarray, discretization: str = "euler", l2l_neuron: bool = False) -> NIRRun:
    """Run ``graph`` on ``inputs`` (B, T, n_in) (float64). Returns the Output node's values and every LIF's spikes."""
    import nir

    if discretization not in DISCRETIZATIONS:
        raise ValueError(f"discretization={discretization!r} is not allowed: it must be one of {list(DISCRETIZATIONS)}")
    x = np.asarray(inputs, np.float64)
    if x.ndim != 3:
        raise ValueError(f"inputs has shape {x.shape}: expected (B, T, n_in)")
    batch, steps = x.shape[:2]
    nodes, edges = graph.nodes, [tuple(e) for e in graph.edges]
    dt = float((graph.metadata or {}).get("dt", 1.0))
    (start,) = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    (end,) = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    order = _order(nodes, edges, start)
    width = {}
    for name in order:
        node = nodes[name]
        if isinstance(node, (nir.Linear, nir.Affine)):
            width[name] = node.weight.shape[0]
        elif isinstance(node, (nir.LIF, nir.LI)):
            width[name] = np.asarray(node.tau).size
        elif isinstance(node, nir.Input):
            width[name] = x.shape[2]
        elif not isinstance(node, nir.Output):
            raise ValueError(f"NIR node {name!r} is a {type(node).__name__}: this simulator knows Input, Output, "
                             "Linear, Affine, LIF and LI")
    incoming = {name: [a for a, b in edges if b == name] for name in order}
    value = {name: np.zeros((batch, width.get(name, 0))) for name in order if name != end}
    v = {name: np.zeros((batch, width[name])) for name in order if isinstance(nodes[name], (nir.LIF, nir.LI))}
    refractory = {name: np.zeros((batch, width[name])) for name in v}
    spikes = {name: np.zeros((batch, steps, width[name])) for name in v if isinstance(nodes[name], nir.LIF)}
    potentials = {name: np.zeros((batch, steps, width[name])) for name in v}
    output = np.zeros((batch, steps, 0))
    for t in range(steps):
        for name in order:
            node = nodes[name]
            arriving = sum(value[a] for a in incoming[name]) if incoming[name] else None   # previous step if not done
            if isinstance(node, nir.Input):
                value[name] = x[:, t]
            elif isinstance(node, nir.Output):
                if t == 0:
                    output = np.zeros((batch, steps, arriving.shape[1]))
                output[:, t] = arriving
            elif isinstance(node, (nir.Linear, nir.Affine)):
                value[name] = arriving @ np.asarray(node.weight, np.float64).T
                if isinstance(node, nir.Affine):
                    value[name] = value[name] + np.asarray(node.bias, np.float64)
            else:
                keep, gain = _decay(node, dt, discretization)
                leak = np.asarray(node.v_leak, np.float64)
                current = np.asarray(node.r, np.float64) * arriving
                meta = node.metadata or {}
                v[name] = keep * v[name] + gain * current + (1 - keep) * leak
                if isinstance(node, nir.LIF) and l2l_neuron and "l2l_reset" in meta:
                    # l2l's neuron: the previous step's spike (value[name]) is subtracted now; refractory steps
                    # block spikes
                    v[name] = v[name] - node.v_threshold * value[name]
                    free = refractory[name] <= 0
                    z = ((v[name] > node.v_threshold) & free).astype(np.float64)
                    refractory[name] = np.maximum(refractory[name] - 1, 0) + meta["l2l_refractory_steps"] * z
                elif isinstance(node, nir.LIF):
                    z = (v[name] > node.v_threshold).astype(np.float64)
                    v[name] = np.where(z > 0, np.asarray(node.v_reset, np.float64), v[name])
                else:
                    z = v[name]
                value[name] = z
                potentials[name][:, t] = v[name]
                if name in spikes:
                    spikes[name][:, t] = z
    return NIRRun(output, spikes, potentials)


__all__ = ["DISCRETIZATIONS", "NIRRun", "simulate_nir"]
