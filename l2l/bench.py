"""``l2l-bench``: e-prop gradient vs BPTT gradient vs forward-only simulation on one LIF network.

All three are timed in the same run on the same network and inputs (medians of repeated
runs after a warm-up), with the peak memory of each; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from l2l.device import resolve_device
from l2l.memory import peak_memory_bytes
from l2l.network import RecurrentNetwork
from l2l.rules import BPTT, EProp

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

    def loss(y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((y - target) ** 2).mean()

    def forward() -> None:
        with torch.no_grad():
            network.run(inputs)

    eprop, bptt = EProp("random"), BPTT()
    modes = {
        "forward": forward,
        "eprop": lambda: eprop.gradients(network, inputs, loss),
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
        },
    }


def alignment_main(argv: list[str]) -> int:
    """``l2l-bench alignment``: the gradient alignment study; writes alignment.json and alignment.png."""
    from pathlib import Path

    from l2l.alignment import plot_alignment, run_alignment

    parser = argparse.ArgumentParser(prog="l2l-bench alignment", description="cosine to BPTT per layer and rule")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--out", default=".", help="directory for alignment.json and alignment.png")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--hidden", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args(argv)
    for key in ("steps", "hidden", "batch"):
        if getattr(args, key) < 1:
            parser.error(f"--{key}={getattr(args, key)} is not allowed: it must be >= 1")
    if any(d < 1 for d in args.depths):
        parser.error(f"--depths={args.depths} is not allowed: every depth must be >= 1")
    report = run_alignment(args.depths, args.seeds, args.batch, args.steps, hidden=args.hidden)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "alignment.json").write_text(json.dumps(report, indent=2))
    plot_alignment(report, str(out / "alignment.png"))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, per_depth in report["table"].items():
            cells = "  ".join(f"{d}: " + "/".join(f"{m:.2f}" for m in e["mean"]) for d, e in per_depth.items())
            print(f"  {name:<12} {cells}")
        print(f"wrote {out / 'alignment.json'} and {out / 'alignment.png'}")
    return 0


def meta_main(argv: list[str]) -> int:
    """``l2l-bench meta``: seconds per meta-training iteration, phase by phase, FLOPs and GEMM fraction."""
    from outer_loop.profile_meta import format_profile, profile_meta  # the app layer, imported only here

    parser = argparse.ArgumentParser(prog="l2l-bench meta", description="time one e-prop 2 outer iteration by phase")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. outer.batch_size=32 outer.device=cuda")
    parser.add_argument("--experiment", default="arm_one_shot", help="a mode=meta experiment (default arm_one_shot)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = profile_meta(args.experiment, args.overrides, iterations=args.iterations)
    print(json.dumps(report, indent=2) if args.json else format_profile(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "alignment":
        return alignment_main(argv[1:])
    if argv and argv[0] == "meta":
        return meta_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="l2l-bench", description=__doc__.splitlines()[0],
        epilog="`l2l-bench alignment --help`: the gradient alignment study (cosine to BPTT per layer); "
               "`l2l-bench meta --help`: one e-prop 2 outer iteration timed by phase, FLOPs and GEMM fraction.",
    )
    parser.add_argument("--quick", action="store_true", help=f"small sizes {QUICK} instead of {DEFAULT}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one, else cpu) | cpu | cuda[:N]")
    for key in DEFAULT:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else DEFAULT)
    sizes.update({k: getattr(args, k) for k in DEFAULT if getattr(args, k) is not None})
    for key, value in {**sizes, "repeats": args.repeats}.items():
        if value < 1:
            parser.error(f"--{key.replace('_', '-')}={value} is not allowed: it must be >= 1")
    try:
        device = str(resolve_device(args.device, "--device"))
    except ValueError as error:
        parser.error(str(error))
    report = run_benchmark(**sizes, repeats=args.repeats, device=device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = report["config"]
        print(f"LIF B={c['batch']} T={c['steps']} n_in={c['n_in']} n={c['hidden']} n_out={c['n_out']} "
              f"on {device} ({report['environment']['threads']} threads), rate {c['mean_rate_hz']:.1f} Hz")
        for name, r in report["results"].items():
            mem = r["peak_memory_bytes"]
            mem_text = f"{mem / 2**20:8.1f} MiB" if mem is not None else "     n/a"
            print(f"  {name:<8} median {r['median_s'] * 1000:9.2f} ms   peak memory {mem_text}")
        for name, value in report["ratios"].items():
            print(f"  {name:<20} {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
