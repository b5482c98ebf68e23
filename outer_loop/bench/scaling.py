"""How the time of one e-prop 2 outer iteration scales with batch size, network size and trial length.

Each axis is swept on its own, every other setting staying at the experiment's value; every point is one
call of :func:`l2l.outer_loop.bench.profile_meta.profile_meta` (median seconds per outer iteration and the phase
breakdown). Per axis the exponent k of seconds ≈ a·xᵏ is the slope of a least-squares line through
(log x, log seconds). The base experiment itself is measured once and reused for every point whose
settings equal it (batch 16, 100 neurons, 250 steps for ``arm_one_shot``).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np
import torch

from l2l.outer_loop.bench.profile_meta import profile_meta

# name -> label, unit, the config keys one value sets (all of them to that value), default values
AXES: dict[str, dict[str, Any]] = {
    "batch_size": {"label": "batch size", "unit": "tasks per outer iteration",
                   "keys": ["outer.batch_size"], "values": [4, 8, 16, 32, 64]},
    "network_size": {"label": "network size", "unit": "hidden neurons, learner and error module",
                     "keys": ["network.n_hidden", "error_module.n_hidden"], "values": [50, 100, 200, 400]},
    "trial_length": {"label": "trial length", "unit": "time steps",
                     "keys": ["task.n_steps"], "values": [100, 250, 500, 1000]},
}
_ALL_KEYS = [key for axis in AXES.values() for key in axis["keys"]]


def _check(axes: str | list[str] | tuple[str, ...] | None,
           values: dict[str, list[int]] | None) -> dict[str, list[int]]:
    """The axes to sweep, each with its sorted distinct values; ValueError naming what is wrong."""
    allowed = ", ".join(AXES)
    if axes is None:
        axes = list(AXES)
    elif isinstance(axes, str):
        axes = [axes]
    if len(axes) == 0:
        raise ValueError(f"axes=[] is not allowed: give at least one of {allowed} (or None for all)")
    for name in axes:
        if name not in AXES:
            raise ValueError(f"axes contains {name!r}, which is not an axis: allowed are {allowed}")
    values = dict(values or {})
    for name in values:
        if name not in AXES:
            raise ValueError(f"values has the key {name!r}, which is not an axis: allowed are {allowed}")
        if name not in axes:
            raise ValueError(f"values[{name!r}] is given but {name!r} is not in axes={list(axes)}")
    sweep: dict[str, list[int]] = {}
    for name in axes:
        given = values.get(name, AXES[name]["values"])
        if isinstance(given, (int, float)):
            given = [given]
        if len(given) == 0:
            raise ValueError(f"values[{name!r}]=[] is not allowed: give at least one positive integer")
        for v in given:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"values[{name!r}] contains {v!r}, which is not allowed: "
                                 f"every {AXES[name]['label']} must be a positive integer")
        sweep[name] = sorted({int(v) for v in given})
    return sweep


def _compose_base(experiment: str, overrides: list[str], points: list[dict[str, int]]) -> dict[str, Any]:
    """The experiment's values of the swept settings (and dt), read from the composed config; with ``points``
    (settings to check), each is composed and its task built first, so that an invalid value fails before
    the sweep starts (e.g. a trial length the arm's clock cannot divide)."""
    from l2l.outer_loop.app.build import build_task
    from l2l.outer_loop.app.compose import compose_config

    cfg = compose_config([f"experiment={experiment}", *overrides])
    if cfg.mode != "meta":
        raise ValueError(f"experiment={experiment!r} is a mode={cfg.mode!r} experiment: the scaling study "
                         f"needs mode=meta")
    base = {"outer.batch_size": int(cfg.outer.batch_size), "network.n_hidden": int(cfg.network.n_hidden),
            "error_module.n_hidden": int(cfg.error_module.n_hidden), "task.n_steps": int(cfg.task.n_steps)}
    fixed = _without_swept_keys(overrides)
    for point in points:
        settings = [f"{k}={v}" for k, v in {**base, **point}.items()]
        try:
            build_task(compose_config([f"experiment={experiment}", *fixed, *settings]).task)
        except Exception as error:
            changed = " ".join(f"{k}={v}" for k, v in point.items())
            raise ValueError(f"{changed} is not a valid setting of experiment={experiment!r}: {error}") from error
    return {**base, "dt": float(cfg.task.dt)}


def _without_swept_keys(overrides: list[str]) -> list[str]:
    """The overrides that do not set a swept key (those set the base values, and each point sets its own)."""
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in _ALL_KEYS]


def fit_power_law(x: list[float], seconds: list[float]) -> tuple[float, float]:
    """(exponent k, prefactor a) of seconds ≈ a·xᵏ by numpy.polyfit on the logs; NaN when under 2 distinct x."""
    if len(set(x)) < 2 or any(s <= 0 for s in seconds):
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(seconds, dtype=float)), 1)
    return float(slope), float(math.exp(intercept))


def run_scaling(experiment: str = "arm_one_shot", axes: str | list[str] | None = None,
                values: dict[str, list[int]] | None = None, iterations: int = 1, warmup: int = 1,
                progress: bool = True, overrides: list[str] | None = None,
                threads: int | None = None) -> dict[str, Any]:
    """Seconds per outer iteration of ``experiment`` along each axis of :data:`AXES` and the fitted exponents.

    ``axes``: names from AXES (None: all); ``values``: {axis: values} replacing an axis' defaults;
    ``iterations``/``warmup``: profile_meta's (median of ``iterations`` after ``warmup``); ``overrides``:
    extra config overrides applied to every point (e.g. ``outer.device=cuda``); ``threads``: torch CPU
    threads for the study (None: leave as is). Progress lines go to stderr.
    """
    sweep = _check(axes, values)
    if iterations < 1:
        raise ValueError(f"iterations={iterations} is not allowed: it must be >= 1")
    if warmup < 0:
        raise ValueError(f"warmup={warmup} is not allowed: it must be >= 0")
    overrides = list(overrides or [])
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads} is not allowed: it must be >= 1 (or None)")
        torch.set_num_threads(threads)
    try:
        return _run(experiment, sweep, iterations, warmup, progress, overrides)
    finally:
        torch.set_num_threads(previous_threads)


def _run(experiment: str, sweep: dict[str, list[int]], iterations: int, warmup: int, progress: bool,
         overrides: list[str]) -> dict[str, Any]:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    # only the task depends on a swept value in a way that can be invalid (the trial length)
    base = _compose_base(experiment, overrides, [{"task.n_steps": v} for v in sweep.get("trial_length", [])])
    fixed = _without_swept_keys(overrides)
    settings = {key: base[key] for key in _ALL_KEYS}
    cache: dict[tuple[int, ...], dict[str, Any]] = {}

    def measure(point: dict[str, int]) -> dict[str, Any]:
        key = tuple(point[k] for k in _ALL_KEYS)
        if key not in cache:
            changed = [f"{k}={v}" for k, v in point.items() if v != settings[k]]
            cache[key] = profile_meta(experiment, fixed + [f"{k}={point[k]}" for k in _ALL_KEYS],
                                      iterations=iterations, warmup=warmup)
            cache[key]["changed"] = changed
            bar.set_postfix_str(f"{' '.join(changed) or 'base'}: {cache[key]['seconds_per_iteration']:.3f} s/it")
        bar.update(1)
        return cache[key]

    total = 1 + sum(len(v) for v in sweep.values())
    with tqdm(total=total, desc=f"scaling {experiment}", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        base_profile = measure(settings)
        report_axes: dict[str, dict[str, Any]] = {}
        for name, axis_values in sweep.items():
            spec = AXES[name]
            profiles = [measure({**settings, **dict.fromkeys(spec["keys"], v)}) for v in axis_values]
            seconds = [p["seconds_per_iteration"] for p in profiles]
            exponent, prefactor = fit_power_law(axis_values, seconds)
            report_axes[name] = {
                "label": spec["label"], "unit": spec["unit"], "keys": list(spec["keys"]), "values": axis_values,
                "seconds_per_iteration": seconds, "breakdown_s": [p["breakdown_s"] for p in profiles],
                "matmul_flops_per_iteration": [p["matmul_flops_per_iteration"] for p in profiles],
                "exponent": exponent, "prefactor": prefactor,
                # the base experiment's value on this axis (network size: the learner's), and whether it is a point
                "base_value": settings[spec["keys"][0]],
                "base_on_axis": len({settings[k] for k in spec["keys"]}) == 1,
            }
    return {
        "experiment": experiment, "overrides": overrides, "device": base_profile["device"],
        "threads": torch.get_num_threads(), "iterations": iterations, "warmup": warmup, "dt_ms": base["dt"],
        "base": {"settings": settings, "seconds_per_iteration": base_profile["seconds_per_iteration"],
                 "breakdown_s": base_profile["breakdown_s"],
                 "matmul_flops_per_iteration": base_profile["matmul_flops_per_iteration"]},
        "axes": report_axes, "profiles_run": len(cache), "wall_s": time.perf_counter() - start,
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _threads(report: dict[str, Any]) -> str:
    return f"{report['threads']} thread{'s' if report['threads'] != 1 else ''}"


def format_scaling(report: dict[str, Any]) -> str:
    """The report as a small text table: seconds per outer iteration per value, and the exponent per axis."""
    base = report["base"]
    s = base["settings"]
    lines = [f"{report['experiment']} scaling ({report['device']}, {_threads(report)}, median of "
             f"{report['iterations']} after {report['warmup']} warm-up); base: batch {s['outer.batch_size']}, "
             f"learner {s['network.n_hidden']} / error module {s['error_module.n_hidden']} neurons, "
             f"T {s['task.n_steps']} steps: {base['seconds_per_iteration']:.3f} s/iteration"]
    for axis in report["axes"].values():
        k = axis["exponent"]
        lines.append(f"  {axis['label']} ({axis['unit']}): exponent {k:.2f}" if math.isfinite(k)
                     else f"  {axis['label']} ({axis['unit']}): exponent n/a")
        for v, sec in zip(axis["values"], axis["seconds_per_iteration"], strict=True):
            mark = "  (base)" if axis["base_on_axis"] and v == axis["base_value"] else ""
            lines.append(f"    {v:>6}  {sec:8.3f} s{mark}")
    return "\n".join(lines)


def plot_scaling(report: dict[str, Any], path: str) -> None:
    """One figure, a log-log panel per axis: seconds per outer iteration, the fitted power law, the base point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = list(report["axes"])
    fig, panels = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2), squeeze=False)
    base = report["base"]
    for ax, name in zip(panels[0], names, strict=True):
        axis = report["axes"][name]
        x = np.asarray(axis["values"], dtype=float)
        y = np.asarray(axis["seconds_per_iteration"], dtype=float)
        ax.loglog(x, y, "o", color="C0", label="measured")
        k, a = axis["exponent"], axis["prefactor"]
        if math.isfinite(k):
            grid = np.geomspace(x.min(), x.max(), 50)
            ax.loglog(grid, a * grid**k, "-", color="C1", label=f"fit $\\propto x^{{{k:.2f}}}$")
        s = base["settings"]
        where = "" if axis["base_on_axis"] else \
            f" (learner {s['network.n_hidden']}, error module {s['error_module.n_hidden']})"
        ax.loglog([axis["base_value"]], [base["seconds_per_iteration"]], "*", markerfacecolor="none",
                  markeredgecolor="C3", markersize=16, label=f"base {report['experiment']}{where}")
        ax.set_xticks(x, [f"{v:g}" for v in x])  # the measured values as plain numbers, no minor labels
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        unit = axis["unit"] + (f", dt = {report['dt_ms']:g} ms" if name == "trial_length" else "")
        ax.set_xlabel(f"{axis['label']} ({unit})")
        ax.set_ylabel("time per outer iteration (s)")
        title = f"exponent {k:.2f}" if math.isfinite(k) else "exponent n/a"
        ax.set_title(f"{axis['label']}: {title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"e-prop 2 outer iteration, {report['experiment']} ({report['device']}, "
                 f"{_threads(report)}): seconds vs batch size, network size, trial length")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
