"""The reference protocol's learning curves beside the published e-prop 2 code's (docs/results.md).

    python -m l2l.outer_loop.reports.reference_curve outputs/reference_protocol/seed1 --out docs
    python -m l2l.outer_loop.reports.reference_curve outputs/reference_protocol/seed{1,2,3} --out docs \
        --name reference_protocol --idle-seconds 0.230

One run: writes ``<out>/data/reference_curve.json`` (test/demo Cartesian MSE per 100 iterations, with seconds
per iteration) and ``<out>/figures/eprop2_reference_curve.png``: the ratio of each logged training batch
(after the update over before it), its running mean, and the published code's values on the same protocol,
measured on this project's 2-core machine kind (``tutorial_eprop2.py`` with learner 100, error module 100,
batch 32, seed 1; ``CURVE`` lines every 20 iterations).

Several runs (seeds), with ``--name N``: ``<out>/data/N.json`` (per 1000 iterations, each seed's mean ratio and
their mean ± std; each seed's training seconds) and ``<out>/figures/N.png``: the ratio against iteration and
against training wall time, the published code's values placed at its measured seconds per iteration;
the JSON also holds each run's test/demo per 100 iterations. ``--idle-seconds S`` adds the first run at S
seconds per iteration (dashed: its speed on the idle machine); ``--window N`` smooths over N logged batches
(default 50). Titles name the runs' sizes (from ``<run>/.hydra/config.yaml``). The
``--published LOG ...`` (the published code's raw logs, ``docs/data/published_code/``) replaces its first run's
values by the logs' curves, compared per 100 and per 1000 iterations at the same windows. The
held-out scores of ``l2l-eval`` go into the JSON too, mean ± std over the seeds: ``<run>/eval.json`` (the end)
and ``<run>/eval_at/<label>/eval.json`` (earlier checkpoints, ``l2l-eval <ckpt> --out <run>/eval_at/<label>``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from l2l.command_line import CommandParser
from l2l.outer_loop.reports.published_log import PublishedLogError, read_published_log

# the sizes of the published code's run below
PUBLISHED_SIZES = "learner 100, error module 100, batch 32"
# (first iteration, last iteration, test/demo) of the published code's run on the small reference protocol
PUBLISHED_CURVE = ((0, 500, 1.00), (600, 600, 1.14), (800, 800, 1.26), (1000, 1300, 1.34), (2007, 2056, 0.81))
PUBLISHED_SECONDS_PER_ITERATION = 1.15
# median seconds per iteration of the published code on the small protocol, idle machine, 2 threads
# (docs/data/side_by_side_2026-12-02.json): where the wall-time panel places the published curve
PUBLISHED_IDLE_SECONDS = 1.238
BIN = 100
SEED_BIN = 1000


def read_curve(run_dir: str | Path) -> dict[str, np.ndarray]:
    """iteration, seconds, demo_mse, test_mse and their ratio of every logged iteration (arrays)."""
    lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    rows = [r for r in (json.loads(line) for line in lines if line.strip()) if "test_mse" in r]
    if not rows:
        raise ValueError(f"{run_dir}/metrics.jsonl has no logged iteration")
    curve = {k: np.array([r[k] for r in rows], dtype=float) for k in ("iteration", "seconds", "demo_mse", "test_mse")}
    curve["ratio"] = curve["test_mse"] / curve["demo_mse"]
    return curve


def run_sizes(run_dir: str | Path) -> str | None:
    """"learner N, error module M, batch B" from the run's ``.hydra/config.yaml`` (None without one)."""
    path = Path(run_dir, ".hydra", "config.yaml")
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    layers = int(OmegaConf.select(cfg, "network.layers", default=1) or 1)
    learner = f"{layers} × {cfg.network.n_hidden}" if layers > 1 else f"{cfg.network.n_hidden}"
    return f"learner {learner}, error module {cfg.error_module.n_hidden}, batch {cfg.outer.batch_size}"


def runs_title(run_dirs: list[Path]) -> str:
    """"reference protocol (<sizes>)" when the runs that record their sizes agree (runs without a config are not
    counted), else "reference protocol"."""
    sizes = {run_sizes(d) for d in run_dirs} - {None}
    return f"reference protocol ({sizes.pop()})" if len(sizes) == 1 else "reference protocol"


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


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and the ``window`` - 1 before it (edge-padded at the start)."""
    kernel = np.ones(window) / window
    return np.convolve(np.pad(values, (window - 1, 0), mode="edge"), kernel, mode="valid")


def plot_published(ax: Any, scale: float = 1.0) -> None:
    """The published code's values on ``ax`` (red; a point or a bar per stretch), x = iteration × ``scale``."""
    for k, (first, last, value) in enumerate(PUBLISHED_CURVE):
        style = dict(color="C3", label=f"published e-prop 2 code ({PUBLISHED_SIZES})" if k == 0 else None)
        if first == last:
            ax.plot([first * scale], [value], "o", **style)
        else:
            ax.plot([first * scale, last * scale], [value, value], lw=3, **style)


def published_rows() -> list[dict[str, object]]:
    """The published code's values for a report's JSON."""
    return [{"iterations": f"{a}-{b}", "test_over_demo": v} for a, b, v in PUBLISHED_CURVE]


def log_stride(curve: dict[str, np.ndarray]) -> float:
    """The iterations between a curve's logged points (their median gap; 1 for a single point)."""
    return float(np.median(np.diff(curve["iteration"]))) if curve["iteration"].size > 1 else 1.0


def published_report(logs: dict[str, dict[str, np.ndarray]]) -> dict[str, object]:
    """The published code's raw logs for a report's JSON: per 100 iterations of each log, and per 1000
    iterations each log's mean test/demo and their mean ± std (the windows of l2l's own tables)."""
    # a log prints a CURVE line every `stride` iterations: its last line stands for the iterations up to the next
    ran = {name: int(c["iteration"].max() + log_stride(c)) for name, c in logs.items()}
    return {"per_100": {name: per_bin(c) for name, c in logs.items()},
            "per_1000": across_seeds(logs, last=min(ran.values()) - 1), "iterations": ran}


def figure(curve: dict[str, np.ndarray], window: int = 10, title: str = "reference protocol") -> Figure:
    """Test/demo vs iteration: l2l's batches, their running mean, the published code's values."""
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    its, ratio = curve["iteration"], curve["ratio"]
    ax.plot(its, ratio, ".", ms=2, color="C0", alpha=0.35, label="l2l, one training batch")
    smooth = running_mean(ratio, window)
    ax.plot(its, smooth, color="C0", label=f"l2l, running mean of {window} batches")
    plot_published(ax)
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="outer iteration", ylabel="Cartesian MSE after / before the update (test / demo)",
           title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return fig


def across_seeds(curves: dict[str, dict[str, np.ndarray]], width: int = SEED_BIN,
                 last: int | None = None) -> list[dict[str, object]]:
    """Per ``width`` iterations: every seed's mean test/demo ratio, their mean ± std (ddof 1), and the training
    seconds each seed had used by the end of the bin. Bins that not every seed completed (up to ``last``;
    default: the last logged iteration of the shortest) are left out."""
    if last is None:
        last = min(int(c["iteration"].max()) for c in curves.values())
    rows = []
    for start in range(0, last - width + 2, width):
        per_seed, seconds = {}, {}
        for name, c in curves.items():
            inside = (c["iteration"] >= start) & (c["iteration"] < start + width)
            per_seed[name] = float(c["ratio"][inside].mean())
            seconds[name] = float(c["seconds"][inside][-1])
        values = np.array(list(per_seed.values()))
        rows.append({"iterations": f"{start}-{start + width - 1}", "per_seed": per_seed,
                     "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                     "seconds": seconds})
    return rows


def seeds_figure(curves: dict[str, dict[str, np.ndarray]], window: int = 50, title: str = "reference protocol",
                 idle_seconds: float | None = None,
                 published: dict[str, dict[str, np.ndarray]] | None = None) -> Figure:
    """Test/demo against iteration (left) and against training seconds (right): each seed's running mean of
    ``window`` logged batches, and the published code's (right: at its idle s/iteration): its raw logs'
    running means over as many iterations when ``published`` is given, else the values of its first run.
    ``idle_seconds``: also the first run at that many seconds per iteration (dashed)."""
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    by_iteration, by_time = fig.subplots(1, 2, sharey=True)
    for k, (name, c) in enumerate(curves.items()):
        smooth = running_mean(c["ratio"], window)
        by_iteration.plot(c["iteration"], smooth, color=f"C{k}", lw=1.2, label=f"l2l, {name}")
        by_time.plot(c["seconds"], smooth, color=f"C{k}", lw=1.2, label=f"l2l, {name} (as run)")
    if idle_seconds is not None:
        first = next(iter(curves.values()))
        by_time.plot(first["iteration"] * idle_seconds, running_mean(first["ratio"], window), color="C0",
                     lw=0.8, ls="--", label=f"l2l, {next(iter(curves))} at {idle_seconds} s/it (idle)")
    if published:
        spacing = log_stride(next(iter(curves.values()))) if curves else 1.0
        for k, (name, c) in enumerate(published.items()):
            points = max(1, round(window * spacing / log_stride(c)))
            smooth = running_mean(c["ratio"], points)
            style = dict(color="C3", alpha=1.0 - 0.25 * k, lw=1.2)
            by_iteration.plot(c["iteration"], smooth, label=f"published code, {name}", **style)
            by_time.plot(c["iteration"] * PUBLISHED_IDLE_SECONDS, smooth, label=f"published code, {name}", **style)
    else:
        plot_published(by_iteration)
        plot_published(by_time, PUBLISHED_IDLE_SECONDS)
    for ax in (by_iteration, by_time):
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    by_iteration.set(xlabel="outer iteration", ylabel="Cartesian MSE after / before the update (test / demo)")
    by_time.set(xlabel=f"training seconds (published code at {PUBLISHED_IDLE_SECONDS} s/it)")
    fig.suptitle(f"{title}: running mean of {window} logged training batches", fontsize=9)
    return fig


def _checkpoint_time(run_dir: Path, eval_dir: Path) -> dict[str, float]:
    """The iteration of an evaluated checkpoint (eval.json's ``iteration``, written by ``l2l-eval``; else a
    ``checkpoint.json`` beside it; else, for the run dir itself, the run's end) and the training seconds the run
    had used by then (from metrics.jsonl)."""
    curve = read_curve(run_dir)
    recorded = json.loads((eval_dir / "eval.json").read_text()).get("iteration")
    if recorded is not None:
        iteration = int(recorded)
    elif eval_dir == run_dir:
        iteration = int(curve["iteration"].max()) + 1
    elif (eval_dir / "checkpoint.json").is_file():
        iteration = int(json.loads((eval_dir / "checkpoint.json").read_text())["iteration"])
    else:
        return {}
    done = curve["iteration"] < iteration
    return {"iteration": iteration, "seconds": float(curve["seconds"][done][-1]) if done.any() else 0.0}


HELD_OUT_KEYS = ("demo_mse", "test_mse", "ratio_test_over_demo", "bptt_step_mse", "eprop1_step_mse")


def held_out(run_dirs: list[Path]) -> list[dict[str, object]]:
    """Per evaluated checkpoint (``end`` and every label under ``eval_at/`` that all runs have): each run's
    held-out scores, the tasks its update improved, and the mean ± std (ddof 1) over the runs."""
    def read(path: Path) -> dict[str, float]:
        e = json.loads(path.read_text())
        improved = sum(t < d for d, t in zip(e["per_task"]["demo_mse"], e["per_task"]["test_mse"], strict=True))
        return {**{k: float(e[k]) for k in HELD_OUT_KEYS}, "improved": improved, "n_tasks": e["n_tasks"],
                "bptt_lr": e["bptt_lr"], "eprop1_lr": e["eprop1_lr"]}

    labels = [sorted(p.name for p in (Path(d) / "eval_at").glob("*") if (p / "eval.json").is_file())
              for d in run_dirs]
    shared = sorted(set(labels[0]).intersection(*labels[1:]), key=lambda x: (len(x), x)) if labels else []
    files = {label: [Path(d) / "eval_at" / label / "eval.json" for d in run_dirs] for label in shared}
    if all((Path(d) / "eval.json").is_file() for d in run_dirs):
        files["end"] = [Path(d) / "eval.json" for d in run_dirs]
    rows = []
    for label, paths in files.items():
        per_run = {Path(d).name: {**read(p), **_checkpoint_time(Path(d), p.parent)}
                   for d, p in zip(run_dirs, paths, strict=True)}
        stats = {}
        for key in (*HELD_OUT_KEYS, "improved"):
            values = np.array([r[key] for r in per_run.values()], dtype=float)
            stats[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        rows.append({"checkpoint": label, "per_run": per_run, "over_runs": stats})
    return rows


def held_out_markdown(row: dict[str, object]) -> str:
    """One held-out row as Markdown: checkpoint | before | after (ratio) | BPTT step | e-prop 1 step | improved,
    each mean ± std over the runs."""
    stats, runs = row["over_runs"], list(row["per_run"].values())
    cell = lambda key, digits=3: f"{stats[key]['mean']:.{digits}f} ± {stats[key]['std']:.{digits}f}"  # noqa: E731
    where = row["checkpoint"]
    if all("iteration" in r for r in runs):
        iterations = ", ".join(str(r["iteration"]) for r in runs)
        seconds = ", ".join(f"{r['seconds']:.0f}" for r in runs)
        where += f" ({iterations} it; {seconds} s)"
    n_tasks = runs[0]["n_tasks"]
    return (f"| {where} | {cell('demo_mse')} | {cell('test_mse')} ({cell('ratio_test_over_demo', 2)}) | "
            f"{cell('bptt_step_mse')} | {cell('eprop1_step_mse')} | {cell('improved', 1)} / {n_tasks} |")


def write_seeds(run_dirs: list[Path], out: Path, name: str, idle_seconds: float | None = None, window: int = 50,
                published_logs: list[Path] | None = None) -> list[dict[str, object]]:
    """The several-seed report: ``out/data/<name>.json`` and ``out/figures/<name>.png``; returns the bins.
    ``published_logs``: the published code's raw logs (one per seed), compared per 100 and per 1000 iterations
    at the same windows instead of the values of its first run."""
    curves = {Path(d).name: read_curve(d) for d in run_dirs}
    published = {Path(p).stem: read_published_log(p) for p in published_logs or []}
    rows = across_seeds(curves)
    title = runs_title(run_dirs)
    summary = {"run_dirs": [str(d) for d in run_dirs], "title": title, "held_out": held_out(run_dirs),
               "iterations": {k: int(c["iteration"].max()) + 1 for k, c in curves.items()},
               "training_seconds": {k: float(c["seconds"][-1]) for k, c in curves.items()},
               "per_1000": rows,
               "per_100": {k: per_bin(c) for k, c in curves.items()},
               "published": published_report(published) if published else published_rows(),
               "published_sizes": PUBLISHED_SIZES,
               "idle_seconds_per_iteration": {"published": PUBLISHED_IDLE_SECONDS, "l2l": idle_seconds}}
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "data" / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    seeds_figure(curves, window, title, idle_seconds, published).savefig(out / "figures" / f"{name}.png", dpi=120)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.reference_curve",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="run_dir")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--name", help="several runs: the report's file name (data/NAME.json, figures/NAME.png)")
    parser.add_argument("--idle-seconds", type=float, metavar="S",
                        help="with --name: also draw the first run at S seconds per iteration (its idle speed)")
    parser.add_argument("--window", type=int, metavar="N",
                        help="with --name: the running mean over N logged batches (default 50)")
    parser.add_argument("--published", type=Path, nargs="+", metavar="LOG",
                        help="with --name: the published code's raw logs (docs/data/published_code/*.log), "
                             "compared at the same windows instead of the values of its first run")
    args = parser.parse_args(argv)
    if args.idle_seconds is not None and not (0 < args.idle_seconds < float("inf")):
        parser.error(f"--idle-seconds {args.idle_seconds}: seconds per iteration must be > 0 and finite")
    if args.window is not None and args.window < 1:
        parser.error(f"--window {args.window}: the running mean needs at least 1 logged batch")
    if len(args.run_dirs) > 1 or args.name:
        if not args.name:
            parser.error("several run dirs need --name (the report's file name)")
        window = 50 if args.window is None else args.window
        try:
            rows = write_seeds(args.run_dirs, args.out, args.name, args.idle_seconds, window, args.published)
        except PublishedLogError as error:
            parser.error(str(error))
        for row in rows:
            seeds = "  ".join(f"{k} {v:.3f}" for k, v in row["per_seed"].items())
            print(f"{row['iterations']:>11}  test/demo {row['mean']:.3f} ± {row['std']:.3f}  ({seeds})")
        for row in held_out(args.run_dirs):
            print(held_out_markdown(row))
        return 0
    if args.idle_seconds is not None or args.window is not None or args.published:
        parser.error("--idle-seconds, --window and --published shape the several-run report: give --name too")
    args.run_dir = args.run_dirs[0]
    curve = read_curve(args.run_dir)
    bins = per_bin(curve)
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    summary = {"run_dir": str(args.run_dir), "iterations": int(curve["iteration"].max()) + 1, "per_100": bins,
               "published": published_rows(), "published_seconds_per_iteration": PUBLISHED_SECONDS_PER_ITERATION}
    (args.out / "data" / "reference_curve.json").write_text(json.dumps(summary, indent=2) + "\n")
    figure(curve, title=f"{runs_title([args.run_dir])}, {args.run_dir.name}").savefig(
        args.out / "figures" / "eprop2_reference_curve.png", dpi=120)
    for row in bins:
        print(f"{row['iterations']:>10}  test/demo {row['test_over_demo']:.3f}  "
              f"(demo {row['demo_mse']:.4f}, test {row['test_mse']:.4f})  {row['seconds_per_iteration']:.2f} s/it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
