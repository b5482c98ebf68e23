"""The small reference protocol's learning curve beside the published e-prop 2 code's (docs/eprop2.md).

    python -m outer_loop.reports.reference_curve outputs/reference_protocol/seed1 --out docs

Reads a run's ``metrics.jsonl`` and writes ``<out>/data/reference_curve.json`` (test/demo Cartesian MSE per
100 iterations, with seconds per iteration) and ``<out>/figures/eprop2_reference_curve.png``: the ratio of
each logged training batch (after the update over before it), its running mean, and the published code's
values on the same protocol, measured on this project's 2-core machine kind (``tutorial_eprop2.py`` with
learner 100, error module 100, batch 32, seed 1; ``CURVE`` lines every 20 iterations).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# (first iteration, last iteration, test/demo) of the published code's run on the small reference protocol
PUBLISHED_CURVE = ((0, 500, 1.00), (600, 600, 1.14), (800, 800, 1.26), (1000, 1300, 1.34), (2007, 2056, 0.81))
PUBLISHED_SECONDS_PER_ITERATION = 1.15
BIN = 100


def read_curve(run_dir: str | Path) -> dict[str, np.ndarray]:
    """iteration, seconds, demo_mse, test_mse and their ratio of every logged iteration (arrays)."""
    lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    rows = [r for r in (json.loads(line) for line in lines if line.strip()) if "test_mse" in r]
    if not rows:
        raise ValueError(f"{run_dir}/metrics.jsonl has no logged iteration")
    curve = {k: np.array([r[k] for r in rows], dtype=float) for k in ("iteration", "seconds", "demo_mse", "test_mse")}
    curve["ratio"] = curve["test_mse"] / curve["demo_mse"]
    return curve


def per_bin(curve: dict[str, np.ndarray], width: int = BIN) -> list[dict[str, float]]:
    """Per ``width`` iterations: the mean test/demo ratio of the logged batches and the seconds per iteration."""
    rows = []
    for start in range(0, int(curve["iteration"].max()) + 1, width):
        inside = (curve["iteration"] >= start) & (curve["iteration"] < start + width)
        if not inside.any():
            continue
        its, secs = curve["iteration"][inside], curve["seconds"][inside]
        before = curve["iteration"] < start
        t0, i0 = (curve["seconds"][before][-1], curve["iteration"][before][-1]) if before.any() else (0.0, -1.0)
        rows.append({"iterations": f"{start}-{start + width - 1}",
                     "test_over_demo": float(curve["ratio"][inside].mean()),
                     "demo_mse": float(curve["demo_mse"][inside].mean()),
                     "test_mse": float(curve["test_mse"][inside].mean()),
                     "seconds_per_iteration": float((secs[-1] - t0) / (its[-1] - i0))})
    return rows


def figure(curve: dict[str, np.ndarray], window: int = 10) -> Figure:
    """Test/demo vs iteration: l2l's batches, their running mean, the published code's values."""
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    its, ratio = curve["iteration"], curve["ratio"]
    ax.plot(its, ratio, ".", ms=2, color="C0", alpha=0.35, label="l2l, one training batch")
    kernel = np.ones(window) / window
    smooth = np.convolve(np.pad(ratio, (window - 1, 0), mode="edge"), kernel, mode="valid")
    ax.plot(its, smooth, color="C0", label=f"l2l, running mean of {window} batches")
    for k, (first, last, value) in enumerate(PUBLISHED_CURVE):
        style = dict(color="C3", label="published e-prop 2 code" if k == 0 else None)
        if first == last:
            ax.plot([first], [value], "o", **style)
        else:
            ax.plot([first, last], [value, value], lw=3, **style)
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="outer iteration", ylabel="Cartesian MSE after / before the update (test / demo)",
           title="small reference protocol (learner 100, error module 100, batch 32, seed 1)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m outer_loop.reports.reference_curve",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    curve = read_curve(args.run_dir)
    bins = per_bin(curve)
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    summary = {"run_dir": str(args.run_dir), "iterations": int(curve["iteration"].max()) + 1, "per_100": bins,
               "published": [{"iterations": f"{a}-{b}", "test_over_demo": v} for a, b, v in PUBLISHED_CURVE],
               "published_seconds_per_iteration": PUBLISHED_SECONDS_PER_ITERATION}
    (args.out / "data" / "reference_curve.json").write_text(json.dumps(summary, indent=2) + "\n")
    figure(curve).savefig(args.out / "figures" / "eprop2_reference_curve.png", dpi=120)
    for row in bins:
        print(f"{row['iterations']:>10}  test/demo {row['test_over_demo']:.3f}  "
              f"(demo {row['demo_mse']:.4f}, test {row['test_mse']:.4f})  {row['seconds_per_iteration']:.2f} s/it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
