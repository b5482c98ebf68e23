"""``l2l-bench meta``: where the time of one meta-training iteration goes, and how close it is to the machine.

One outer iteration of an experiment (default ``arm_one_shot``) is timed phase by phase (sampling the
tasks, the learner's demonstration trial, the error module, the e-prop update, the test trial, the
loss, the backward pass through all of it, the optimizer step); its floating-point operations are
counted with ``torch.utils.flop_counter`` (matrix products, forward and backward) and compared with the
machine's matrix-multiply throughput measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from l2l.device import resolve_device
from l2l.outer_loop.algorithm.outer_step import outer_step
from l2l.outer_loop.optimizers import make_optimizer
from l2l.timing import PhaseTimer

PHASES = ("sample tasks", "demo trial", "error module", "update", "test trial", "loss", "backward", "optimizer step")


def gemm_flops_per_second(size: int = 1024, repeats: int = 10, device: str = "cpu") -> float:
    """Measured float32 matrix-multiply throughput (FLOP/s) on (size × size) @ (size × size)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.matmul(a, b)
    timer = PhaseTimer(synchronize=device != "cpu")
    start = timer.now()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2.0 * size**3 * repeats / (timer.now() - start)


def profile_meta(experiment: str = "arm_one_shot", overrides: list[str] | None = None, iterations: int = 3,
                 warmup: int = 1) -> dict[str, Any]:
    """Median seconds per phase over ``iterations`` outer iterations (after ``warmup``), FLOPs and GEMM fraction."""
    from l2l.outer_loop.app.build import build_meta, build_task
    from l2l.outer_loop.app.compose import compose_config
    from l2l.outer_loop.app.train import preflight

    cfg = compose_config([f"experiment={experiment}", *(overrides or [])])
    if cfg.mode != "meta":
        raise ValueError(f"experiment={experiment!r} is a mode={cfg.mode!r} experiment: l2l-bench meta needs mode=meta")
    preflight(cfg)               # what l2l-train refuses at start, refused here in the same words
    device = resolve_device(cfg.outer.device, "outer.device")
    torch.manual_seed(cfg.seed)
    meta = build_meta(cfg, build_task(cfg.task)).to(device)
    optimizer = make_optimizer(cfg.outer.optimizer, meta.parameters(), cfg.outer.lr, key="outer.optimizer")
    generator = torch.Generator().manual_seed(int(cfg.seed) + 1)
    rows: list[dict[str, float]] = []
    for i in range(warmup + iterations):
        with PhaseTimer(synchronize=device.type != "cpu") as timer:
            begin = timer.now()
            episode = meta.family.sample(cfg.outer.batch_size, generator).to(device)
            sampled = timer.now()
            outer_step(meta, optimizer, episode, generator, cfg.outer.grad_clip)
            end = timer.now()
        seconds = timer.seconds
        inner = {name: seconds.get(name, 0.0) for name in ("demo trial", "error module", "update", "test trial")}
        coding = seconds.get("sample tasks", 0.0)      # the meta-learner's coded targets, drawn in its forward
        row = {"sample tasks": sampled - begin + coding, **inner,
               "backward": seconds["backward"], "optimizer step": seconds["optimizer step"], "total": end - begin}
        # the outer loss and the finiteness checks: what the timed phases leave of the iteration
        row["loss"] = row["total"] - sum(v for k, v in row.items() if k != "total")
        if i >= warmup:
            rows.append(row)
    with FlopCounterMode(display=False) as counter:
        step = meta(episode, generator)
        step.loss.backward()
    flops = float(counter.get_total_flops())
    total = statistics.median(r["total"] for r in rows)
    gemm = gemm_flops_per_second(device=str(device))
    return {
        "experiment": experiment, "overrides": list(overrides or []), "device": str(device),
        "threads": torch.get_num_threads(), "batch_size": cfg.outer.batch_size, "n_steps": cfg.task.n_steps,
        "learner": list(meta.learner.sizes), "error_module": cfg.error_module.n_hidden, "iterations_timed": iterations,
        "seconds_per_iteration": total,
        "breakdown_s": {name: statistics.median(r[name] for r in rows) for name in PHASES},
        "matmul_flops_per_iteration": flops, "achieved_flops_per_s": flops / total,
        "gemm_flops_per_s": gemm, "fraction_of_gemm": flops / total / gemm,
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def format_profile(report: dict[str, Any]) -> str:
    """The report as a small table for the terminal."""
    total = report["seconds_per_iteration"]
    lines = [f"{report['experiment']}: {total:.3f} s per outer iteration ({report['device']}, "
             f"{report['threads']} threads, batch {report['batch_size']}, T {report['n_steps']})"]
    for name, seconds in report["breakdown_s"].items():
        lines.append(f"  {name:<15} {seconds:8.4f} s  {100 * seconds / total:5.1f} %")
    lines.append(f"  matmul FLOPs {report['matmul_flops_per_iteration']:.3g} per iteration: "
                 f"{report['achieved_flops_per_s'] / 1e9:.2f} GFLOP/s of {report['gemm_flops_per_s'] / 1e9:.1f} "
                 f"GFLOP/s measured GEMM ({100 * report['fraction_of_gemm']:.1f} %)")
    return "\n".join(lines)
