"""``l2l-bench``: what learning costs, measured in one run, with every figure in one JSON report.

Sections (all by default; ``--sections`` picks some):

* ``gradient``: forward-only simulation, e-prop, online e-prop and BPTT gradients on one LIF network
  (same weights, same inputs; medians after a warm-up) and their ratios (``l2l.bench``);
* ``memory``: peak memory of e-prop (offline and online) and BPTT at two trial lengths, and its growth;
* ``meta``: one e-prop 2 outer iteration of ``arm_one_shot`` and ``arm_one_shot_paper``, phase by phase,
  with its matmul FLOPs and the fraction of the machine's GEMM throughput (measured in the same run);
* ``scaling``: seconds per outer iteration vs batch size, network size and trial length (log-log fits).

``l2l-bench meta`` times one outer iteration of any experiment; ``l2l-bench alignment`` runs the gradient
alignment study.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from l2l import __version__
from l2l.allocator import keep_freed_memory
from l2l.bench import DEFAULT, QUICK, environment, memory_growth, run_benchmark
from l2l.command_line import CommandParser
from l2l.device import resolve_device
from l2l.outer_loop.app.checks import check_trial_memory, trial_bytes
from l2l.outer_loop.app.compose import CONFIG_DIR
from l2l.outer_loop.app.composition_errors import composition_message
from l2l.outer_loop.bench.profile_meta import format_profile, profile_meta
from l2l.outer_loop.bench.scaling import format_scaling, plot_scaling, run_scaling


def alignment_main(argv: list[str]) -> int:
    """``l2l-bench alignment``: the gradient alignment study; writes alignment.json and alignment.png."""
    from l2l.alignment import plot_alignment, run_alignment

    parser = CommandParser(prog="l2l-bench alignment", description="cosine to BPTT per layer and rule")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--out", default=".", help="directory for alignment.json and alignment.png")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--hidden", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args(argv)
    for key in ("steps", "hidden", "batch"):
        parser.require_at_least(f"--{key}", getattr(args, key), 1)
    if any(d < 1 for d in args.depths):
        parser.error(f"--depths={args.depths} is not allowed: every depth must be >= 1")
    for seed in args.seeds:
        parser.require_seed("--seeds", seed)
    try:
        depth = max(args.depths)
        check_trial_memory(f"--batch={args.batch}, --steps={args.steps}, --hidden={args.hidden}, --depths={depth}",
                           trial_bytes(args.batch, args.steps, args.hidden, 10, depth))
    except ValueError as error:
        parser.error(str(error))
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
    parser = CommandParser(prog="l2l-bench meta", description="time one e-prop 2 outer iteration by phase")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. outer.batch_size=32 outer.device=cuda")
    parser.add_argument("--experiment", default="arm_one_shot", help="a mode=meta experiment (default arm_one_shot)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    parser.require_at_least("--iterations", args.iterations, 1)
    parser.require_at_least("--threads", args.threads, 0)
    experiments = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
    if args.experiment not in experiments:
        parser.error(f"--experiment={args.experiment!r} is not allowed: choose one of {experiments}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        report = profile_meta(args.experiment, args.overrides, iterations=args.iterations)
    except ValueError as error:
        parser.error(" ".join(str(error).split()))
    except (HydraException, OmegaConfBaseException) as error:
        parser.error(composition_message(error))
    print(json.dumps(report, indent=2) if args.json else format_profile(report))
    return 0


SECTIONS = ("gradient", "memory", "meta", "scaling")
META_EXPERIMENTS = ("arm_one_shot", "arm_one_shot_paper")
QUICK_META = ["task.n_steps=20", "network.n_hidden=8", "error_module.n_hidden=8", "error_module.code_neurons=5",
              "outer.batch_size=2"]
"""``--quick`` meta and scaling: the ``smoke`` experiment shrunk to seconds (checks the tool, not the machine)."""


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "alignment":
        return alignment_main(argv[1:])
    if argv and argv[0] == "meta":
        return meta_main(argv[1:])
    parser = CommandParser(
        prog="l2l-bench", description=__doc__.splitlines()[0],
        epilog="`l2l-bench alignment --help`: the gradient alignment study (cosine to BPTT per layer); "
               "`l2l-bench meta --help`: one e-prop 2 outer iteration of any experiment, timed by phase.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s (l2l) {__version__}")
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
    parser.require_at_least("--threads", args.threads, 0)
    try:
        check_trial_memory(f"--batch={sizes['batch']}, --steps={long_steps} (--long-steps), --hidden={sizes['hidden']}",
                           trial_bytes(sizes["batch"], long_steps, sizes["hidden"], sizes["n_in"]))
    except ValueError as error:
        parser.error(str(error))
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
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        if "scaling" in report:
            plot_scaling(report["scaling"], str(out / "scaling.png"))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def format_report(report: dict) -> str:
    """The report as short tables for the terminal."""
    lines = []
    env = report["environment"]
    if env.get("native"):
        lines.append(env["native"])
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
        lines += [format_profile(r) for r in report["meta"].values()]
    if "scaling" in report:
        lines.append(format_scaling(report["scaling"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
