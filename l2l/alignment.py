"""Gradient alignment study: how close each learning rule comes to the BPTT gradient, per layer.

On a regression task with leaky spiking (LIF) units, for stacks of depth 1, 2, 3, the cosine
similarity between each rule's gradient of a layer's weights (W_in and W_rec together) and BPTT's:
layer-local e-prop (symmetric feedback at the top, random broadcast to lower layers, no deep
traces), deep e-prop, the m-order rules with orders 1 and 2, and RTRL. Mean ± std over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import torch

from l2l.cells import LIFParameters
from l2l.network import RecurrentNetwork
from l2l.rules import BPTT, RTRL, DeepEProp, LearningRule, MOrder

METHODS: dict[str, Callable[[], LearningRule]] = {
    "eprop_local": lambda: DeepEProp("symmetric", local_feedback="random", across_layers=False),
    "deep_eprop": lambda: DeepEProp("symmetric"),
    "order1": lambda: MOrder(1),
    "order2": lambda: MOrder(2),
    "rtrl": lambda: RTRL(),
}


def alignment_problem(depth: int, seed: int, batch: int, steps: int, n_in: int, hidden: int):
    """A float64 LIF stack, 50 Hz Poisson inputs and a sum-of-sines target; returns (network, inputs, loss)."""
    torch.manual_seed(seed)
    params = LIFParameters(tau_m=20.0, v_th=0.6, n_ref=2)
    network = RecurrentNetwork(n_in, [hidden] * depth, 1, cell="lif", cell_params=params, tau_out=20.0).double()
    g = torch.Generator().manual_seed(seed + 100)
    inputs = (torch.rand(batch, steps, n_in, generator=g) < 0.05).double()
    t = torch.arange(steps, dtype=torch.float64) / steps
    phases = 2 * math.pi * torch.rand(batch, 3, 1, generator=g, dtype=torch.float64)
    periods = torch.tensor([1.0, 0.5, 0.33], dtype=torch.float64).view(1, 3, 1)
    target = torch.sin(2 * math.pi * t / periods + phases).sum(1).unsqueeze(-1)

    def loss(y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((y - target) ** 2).mean()

    return network, inputs, loss


def layer_cosines(grads: dict[str, torch.Tensor], exact: dict[str, torch.Tensor], depth: int) -> list[float]:
    """Cosine similarity per layer of the concatenated (W_in, W_rec) gradients."""
    out = []
    for k in range(depth):
        a = torch.cat([grads[f"layers.{k}.{w}"].flatten() for w in ("w_in", "w_rec")])
        b = torch.cat([exact[f"layers.{k}.{w}"].flatten() for w in ("w_in", "w_rec")])
        out.append(torch.nn.functional.cosine_similarity(a, b, dim=0).item())
    return out


def run_alignment(depths: Sequence[int] = (1, 2, 3), seeds: Sequence[int] = (0, 1, 2), batch: int = 4,
                  steps: int = 80, n_in: int = 10, hidden: int = 12, progress: bool = True) -> dict:
    """The alignment table: {"table": {method: {"depth<d>": {"mean": [per layer], "std": [...]}}}, ...}."""
    from tqdm import tqdm

    jobs = [(d, s) for d in depths for s in seeds]
    raw: dict[str, dict[int, list[list[float]]]] = {m: {d: [] for d in depths} for m in METHODS}
    rates = []
    for depth, seed in tqdm(jobs, desc="alignment", disable=not progress):
        network, inputs, loss = alignment_problem(depth, seed, batch, steps, n_in, hidden)
        exact = BPTT().gradients(network, inputs, loss)
        rates.append([a.z.mean().item() * 1000 for a in exact.trial.layers])
        for name, make in METHODS.items():
            grads = make().gradients(network, inputs, loss).grads
            raw[name][depth].append(layer_cosines(grads, exact.grads, depth))
    table = {
        name: {f"depth{d}": {"mean": [statistics.mean(col) for col in zip(*rows, strict=True)],
                             "std": [statistics.pstdev(col) for col in zip(*rows, strict=True)]}
               for d, rows in per_depth.items()}
        for name, per_depth in raw.items()
    }
    return {
        "config": {"cell": "lif", "batch": batch, "steps": steps, "n_in": n_in, "hidden": hidden,
                   "depths": list(depths), "seeds": list(seeds), "dtype": "float64"},
        "mean_rate_hz_per_layer": [statistics.mean(r[k] for r in rates if len(r) > k) for k in range(max(depths))],
        "table": table,
    }


def plot_alignment(report: dict, path: str) -> None:
    """Bar chart: one panel per depth, cosine to BPTT per layer and method (error bars: std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = report["config"]["depths"]
    methods = list(report["table"])
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 4.0), sharey=True, squeeze=False)
    width = 0.8 / len(methods)
    for ax, depth in zip(axes[0], depths, strict=True):
        for i, name in enumerate(methods):
            entry = report["table"][name][f"depth{depth}"]
            xs = [layer + (i - (len(methods) - 1) / 2) * width for layer in range(depth)]
            ax.bar(xs, entry["mean"], width, yerr=entry["std"], label=name, capsize=2)
        ax.set_xticks(range(depth), [f"layer {k + 1}" for k in range(depth)])
        ax.set_title(f"depth {depth}")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_ylim(-1.05, 1.05)
    axes[0][0].set_ylabel("cosine similarity to BPTT")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=9)
    fig.suptitle("Gradient alignment on LIF stacks (float64; mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
