"""The copy-repeat experiment of docs/eprop3.md: the longest pattern each rule × Δ solved, and its curriculum curves.

    python -m l2l.outer_loop.reports.copy_repeat multirun/<date>/<time> outputs/copy_repeat_bptt/<run> --out docs
    python -m l2l.outer_loop.reports.copy_repeat RUN_DIR... --out docs --name eprop3_copy_repeat

Each RUN_DIR is a direct run (it has ``summary.json`` or ``metrics.jsonl``) or a Hydra multirun sweep dir (every
subdirectory that has one of them is a run). Per run it reads ``.hydra/config.yaml`` (``rule.name``,
``rule.window`` (None for rules that do not use it, such as bptt and
eprop), ``seed``, ``train.curriculum.stages`` and
``.patience``), ``metrics.jsonl`` (``stage`` and ``seconds``, before 0.3 ``time_s``, of every logged iteration)
and ``summary.json``
(``curriculum.stage``, ``wall_time_s``). Writes ``<out>/data/<name>.json`` (every run and the table below) and
``<out>/figures/<name>.png`` (the stage reached and the training batches' bit error against iteration and
against wall time, one color per (rule, Δ), one thin line per seed), and prints the table as Markdown for
docs/eprop3.md. Runs that measured their synthetic gradient (``rule.sg_quality_every``: ``sg_cosine`` and ``sg_r2``
in metrics.jsonl) add ``<out>/figures/<name>_sg_quality.png``: its cosine and R² against the true border gradients
over the iterations, and the data holds the series.

**Stages passed and the longest solved** (what ``outer_loop/algorithm/curriculum.py`` does: stage k is left for k + 1
after ``patience`` consecutive training batches with ``bit_error`` ≤ ``threshold``; the last stage is never left):

- ``stages passed`` = s, the stage reached at the end (``summary.json`` ``curriculum.stage``, 0-based; without
  summary.json, an unfinished run: the last logged ``stage``): stages 0 … s − 1 were passed, stage s not;
  except when s is the last stage and ``checkpoints/last.pt`` has a curriculum ``streak`` ≥ ``patience`` (the
  last ``patience`` training batches all met the threshold, the criterion that would have advanced any other
  stage): then all stages were passed, s + 1. Without that checkpoint the last stage counts as not passed.
- ``longest solved`` = length × max_repeats of stage ``stages passed`` − 1 (the last stage passed); its
  ``length`` and ``max_repeats`` are reported too. Nothing passed: 0 (length 0, repeats 0).

The table groups the runs by (rule, Δ): mean ± std (ddof 1; None with one seed) over the seeds of the stages
passed and of length × repeats, the number of seeds, and the mean wall time per run (``summary.json``
``wall_time_s``, else the last logged ``time_s``; a resumed run's files cover the iterations after the resume).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from l2l.command_line import CommandParser

RULE_ORDER = ("eprop3", "tbptt_sg", "tbptt", "bptt", "eprop")
RUN_FILES = ("summary.json", "metrics.jsonl", "metrics.jsonl.gz")


def metrics_records(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``, or of ``metrics.jsonl.gz`` (how docs/data keeps long runs' raw logs)."""
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        text = path.read_text()
    elif path.with_suffix(".jsonl.gz").is_file():
        text = gzip.decompress(path.with_suffix(".jsonl.gz").read_bytes()).decode()
    else:
        raise ValueError(f"{path}: missing (a run without metrics)")
    return [json.loads(line) for line in text.splitlines() if line.strip()]

WINDOWED_RULES = ("eprop3", "tbptt", "tbptt_sg")
"""The rules that read ``rule.window``; for the others it is reported as None."""


def run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Every run in ``paths``: a path with summary.json or metrics.jsonl, else its subdirectories that have one."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ValueError(f"{path}: not a directory")
        if any((path / f).is_file() for f in RUN_FILES):
            found.append(path)
            continue
        subdirs = [d for d in path.iterdir() if d.is_dir() and any((d / f).is_file() for f in RUN_FILES)]
        if not subdirs:
            raise ValueError(f"{path}: no run inside (neither it nor a subdirectory has summary.json or metrics.jsonl)")
        found.extend(sorted(subdirs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0,
                                                    d.name)))
    return found


def _final_streak(run_dir: Path) -> int | None:
    """The curriculum streak in ``checkpoints/last.pt`` (None without that checkpoint or key)."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    import torch  # only for runs that reached the last stage

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:                                        # any unreadable file
        raise ValueError(f"{path}: cannot be read ({type(error).__name__}: {error})") from None
    curriculum = state.get("curriculum") if isinstance(state, dict) else None
    return int(curriculum["streak"]) if isinstance(curriculum, dict) and "streak" in curriculum else None


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """One run: rule, window, seed, stages, the logged (iteration, time_s, stage), stages passed, longest solved."""
    run_dir = Path(run_dir)
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise ValueError(f"{config_path}: missing (the run's Hydra config: rule, window, seed, curriculum)")
    cfg = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    rule = cfg.get("rule") or {}
    curriculum = (cfg.get("train") or {}).get("curriculum") or {}
    stages = [dict(s) for s in curriculum.get("stages") or []]
    if not stages or any("length" not in s or "max_repeats" not in s for s in stages):
        raise ValueError(f"{config_path}: train.curriculum.stages must list the stages' length and max_repeats, "
                         f"got {stages!r}")
    metrics_path = run_dir / "metrics.jsonl"
    records = [r for r in metrics_records(run_dir) if "stage" in r and "iteration" in r]
    if not records:
        raise ValueError(f"{metrics_path}: no logged iteration with a curriculum stage")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    iteration = [int(r["iteration"]) for r in records]
    time_s = [float(r.get("seconds", r.get("time_s", math.nan))) for r in records]   # time_s: before 0.3
    stage = [int(r["stage"]) for r in records]
    bit_error = [float(r.get("bit_error", math.nan)) for r in records]
    quality = {"iteration": [int(r["iteration"]) for r in records if "sg_r2" in r],
               "cosine": [float(r["sg_cosine"]) for r in records if "sg_r2" in r],
               "r2": [float(r["sg_r2"]) for r in records if "sg_r2" in r]}
    if summary is not None:
        if "curriculum" not in summary:
            raise ValueError(f"{summary_path}: no curriculum (not a run with train.curriculum.stages)")
        reached = int(summary["curriculum"]["stage"])
        wall = float(summary["wall_time_s"])
    else:
        reached, wall = stage[-1], time_s[-1]
    if not 0 <= reached < len(stages):
        raise ValueError(f"{run_dir}: stage {reached} reached, but train.curriculum.stages has {len(stages)}")
    passed = reached
    streak = None
    if reached == len(stages) - 1:
        streak = _final_streak(run_dir)
        if streak is not None and streak >= int(curriculum.get("patience", 1)):
            passed = len(stages)
    last = stages[passed - 1] if passed > 0 else {"length": 0, "max_repeats": 0}
    window = rule.get("window") if rule.get("name") in WINDOWED_RULES else None
    return {"run_dir": str(run_dir), "rule": rule.get("name"), "window": window, "seed": cfg.get("seed"),
            "finished": summary is not None, "stages": stages, "stage_reached": reached, "final_streak": streak,
            "stages_passed": passed, "length": int(last["length"]), "repeats": int(last["max_repeats"]),
            "length_x_repeats": int(last["length"]) * int(last["max_repeats"]), "wall_time_s": wall,
            "iterations": iteration[-1] + 1, "curve": {"iteration": iteration, "time_s": time_s, "stage": stage,
                                                              "bit_error": bit_error},
            "sg_quality": quality if quality["iteration"] else None,
            "options": {k: v for k, v in rule.items() if k.startswith("sg_")}}


def _order(key: tuple[str, int | None]) -> tuple[int, str, int]:
    rule, window = key
    return (RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER), rule,
            -1 if window is None else int(window))


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else None}


def table(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (rule, window): n seeds, mean ± std (ddof 1) of stages passed and length × repeats, mean wall time."""
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for run in runs:
        key = (run["rule"], run["window"], run["seed"])
        if key in seen:
            raise ValueError(f"{run['run_dir']}: a second run of rule={key[0]}, window={key[1]}, seed={key[2]} "
                             f"(the first: {seen[key]})")
        seen[key] = run["run_dir"]
        groups.setdefault((run["rule"], run["window"]), []).append(run)
    rows = []
    for (rule, window), members in sorted(groups.items(), key=lambda kv: _order(kv[0])):
        rows.append({"rule": rule, "window": window, "seeds": sorted(r["seed"] for r in members),
                     "n_seeds": len(members),
                     "stages_passed": _mean_std([r["stages_passed"] for r in members]),
                     "length_x_repeats": _mean_std([r["length_x_repeats"] for r in members]),
                     "wall_time_s": float(np.mean([r["wall_time_s"] for r in members])),
                     "iterations": float(np.mean([r["iterations"] for r in members]))})
    return rows


def _label(rule: str, window: int | None) -> str:
    return rule if window is None else f"{rule}, Δ = {window}"


def _running_mean(values: Sequence[float], window: int) -> np.ndarray:
    """The mean of each value and the ``window`` - 1 logged before it (fewer at the start)."""
    a = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(a, 0, 0.0))
    counts = np.minimum(np.arange(1, len(a) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(a) + 1) - counts]) / counts


def figure(runs: Sequence[dict[str, Any]], window: int = 20) -> Figure:
    """Top: the curriculum stage reached against iteration (left) and wall time (right). Bottom: the training
    batches' bit error (running mean of ``window`` logged batches; it jumps up when a harder stage starts).
    A color per (rule, Δ), a thin line per seed."""
    fig = Figure(figsize=(11.0, 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    (by_iteration, by_time), (error_by_iteration, error_by_time) = fig.subplots(2, 2, sharey="row")
    keys = sorted({(r["rule"], r["window"]) for r in runs}, key=_order)
    colors = distinct_colors(keys)
    labelled: set[tuple[str, int | None]] = set()
    for run in sorted(runs, key=lambda r: _order((r["rule"], r["window"]))):
        key = (run["rule"], run["window"])
        c = run["curve"]
        # the logged stage is the one each batch trained at; the stage reached after the last batch ends the line
        its = [*c["iteration"], run["iterations"]]
        secs = [*c["time_s"], run["wall_time_s"]]
        stage = [*c["stage"], run["stage_reached"]]
        label = _label(*key) if key not in labelled else None
        labelled.add(key)
        for ax, x in ((by_iteration, its), (by_time, secs)):
            ax.plot(x, stage, drawstyle="steps-post", lw=0.9, alpha=0.8, color=colors[key], label=label)
        smooth = _running_mean(c["bit_error"], window)
        for ax, x in ((error_by_iteration, c["iteration"]), (error_by_time, c["time_s"])):
            ax.plot(x, smooth, lw=0.8, alpha=0.8, color=colors[key])
    stages = runs[0]["stages"]
    if all(r["stages"] == stages for r in runs):
        by_iteration.set_yticks(range(len(stages)),
                                [f"{k}: {s['length']}×{s['max_repeats']}" for k, s in enumerate(stages)], fontsize=7)
    by_iteration.set(xlabel="iteration", ylabel="curriculum stage (length × max_repeats)")
    by_time.set(xlabel="wall time (s)")
    error_by_iteration.set(xlabel="iteration", ylabel=f"training bit error (running mean of {window} logged batches)")
    error_by_time.set(xlabel="wall time (s)")
    for ax in (by_iteration, by_time, error_by_iteration, error_by_time):
        ax.grid(alpha=0.3)
    by_iteration.legend(fontsize=7, loc="upper left")
    fig.suptitle("copy-repeat: curriculum stage reached and training bit error (one line per seed)", fontsize=9)
    return fig


def distinct_colors(keys: Sequence[Any]) -> dict[Any, Any]:
    """A color per key: the default cycle for up to 10 keys, else tab20 (no two keys share a color up to 20)."""
    if len(keys) <= 10:
        return {key: f"C{k}" for k, key in enumerate(keys)}
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    return {key: palette(k % 20) for k, key in enumerate(keys)}


def _options_label(run: dict[str, Any]) -> str:
    o = run["options"]
    units = int(o.get("sg_hidden", 0))
    extra = "".join(f", {k.removeprefix('sg_')} {o[k]}" for k in ("sg_steps", "sg_replay") if o.get(k, 1) not in (0, 1))
    return (f"{'linear' if units == 0 else f'{units} units'}{' + time' if o.get('sg_time') else ''}, "
            f"λ {o.get('sg_lambda', 0)}, lr {o.get('sg_lr')}, warm-up {o.get('sg_warmup', 0)}{extra}"
            f"{', calibrated' if o.get('sg_calibrate') else ''}")


def sg_quality_figure(runs: Sequence[dict[str, Any]], by_options: bool = False) -> Figure:
    """The synthetic gradient's cosine (left) and R² (right) against the true border gradients over the iterations,
    for the runs that measured it (``rule.sg_quality_every``): a color per (rule, Δ) (``by_options``: per run, labelled
    by its SG options), a thin line per seed; R² = 0 (what SG = 0 scores at best) dashed."""
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    cosine_ax, r2_ax = fig.subplots(1, 2)
    measured = [r for r in runs if r["sg_quality"]]
    keys = sorted({(r["rule"], r["window"]) for r in measured}, key=_order)
    colors = distinct_colors(keys)
    labelled: set[tuple[str, int | None]] = set()
    for index, run in enumerate(measured):
        key = (run["rule"], run["window"])
        q = run["sg_quality"]
        if by_options:
            label, color, style = _options_label(run), f"C{index % 10}", "-" if index < 10 else ":"
        else:
            label, color, style = (_label(*key) if key not in labelled else None), colors[key], "-"
        labelled.add(key)
        cosine_ax.plot(q["iteration"], q["cosine"], lw=0.9, color=color, ls=style, label=label)
        r2_ax.plot(q["iteration"], q["r2"], lw=0.9, color=color, ls=style)
    r2_ax.axhline(0.0, color="gray", ls="--", lw=0.8)
    cosine_ax.set(xlabel="iteration", ylabel="cosine(SG, true border gradient)")
    r2_ax.set(xlabel="iteration", ylabel="R² of SG against the true border gradient", ylim=(-2.0, 1.0))
    for ax in (cosine_ax, r2_ax):
        ax.grid(alpha=0.3)
    if by_options:                                   # long labels: below the panels
        fig.set_size_inches(11.0, 4.0 + 0.18 * len(measured))
        fig.legend(*cosine_ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncol=2)
    else:
        cosine_ax.legend(fontsize=7)
    fig.suptitle("synthetic gradient quality on the training batches (a BPTT pass on the same batch)", fontsize=9)
    return fig


SG_OPTIONS = ("sg_hidden", "sg_time", "sg_lambda", "sg_lr", "sg_warmup")
"""The rule options of a learned synthetic gradient that the SG-quality table shows."""


def sg_quality_table(runs: Sequence[dict[str, Any]], options: Sequence[str] = SG_OPTIONS) -> str:
    """One row per run that measured its SG: its rule options, the last measurement's cosine and R², the mean R²
    over the last quarter of the measurements, and the stage reached."""
    lines = ["| rule | " + " | ".join(options) + " | cosine (last) | R² (last) | R² (mean, last quarter) | "
             "stage reached |", "|---|" + "---|" * (len(options) + 4)]
    for run in runs:
        q = run["sg_quality"]
        if not q:
            continue
        tail = q["r2"][len(q["r2"]) * 3 // 4:]
        values = [str(run["options"].get(o, "–")) for o in options]
        lines.append(f"| `{run['rule']}` | " + " | ".join(values) + f" | {q['cosine'][-1]:.2f} | {q['r2'][-1]:.2f} | "
                     f"{sum(tail) / len(tail):.2f} | {run['stage_reached']} |")
    return "\n".join(lines)


def _pm(stat: dict[str, float | None], digits: int = 1) -> str:
    return f"{stat['mean']:.{digits}f} ± " + ("–" if stat["std"] is None else f"{stat['std']:.{digits}f}")


def markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The table as Markdown lines (header, separator, one row per (rule, Δ))."""
    lines = ["| rule | Δ | seeds | stages passed | longest solved length × repeats | wall time per run (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        window = "–" if r["window"] is None else str(r["window"])
        lines.append(f"| `{r['rule']}` | {window} | {r['n_seeds']} | {_pm(r['stages_passed'])} | "
                     f"{_pm(r['length_x_repeats'])} | {r['wall_time_s']:.0f} |")
    return lines


def write_report(paths: Sequence[str | Path], out: Path, name: str) -> list[dict[str, Any]]:
    """``out/data/<name>.json`` and ``out/figures/<name>.png`` of the runs in ``paths``; returns the table."""
    return write_runs_report([read_run(d) for d in run_dirs(paths)], out, name)


def write_runs_report(runs: Sequence[dict[str, Any]], out: Path, name: str) -> list[dict[str, Any]]:
    """:func:`write_report` of runs already read (:func:`read_run`)."""
    rows = table(runs)
    per_run = [{k: r[k] for k in ("run_dir", "rule", "window", "seed", "finished", "stage_reached", "final_streak",
                                  "stages_passed", "length", "repeats", "length_x_repeats", "wall_time_s",
                                  "iterations", "sg_quality")} for r in runs]
    first_logged = {}
    for r in runs:
        c, seen = r["curve"], {}
        for it, t, s in zip(c["iteration"], c["time_s"], c["stage"], strict=True):
            seen.setdefault(s, {"stage": s, "iteration": it, "time_s": None if math.isnan(t) else t})
        first_logged[r["run_dir"]] = list(seen.values())
    report = {"definition": "stages_passed = the stage reached at the end (0-based; +1 when it is the last stage and "
                            "checkpoints/last.pt has streak >= patience); longest = length x max_repeats of stage "
                            "stages_passed - 1, 0 when nothing was passed",
              "stages": runs[0]["stages"], "runs": per_run, "table": rows,
              "stage_first_logged": first_logged}
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "data" / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    figure(runs).savefig(out / "figures" / f"{name}.png", dpi=120)
    if any(r["sg_quality"] for r in runs):
        sg_quality_figure(runs).savefig(out / "figures" / f"{name}_sg_quality.png", dpi=120)
    return rows


def main(argv: list[str] | None = None) -> int:
    """The command line: write the report, print the table as Markdown."""
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.copy_repeat",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="a direct run or a Hydra multirun sweep dir")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--name", default="eprop3_copy_repeat",
                        help="the report's file name (data/NAME.json, figures/NAME.png)")
    parser.add_argument("--sg-quality-only", action="store_true",
                        help="runs that differ in their synthetic gradient's options (same rule, Δ and seed allowed): "
                             "only the SG-quality table, data/NAME.json and figures/NAME.png")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(d) for d in run_dirs(args.run_dirs)]
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if args.sg_quality_only:
        if not any(r["sg_quality"] for r in runs):
            parser.exit(2, f"{parser.prog}: error: no run measured its synthetic gradient (rule.sg_quality_every)\n")
        (args.out / "data").mkdir(parents=True, exist_ok=True)
        (args.out / "figures").mkdir(parents=True, exist_ok=True)
        keep = ("run_dir", "rule", "window", "seed", "options", "stage_reached", "sg_quality")
        data = {"runs": [{k: r[k] for k in keep} for r in runs if r["sg_quality"]]}
        (args.out / "data" / f"{args.name}.json").write_text(json.dumps(data, indent=1) + "\n")
        sg_quality_figure(runs, by_options=True).savefig(args.out / "figures" / f"{args.name}.png", dpi=120)
        print(sg_quality_table(runs))
        return 0
    try:
        rows = write_runs_report(runs, args.out, args.name)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print("\n".join(markdown(rows)))
    if any(r["sg_quality"] for r in runs):
        print()
        print(sg_quality_table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
