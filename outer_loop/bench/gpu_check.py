"""``make gpu-check``: everything l2l can measure on a CUDA GPU, in one command and one JSON.

    python -m l2l.outer_loop.bench.gpu_check [--out gpu_check.json] [--iterations 3] [--skip-tests]

On a machine where torch sees a CUDA device: (1) the tests that use one (``pytest -m cuda``: float64 on the GPU
against the CPU for the network, the e-prop and BPTT gradients, one e-prop 2 outer iteration, and the published
code's iteration from the reference fixture); (2) the reference fixture on the GPU in float64, its largest relative
error; (3) ``l2l-bench meta`` on the GPU at the small reference protocol (``arm_one_shot_reference``) and at the
paper's sizes (``arm_one_shot_paper``): seconds per outer iteration by phase, matmul FLOPs and the GPU's measured
GEMM rate; (4) the device, driver and torch versions. All of it goes into one JSON (``--out``). Without a CUDA
device it stops in one line and measures nothing: a GPU number is never made up from a CPU run.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from l2l import __version__
from l2l.command_line import CommandParser

EXPERIMENTS = ("arm_one_shot_reference", "arm_one_shot_paper")
"""The small reference protocol and the paper's sizes."""


def environment() -> dict[str, Any]:
    """The GPU, its driver/CUDA and torch versions, the host."""
    props = torch.cuda.get_device_properties(0)
    return {"l2l": __version__, "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0), "memory_gib": round(props.total_memory / 2**30, 1),
            "devices": torch.cuda.device_count(), "python": platform.python_version(), "host": platform.node(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def cuda_tests(root: Path) -> dict[str, Any]:
    """``pytest -m cuda`` on the source checkout's tests: exit code and pytest's summary line."""
    tests = root / "tests"
    if not tests.is_dir():
        return {"ran": False, "why": f"{tests} not found (the tests are in the source checkout)"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", str(tests / "test_cuda.py")],
                          capture_output=True, text=True, cwd=root, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"ran": True, "exit_code": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:]}


def fixture_on_gpu() -> dict[str, Any]:
    """The published iteration reproduced on the GPU in float64 (both inner backends)."""
    from l2l.outer_loop.app.reference_fixture import build_fixture_meta, default_fixture_path, load_fixture, reproduce

    path = default_fixture_path()
    if path is None:
        return {"ran": False, "why": "the fixture is in tests/data of the source checkout"}
    fixture = load_fixture(path)
    out: dict[str, Any] = {"ran": True}
    for backend in ("explicit", "higher"):
        comparison = reproduce(build_fixture_meta(fixture, "reference", backend), fixture, "cuda")
        out[backend] = {"ok": comparison.ok(), "max_rel_err": comparison.max_rel_err,
                        "spikes_equal": all(comparison.spikes_equal.values())}
    return out


def bench(iterations: int) -> dict[str, Any]:
    """``l2l-bench meta`` on the GPU at both sizes."""
    from l2l.outer_loop.bench.profile_meta import profile_meta

    return {name: profile_meta(name, ["outer.device=cuda"], iterations=iterations) for name in EXPERIMENTS}


def main(argv: list[str] | None = None) -> int:
    """Entry point: writes the JSON, prints its summary."""
    parser = CommandParser(prog="python -m l2l.outer_loop.bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON to write (default gpu_check.json)")
    parser.add_argument("--iterations", type=int, default=3, help="timed outer iterations per size (median)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out pytest -m cuda")
    args = parser.parse_args(argv)
    parser.require_at_least("--iterations", args.iterations, 1)
    if not torch.cuda.is_available():
        parser.exit(2, "gpu_check: error: torch sees no CUDA device here: nothing is measured (run it on a GPU "
                       "machine)\n")
    root = Path(__file__).resolve().parents[2]
    report: dict[str, Any] = {"environment": environment()}
    report["tests"] = {"ran": False, "why": "--skip-tests"} if args.skip_tests else cuda_tests(root)
    report["reference_fixture"] = fixture_on_gpu()
    report["bench_meta"] = bench(args.iterations)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    env = report["environment"]
    print(f"gpu_check: {env['device']} (torch {env['torch']}, CUDA {env['cuda']})")
    if report["tests"]["ran"]:
        print(f"  pytest -m cuda: {report['tests']['summary']}")
    fixture = report["reference_fixture"]
    if fixture["ran"]:
        print(f"  reference fixture in float64: explicit {fixture['explicit']['max_rel_err']:.2e}, "
              f"higher {fixture['higher']['max_rel_err']:.2e}")
    for name, row in report["bench_meta"].items():
        print(f"  {name}: {row['seconds_per_iteration']:.4f} s per outer iteration "
              f"({row['fraction_of_gemm']:.1%} of the GPU's GEMM rate)")
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
