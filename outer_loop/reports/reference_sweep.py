"""A sweep of l2l configurations on the small reference protocol, beside the plain protocol (docs/results.md).

    python -m l2l.outer_loop.reports.reference_sweep \
        --baseline docs/data/reference_protocol/seed{1,2,3} --at k3 \
        --variant per_synapse=docs/data/reference_sweep/per_synapse ... --out docs --name reference_sweep

Each ``--variant NAME=DIR[,DIR...]`` is one configuration: one run dir per seed, each trained as long as the
baseline's ``--at`` checkpoint and evaluated there by ``l2l-eval DIR`` (its ``eval.json``). The baseline is the
plain protocol's run dirs, their held-out scores at ``eval_at/<at>`` (the checkpoint at the same iteration).

Writes ``<out>/data/<name>.json`` (per configuration: the overrides, iterations, training seconds, the last
1000 iterations' training-batch test/demo, the held-out before / after / BPTT step / e-prop 1 step / tasks
improved, mean ± std over its seeds) and ``<out>/figures/<name>.png`` (test/demo against iteration, a running
mean per run; with ``--idle-seconds NAME=S`` for every configuration also against iteration × S, the seconds
per iteration measured on the idle machine in one sitting), and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from l2l.command_line import CommandParser
from l2l.outer_loop.reports.reference_curve import held_out, read_curve, running_mean

LAST = 1000


def _overrides(run_dir: Path) -> list[str]:
    """The run's command-line overrides (``.hydra/overrides.yaml``), or [] when it has none."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [line[2:].strip() for line in path.read_text().splitlines() if line.startswith("- ")]


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def configuration(name: str, run_dirs: list[Path], label: str = "end", last: int = LAST) -> dict[str, object]:
    """One configuration's row: its runs' held-out scores at ``label`` (``end`` = ``<run>/eval.json``), the mean
    test/demo of the training batches logged in the ``last`` iterations before that checkpoint, and the
    training seconds, each mean ± std over the runs."""
    rows = [r for r in held_out(run_dirs) if r["checkpoint"] == label]
    if not rows:
        raise ValueError(f"{name}: the runs {[str(d) for d in run_dirs]} have no held-out evaluation '{label}' "
                         f"(l2l-eval RUN_DIR writes eval.json; eval_at/{label}/eval.json for an earlier checkpoint)")
    per_run = rows[0]["per_run"]
    batches, seconds, iterations = [], [], []
    for d in run_dirs:
        run = per_run[Path(d).name]
        curve = read_curve(d)
        end = run.get("iteration", int(curve["iteration"].max()) + 1)
        inside = (curve["iteration"] >= end - last) & (curve["iteration"] < end)
        batches.append(float(curve["ratio"][inside].mean()))
        seconds.append(float(run.get("seconds", curve["seconds"][-1])))
        iterations.append(int(end))
    return {"name": name, "run_dirs": [str(d) for d in run_dirs], "overrides": _overrides(Path(run_dirs[0])),
            "checkpoint": label, "iterations": iterations, "training_seconds": _mean_std(seconds),
            "training_batches_test_over_demo": _mean_std(batches), "held_out": rows[0]["over_runs"],
            "held_out_per_run": per_run, "n_tasks": next(iter(per_run.values()))["n_tasks"]}


def markdown_row(row: dict[str, object]) -> str:
    """One row: name | seeds | iterations | training s | batches test/demo | before | after (ratio) | BPTT step |
    e-prop 1 step | tasks improved, each mean ± std over the seeds (the value alone for one seed)."""
    h, one = row["held_out"], len(row["run_dirs"]) == 1

    def cell(stat: dict[str, float], digits: int = 3) -> str:
        return f"{stat['mean']:.{digits}f}" + ("" if one else f" ± {stat['std']:.{digits}f}")

    its = sorted(set(row["iterations"]))
    return (f"| {row['name']} | {len(row['run_dirs'])} | {', '.join(map(str, its))} | "
            f"{row['training_seconds']['mean']:.0f} | {cell(row['training_batches_test_over_demo'])} | "
            f"{cell(h['demo_mse'])} | {cell(h['test_mse'])} ({cell(h['ratio_test_over_demo'], 2)}) | "
            f"{cell(h['bptt_step_mse'])} | {cell(h['eprop1_step_mse'])} | "
            f"{cell(h['improved'], 0 if one else 1)} / {row['n_tasks']} |")


HEADER = ("| configuration | seeds | iterations | training s | training batches: test/demo (last 1000 it) | "
          "held-out before | after one update (after/before) | one BPTT step | one e-prop 1 step | tasks improved |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


VARIANT_COLOURS = tuple(f"C{i}" for i in range(10) if i != 7)
"""The configurations' colours: matplotlib's cycle without its grey (C7), which is the baseline's."""


def sweep_figure(configurations: dict[str, list[Path]], window: int = 50,
                 idle_seconds: dict[str, float] | None = None) -> Figure:
    """Test/demo against iteration: the running mean of ``window`` logged batches of every run, one colour per
    configuration (the first is the baseline, in grey). With ``idle_seconds`` (configuration -> seconds per
    iteration measured on the idle machine in one sitting), a second panel puts each curve at iteration × those
    seconds: the configurations against the same clock, not the shared machine's as-run seconds."""
    fig = Figure(figsize=(13.0 if idle_seconds else 8.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if idle_seconds else 1, squeeze=False)[0]
    for k, (name, run_dirs) in enumerate(configurations.items()):
        color, width = ("0.55", 1.6) if k == 0 else (VARIANT_COLOURS[(k - 1) % len(VARIANT_COLOURS)], 1.0)
        for j, d in enumerate(run_dirs):
            c = read_curve(d)
            curve = running_mean(c["ratio"], window)
            axes[0].plot(c["iteration"], curve, color=color, lw=width, label=name if j == 0 else None)
            if idle_seconds:
                axes[1].plot(c["iteration"] * idle_seconds[name], curve, color=color, lw=width,
                             label=f"{name} ({idle_seconds[name]:.3f} s/it)" if j == 0 else None)
    axes[0].set(xlabel="outer iteration", ylabel="Cartesian MSE after / before the update (test / demo)")
    if idle_seconds:
        axes[1].set(xlabel="training seconds at the idle machine's s/iteration (one sitting)")
    for ax in axes:
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=1 if idle_seconds else 2)
    fig.suptitle(f"small reference protocol: running mean of {window} logged training batches per run", fontsize=9)
    return fig


def _variant(spec: str) -> tuple[str, list[Path]]:
    name, sep, dirs = spec.partition("=")
    if not sep or not name or not dirs:
        raise argparse.ArgumentTypeError(f"--variant {spec!r}: expected NAME=DIR[,DIR...]")
    return name, [Path(d) for d in dirs.split(",")]


def _idle_seconds(spec: str) -> tuple[str, float]:
    name, sep, value = spec.rpartition("=")  # the seconds never hold "=", a configuration's name may
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not sep or not name or not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"--idle-seconds {spec!r}: expected NAME=SECONDS with SECONDS > 0")
    return name, seconds


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.reference_sweep",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, nargs="+", required=True, help="the plain protocol's run dirs")
    parser.add_argument("--at", default="end", help="the baseline's checkpoint label (eval_at/LABEL; default end)")
    parser.add_argument("--baseline-name", default="reference protocol (no change)")
    parser.add_argument("--variant", type=_variant, action="append", default=[], metavar="NAME=DIR[,DIR...]")
    parser.add_argument("--idle-seconds", type=_idle_seconds, action="append", default=[], metavar="NAME=SECONDS",
                        help="seconds per iteration of configuration NAME on the idle machine, measured in one "
                             "sitting (l2l-bench meta); given for every configuration, the figure gains a panel "
                             "against iteration × these seconds")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--name", default="reference_sweep")
    args = parser.parse_args(argv)
    configurations = {args.baseline_name: args.baseline, **dict(args.variant)}
    idle = dict(args.idle_seconds)
    unknown = sorted(set(idle) - set(configurations))
    if unknown or (idle and len(idle) < len(configurations)):
        parser.error(f"--idle-seconds names {sorted(idle)}: it needs every configuration once, "
                     f"{sorted(configurations)}" + (f" (unknown: {unknown})" if unknown else ""))
    try:
        rows = [configuration(args.baseline_name, args.baseline, args.at)]
        rows += [configuration(name, dirs) for name, dirs in args.variant]
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    for row in rows:
        if idle:
            row["idle_seconds_per_iteration"] = idle[row["name"]]
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    (args.out / "data" / f"{args.name}.json").write_text(json.dumps({"configurations": rows}, indent=2) + "\n")
    sweep_figure(configurations, idle_seconds=idle or None).savefig(args.out / "figures" / f"{args.name}.png",
                                                                    dpi=120)
    print(HEADER)
    for row in rows:
        print(markdown_row(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
