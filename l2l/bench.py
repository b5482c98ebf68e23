"""``l2l-bench``: what learning costs, measured in one run, with every figure in one JSON report.

Sections (all by default; ``--sections`` picks some):

* ``gradient``: forward-only simulation, e-prop, online e-prop and BPTT gradients on one LIF network
  (same weights, same inputs; medians after a warm-up) and their ratios;
* ``memory``: peak memory of e-prop (offline and online) and BPTT at two trial lengths, and its growth;
* ``meta``: one e-prop 2 outer iteration of ``arm_one_shot`` and ``arm_one_shot_paper``, phase by phase,
  with its matmul FLOPs and the fraction of the machine's GEMM throughput (measured in the same run);
* ``scaling``: seconds per outer iteration vs batch size, network size and trial length (log-log fits).
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


SECTIONS = ("gradient", "memory", "meta", "scaling")
META_EXPERIMENTS = ("arm_one_shot", "arm_one_shot_paper")
QUICK_META = ["task.n_steps=20", "network.n_hidden=8", "error_module.n_hidden=8", "error_module.code_neurons=5",
              "outer.batch_size=2"]
"""``--quick`` meta and scaling: the ``smoke`` experiment shrunk to seconds (checks the tool, not the machine)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "alignment":
        return alignment_main(argv[1:])
    if argv and argv[0] == "meta":
        return meta_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="l2l-bench", description=__doc__.splitlines()[0],
        epilog="`l2l-bench alignment --help`: the gradient alignment study (cosine to BPTT per layer); "
               "`l2l-bench meta --help`: one e-prop 2 outer iteration of any experiment, timed by phase.",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"small sizes {QUICK} instead of {DEFAULT}; meta and scaling on a tiny smoke config")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--out", default=None, help="also write bench.json (and scaling.png) into this directory")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--long-steps", type=int, default=None,
                        help="the long trial of the memory section (default 10 x --steps)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one, else cpu) | cpu | cuda[:N]")
    for key in DEFAULT:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else DEFAULT)
    sizes.update({k: getattr(args, k) for k in DEFAULT if getattr(args, k) is not None})
    long_steps = args.long_steps if args.long_steps is not None else 10 * sizes["steps"]
    for key, value in {**sizes, "repeats": args.repeats, "long_steps": long_steps}.items():
        if value < 1:
            parser.error(f"--{key.replace('_', '-')}={value} is not allowed: it must be >= 1")
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--sections={args.sections!r} is not allowed: choose from {', '.join(SECTIONS)}")
    try:
        device = str(resolve_device(args.device, "--device"))
    except ValueError as error:
        parser.error(str(error))
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report: dict = {"environment": environment(device)}
    if "gradient" in sections:
        report["gradient"] = run_benchmark(**sizes, repeats=args.repeats, device=device)
    if "memory" in sections:
        report["memory"] = memory_growth(sizes["batch"], sizes["n_in"], sizes["hidden"], sizes["n_out"],
                                         (sizes["steps"], long_steps), device)
    if "meta" in sections or "scaling" in sections:
        from outer_loop.profile_meta import profile_meta  # the app layer, imported only here
        from outer_loop.scaling import plot_scaling, run_scaling

        overrides = [f"outer.device={device}"] + (QUICK_META if args.quick else [])
        experiments = ("smoke",) if args.quick else META_EXPERIMENTS
        if "meta" in sections:
            report["meta"] = {}
            for experiment in experiments:
                print(f"l2l-bench: meta {experiment} ...", file=sys.stderr, flush=True)
                slow = experiment == "arm_one_shot_paper"
                report["meta"][experiment] = profile_meta(experiment, overrides, iterations=1 if slow else 3)
        if "scaling" in sections:
            values = {"batch_size": [2, 4], "network_size": [8, 16], "trial_length": [20, 40]} if args.quick else None
            report["scaling"] = run_scaling("smoke" if args.quick else "arm_one_shot", values=values,
                                            iterations=1 if args.quick else 3, warmup=1, overrides=overrides)
    if args.out is not None:
        from pathlib import Path

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        if "scaling" in report:
            plot_scaling(report["scaling"], str(out / "scaling.png"))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def environment(device: str) -> dict:
    """Where the numbers come from."""
    return {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None,
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S")}


def format_report(report: dict) -> str:
    """The report as short tables for the terminal."""
    lines = []
    env = report["environment"]
    if "gradient" in report:
        c = report["gradient"]["config"]
        lines.append(f"gradient: LIF B={c['batch']} T={c['steps']} n_in={c['n_in']} n={c['hidden']} "
                     f"n_out={c['n_out']} on {env['device']} ({env['threads']} threads), "
                     f"rate {c['mean_rate_hz']:.1f} Hz")
        for name, r in report["gradient"]["results"].items():
            mem = r["peak_memory_bytes"]
            mem_text = f"{mem / 2**20:8.1f} MiB" if mem is not None else "     n/a"
            lines.append(f"  {name:<13} median {r['median_s'] * 1000:9.2f} ms   peak memory {mem_text}")
        for name, value in report["gradient"]["ratios"].items():
            lines.append(f"  {name:<26} {value:.3f}")
    if "memory" in report:
        short, long = report["memory"]["config"]["steps"]
        lines.append(f"memory: peak at T={short} and T={long}, growth")
        for name, peaks in report["memory"]["peak_memory_bytes"].items():
            a, b, growth = peaks[str(short)], peaks[str(long)], report["memory"]["growth"][name]
            text = "n/a" if growth is None else f"{100 * growth:+.1f} %"
            lines.append(f"  {name:<13} {(a or 0) / 2**20:8.1f} MiB -> {(b or 0) / 2**20:8.1f} MiB   {text}")
    if "meta" in report:
        from outer_loop.profile_meta import format_profile

        lines += [format_profile(r) for r in report["meta"].values()]
    if "scaling" in report:
        from outer_loop.scaling import format_scaling

        lines.append(format_scaling(report["scaling"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
