"""``l2l-bench meta``: where the time of one meta-training iteration goes, and how close it is to the machine.

One outer iteration of an experiment (default ``arm_one_shot``) is timed phase by phase (sampling the
tasks, the learner's demonstration trial, the error module, the e-prop update, the test trial, the
loss, the backward pass through all of it, the optimizer step); its floating-point operations are
counted with ``torch.utils.flop_counter`` (matrix products, forward and backward), phase by phase, and
compared with the machine's matrix-multiply throughput measured in the same run.

The bound of a phase is its matrix-multiply FLOPs at that measured GEMM rate: the time it would take if every
product ran as fast as a large square one; the report gives each phase's and the iteration's time as a
multiple of its bound. The fused spiking trial's recurrent products (C++ kernels) are counted as the dense
products they replace: forward 2·T·B·n² (W z^{t-1} at every step; the kernel gathers only the columns of the
neurons that spiked, so it may beat its bound), backward 2·(T−1)·B·n² for the adjoint Wᵀ δv^{t+1} (0 when the
recurrent paths are cut) and the weight gradient Σ_t δv^t ⊗ z^{t-1} 2·T·B·n² (summed over the spikes only, so it
beats its bound); likewise a layer's input current from spikes (:mod:`l2l.spike_input`) 2·T·B·m·n forward and
its weight gradient 2·T·B·m·n.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

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


@functools.cache
def _register_fused_trial_flops() -> None:
    """Teach the FLOP counter the C++ fused-trial operators (once; nothing when they are not built)."""
    from l2l.native import spiking_ops

    if spiking_ops() is None:
        return

    @register_flop_formula(torch.ops.l2l_spiking.forward)
    def forward_flops(current, *args: Any, **kwargs: Any) -> int:
        steps, batch, n = current
        return 2 * steps * batch * n * n

    @register_flop_formula(torch.ops.l2l_spiking.backward)
    def backward_flops(w, z, excess, refractory, g_z, g_e, g_v, g_a, g_zin, alpha, v_th, gamma, kind, rho, beta,
                       recurrent: bool, want_total_z: bool, **kwargs: Any) -> int:
        steps, batch, n = excess
        return 2 * (steps - 1) * batch * n * n if recurrent else 0   # no δv after the last step

    @register_flop_formula(torch.ops.l2l_spiking.spike_current)
    def spike_current_flops(x, w_t, **kwargs: Any) -> int:
        steps, batch, m = x
        return 2 * steps * batch * m * w_t[1]

    @register_flop_formula(torch.ops.l2l_spiking.weight_gradient)
    def weight_gradient_flops(delta_v, z_prev, per_task: bool, **kwargs: Any) -> int:
        steps, batch, n = delta_v
        return 2 * steps * batch * n * z_prev[-1]


class _FlopPhases(PhaseTimer):
    """A PhaseTimer whose clock is the FLOP counter's running total: FLOPs per phase, the same bookkeeping."""

    def __init__(self, counter: FlopCounterMode) -> None:
        super().__init__()
        self.counter = counter

    def now(self) -> float:
        return float(self.counter.get_total_flops())


def phase_rows(begin: float, sampled: float, end: float, seconds: dict[str, float]) -> dict[str, float]:
    """One iteration's phases (PHASES and "total") from the clock readings around sampling and the outer step
    and the phase totals of a PhaseTimer (seconds, or FLOPs with :class:`_FlopPhases`)."""
    inner = {name: seconds.get(name, 0.0) for name in ("demo trial", "error module", "update", "test trial")}
    coding = seconds.get("sample tasks", 0.0)      # the meta-learner's coded targets, drawn in its forward
    row = {"sample tasks": sampled - begin + coding, **inner,
           "backward": seconds["backward"], "optimizer step": seconds["optimizer step"], "total": end - begin}
    # the outer loss and the finiteness checks: what the timed phases leave of the iteration
    row["loss"] = row["total"] - sum(v for k, v in row.items() if k != "total")
    return row


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
        if i >= warmup:
            rows.append(phase_rows(begin, sampled, end, timer.seconds))
    _register_fused_trial_flops()
    with FlopCounterMode(display=False) as counter, _FlopPhases(counter) as flop_timer:
        begin = flop_timer.now()
        episode = meta.family.sample(cfg.outer.batch_size, generator).to(device)
        sampled = flop_timer.now()
        outer_step(meta, optimizer, episode, generator, cfg.outer.grad_clip)
        end = flop_timer.now()
    flop_rows = phase_rows(begin, sampled, end, flop_timer.seconds)
    flops = flop_rows["total"]
    total = statistics.median(r["total"] for r in rows)
    gemm = gemm_flops_per_second(device=str(device))
    breakdown = {name: statistics.median(r[name] for r in rows) for name in PHASES}
    return {
        "experiment": experiment, "overrides": list(overrides or []), "device": str(device),
        "threads": torch.get_num_threads(), "batch_size": cfg.outer.batch_size, "n_steps": cfg.task.n_steps,
        "learner": list(meta.learner.sizes), "error_module": cfg.error_module.n_hidden, "iterations_timed": iterations,
        "seconds_per_iteration": total,
        "breakdown_s": breakdown,
        "breakdown_flops": {name: flop_rows[name] for name in PHASES},
        "bound_s": {name: flop_rows[name] / gemm for name in PHASES},
        "matmul_flops_per_iteration": flops, "achieved_flops_per_s": flops / total,
        "gemm_flops_per_s": gemm, "fraction_of_gemm": flops / total / gemm,
        "bound_seconds_per_iteration": flops / gemm, "multiple_of_bound": total * gemm / flops if flops else None,
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def format_profile(report: dict[str, Any]) -> str:
    """The report as a small table for the terminal: per phase seconds, share, GFLOP and the multiple of its bound."""
    total = report["seconds_per_iteration"]
    lines = [f"{report['experiment']}: {total:.3f} s per outer iteration ({report['device']}, "
             f"{report['threads']} threads, batch {report['batch_size']}, T {report['n_steps']})",
             f"  {'phase':<15} {'seconds':>9} {'share':>7} {'GFLOP':>8} {'x bound':>8}"]
    for name, seconds in report["breakdown_s"].items():
        bound = report.get("bound_s", {}).get(name, 0.0)
        gflop = report.get("breakdown_flops", {}).get(name, 0.0) / 1e9
        multiple = f"{seconds / bound:8.1f}" if bound > 0 else f"{'-':>8}"
        lines.append(f"  {name:<15} {seconds:9.4f} {100 * seconds / total:6.1f}% {gflop:8.2f} {multiple}")
    lines.append(f"  matmul FLOPs {report['matmul_flops_per_iteration']:.3g} per iteration: "
                 f"{report['achieved_flops_per_s'] / 1e9:.2f} GFLOP/s of {report['gemm_flops_per_s'] / 1e9:.1f} "
                 f"GFLOP/s measured GEMM ({100 * report['fraction_of_gemm']:.1f} %); the bound "
                 f"{report['bound_seconds_per_iteration']:.3f} s, the iteration {report['multiple_of_bound']:.2f}x it")
    return "\n".join(lines)
