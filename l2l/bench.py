"""What the core learning rules cost: the ``gradient`` and ``memory`` sections of ``l2l-bench``.

``gradient``: forward-only simulation, e-prop, online e-prop and BPTT gradients on one LIF network (same
weights, same inputs; medians after a warm-up) and their ratios; ``memory``: peak memory of e-prop (offline
and online) and BPTT at two trial lengths, and its growth. The command itself (with the e-prop 2 sections,
which time app-level objects) is ``l2l.outer_loop.bench.cli``.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from l2l.memory import peak_memory_bytes
from l2l.native import native_status
from l2l.network import RecurrentNetwork
from l2l.rules import BPTT, EProp, OnlineEProp, SeparableLoss

DEFAULT = {"batch": 16, "steps": 500, "n_in": 20, "hidden": 256, "n_out": 2}
QUICK = {"batch": 4, "steps": 100, "n_in": 20, "hidden": 64, "n_out": 2}


def _timed(fn: Callable[[], object], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(fn: Callable[[], object], repeats: int, device: str) -> dict:
    """Warm-up call, then ``repeats`` timed calls and one memory measurement."""
    fn()
    times = [_timed(fn, device) for _ in range(repeats)]
    return {"median_s": statistics.median(times), "times_s": times, "peak_memory_bytes": peak_memory_bytes(fn, device)}


def run_benchmark(batch: int, steps: int, n_in: int, hidden: int, n_out: int, repeats: int = 5,
                  device: str = "cpu", seed: int = 0, progress: bool = True) -> dict:
    """Time forward-only, BPTT and e-prop (random feedback) on one LIF network; returns the JSON report."""
    torch.manual_seed(seed)
    network = RecurrentNetwork(n_in, hidden, n_out, cell="lif").to(device)
    g = torch.Generator().manual_seed(seed)
    inputs = (torch.rand(batch, steps, n_in, generator=g) < 0.05).float().to(device)  # 50 Hz Poisson input
    target = torch.randn(batch, steps, n_out, generator=g).to(device)

    loss = mse_loss(target)  # a sum over time: the online rule takes it too

    def forward() -> None:
        with torch.no_grad():
            network.run(inputs)

    eprop, online, bptt = EProp("random"), OnlineEProp("random"), BPTT()
    online.feedback = eprop.feedback  # the same random B
    modes = {
        "forward": forward,
        "eprop": lambda: eprop.gradients(network, inputs, loss),
        "eprop_online": lambda: online.gradients(network, inputs, loss),
        "bptt": lambda: bptt.gradients(network, inputs, loss),
    }
    results = {}
    for name, fn in modes.items():
        if progress:
            print(f"l2l-bench: {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(fn, repeats, device)
    with torch.no_grad():
        rate = network.run(inputs).layers[0].z.mean().item() * 1000.0
    med = {k: v["median_s"] for k, v in results.items()}
    return {
        "config": {"cell": "lif", "batch": batch, "steps": steps, "n_in": n_in, "hidden": hidden, "n_out": n_out,
                   "repeats": repeats, "seed": seed, "mean_rate_hz": rate},
        "environment": {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
                        "machine": platform.machine(), "python": platform.python_version()},
        "results": results,
        "ratios": {
            "eprop_over_bptt": med["eprop"] / med["bptt"],
            "eprop_over_forward": med["eprop"] / med["forward"],
            "bptt_over_forward": med["bptt"] / med["forward"],
            "eprop_online_over_forward": med["eprop_online"] / med["forward"],
        },
    }


def mse_loss(target: torch.Tensor) -> SeparableLoss:
    """0.5·mean((y − target)²) over (B, T, n_out), as a sum over time (for the online rule too)."""
    return SeparableLoss(lambda y, s: 0.5 * ((y - target[:, s]) ** 2).sum() / target.numel())


def memory_growth(batch: int, n_in: int, hidden: int, n_out: int, steps: tuple[int, int] = (500, 5000),
                  device: str = "cpu", seed: int = 0, chunk: int = 50, repeats: int = 3,
                  progress: bool = True) -> dict:
    """Peak memory of online e-prop, e-prop and BPTT at two trial lengths; growth = peak(long)/peak(short) − 1."""
    torch.manual_seed(seed)
    network = RecurrentNetwork(n_in, hidden, n_out, cell="lif").to(device)
    rules = {"eprop_online": OnlineEProp("random", chunk=chunk), "eprop": EProp("random"), "bptt": BPTT()}
    rules["eprop_online"].feedback = rules["eprop"].feedback
    peaks: dict[str, dict[int, int | None]] = {name: {} for name in rules}
    for length in steps:
        g = torch.Generator().manual_seed(seed)
        inputs = (torch.rand(batch, length, n_in, generator=g) < 0.05).float().to(device)
        target = torch.randn(batch, length, n_out, generator=g).to(device)
        loss = mse_loss(target)
        for name, rule in rules.items():
            if progress:
                print(f"l2l-bench: memory {name} T={length} ...", file=sys.stderr, flush=True)
            rule.gradients(network, inputs, loss)  # warm-up: allocator and lazy initialization
            # the resident-set peak of one call varies by a few MiB with the heap's state: median of `repeats`
            measured = [peak_memory_bytes(lambda r=rule, x=inputs, f=loss: r.gradients(network, x, f), device)
                        for _ in range(repeats)]
            peaks[name][length] = None if None in measured else int(statistics.median(measured))
    short, long = steps
    growth = {name: (p[long] / p[short] - 1.0) if p[short] and p[long] is not None else None
              for name, p in peaks.items()}
    return {"config": {"batch": batch, "n_in": n_in, "hidden": hidden, "n_out": n_out, "steps": list(steps),
                       "chunk": chunk, "seed": seed, "device": device, "repeats": repeats},
            "peak_memory_bytes": {name: {str(k): v for k, v in p.items()} for name, p in peaks.items()},
            "growth": growth}


def environment(device: str) -> dict:
    """Where the numbers come from."""
    return {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None,
            "native": native_status(), "timestamp": time.strftime("%Y-%m-%d %H:%M:%S")}
