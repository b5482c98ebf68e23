"""The e-prop 2 results of docs/results.md from finished meta-training runs: one table, one figure.

    python -m l2l.outer_loop.reports.results outputs/pretrained/arm_one_shot outputs/pretrained/arm_one_shot_deep \\
        outputs/pretrained/arm_one_shot_frozen_error_module --out docs

Reads each run's ``eval.json`` (held-out tasks, with the baselines) and ``metrics.jsonl`` (the training
curve) and writes ``<out>/data/results.json`` (the table) and ``<out>/figures/results_curves.png``
(held-out-style test MSE after the update vs iteration and vs wall time, with the MSE before it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from l2l.command_line import CommandParser

KEYS = ("demo_mse", "test_mse", "bptt_step_mse", "eprop1_step_mse")


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A run's name, held-out scores (means and stds over tasks) and training curve."""
    run_dir = Path(run_dir)
    evaluation = json.loads((run_dir / "eval.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    curve = [r for r in rows if "test_mse" in r]
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return {
        "name": run_dir.name,
        "scores": {k: evaluation[k] for k in KEYS},
        "std": {k: evaluation["std"][k] for k in KEYS},
        "bptt_lr": evaluation["bptt_lr"], "eprop1_lr": evaluation["eprop1_lr"],
        "n_tasks": evaluation["n_tasks"], "eval_seed": evaluation.get("eval_seed"),
        "improved_tasks": sum(t < d for d, t in zip(evaluation["per_task"]["demo_mse"],
                                                    evaluation["per_task"]["test_mse"], strict=True)),
        "iterations": summary.get("iterations", curve[-1]["iteration"] + 1 if curve else 0),
        # cumulative over resumed segments (metrics.jsonl of a resumed run holds the whole history)
        "wall_time_s": curve[-1]["seconds"] if curve else summary.get("wall_time_s"),
        "curve": {k: [r[k] for r in curve] for k in ("iteration", "seconds", "demo_mse", "test_mse")},
    }


def smooth(values: list[float], window: int) -> np.ndarray:
    """Running mean over ``window`` logged points (the training batches are noisy)."""
    x = np.asarray(values, dtype=float)
    if window <= 1 or len(x) < window:
        return x
    kernel = np.ones(window) / window
    return np.convolve(np.pad(x, (window - 1, 0), mode="edge"), kernel, mode="valid")


def curves_figure(runs: list[dict[str, Any]], window: int = 20) -> Figure:
    """Training-batch MSE after the update (solid) and before it (dotted) vs iteration and vs wall time."""
    figure = Figure(figsize=(11, 4))
    FigureCanvasAgg(figure)
    by_iteration, by_time = figure.subplots(1, 2)
    for k, run in enumerate(runs):
        c = run["curve"]
        color = f"C{k}"
        for ax, x in ((by_iteration, c["iteration"]), (by_time, np.asarray(c["seconds"]) / 60.0)):
            ax.plot(x, smooth(c["test_mse"], window), color=color, label=f"{run['name']}: after one update")
            ax.plot(x, smooth(c["demo_mse"], window), color=color, linestyle=":", alpha=0.8, label="  before")
    for ax, label in ((by_iteration, "outer iteration"), (by_time, "wall time (min, 1 CPU thread per run)")):
        ax.set_xlabel(label)
        ax.set_ylabel("Cartesian MSE (m², training batch)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    by_iteration.legend(fontsize=7)
    figure.suptitle(f"e-prop 2 meta-training on the arm (running mean over {window} logged batches)", fontsize=10)
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m l2l.outer_loop.reports.results RUN_DIR... --out DIR``."""
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished meta-training run dirs (with eval.json)")
    parser.add_argument("--out", default="docs", help="writes data/results.json and figures/results_curves.png")
    args = parser.parse_args(argv)
    runs = [read_run(r) for r in args.runs]
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    table = [{k: v for k, v in run.items() if k != "curve"} for run in runs]
    (out / "data" / "results.json").write_text(json.dumps(table, indent=2) + "\n")
    curves_figure(runs).savefig(out / "figures" / "results_curves.png", dpi=110)
    for run in table:
        s, d = run["scores"], run["std"]
        print(f"{run['name']}: " + ", ".join(f"{k} {s[k]:.4f} ± {d[k]:.4f}" for k in KEYS)
              + f"; improved {run['improved_tasks']}/{run['n_tasks']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
