"""The separating copy-repeat experiment of docs/eprop3.md: each arm at its validation-chosen learning rate.

    python -m l2l.outer_loop.reports.eprop3_arms --grid GRID_DIR --test TEST_DIR --out docs --name eprop3_arms

Every direct run below GRID_DIR (the learning-rate grid, one validation training seed) and TEST_DIR (the test seeds)
is read with :func:`l2l.outer_loop.reports.copy_repeat.read_run` plus its arm, learning rate and probe curves. An
arm is the rule with its synthetic gradient (``eprop3`` and ``tbptt_sg``: ``learned``, ``zero`` or ``oracle``).

The continuous metric is ``probe<k>_bits_wrong``: wrong answer bits per held-out sequence of curriculum stage k,
scored at every evaluation whatever stage the run is at (``train.curriculum.probe_stages``); a run's final value is
the mean over its last ``LAST_EVALUATIONS`` evaluations. A grid run's validation score is (stage reached, −(final
bits wrong summed over the probe stages)), compared lexicographically; an arm's chosen learning rate is the one with
the highest score (the oracle SG's gradient is BPTT's, so it takes BPTT's). Writes ``<out>/data/<name>.json`` (the
grid, the arms table, each run's finals; the curves stay in the runs' logs), ``<out>/figures/<name>.png`` (the
curriculum stage and the training bit error against iteration and wall time), ``<out>/figures/<name>_probe<k>.png``
(bits wrong at probe stage k against iteration and wall time, per Δ) and ``<out>/figures/<name>_sg_quality.png``
(the learned SGs' cosine and R² against the true border gradients); prints both tables as Markdown. ``--pilots
DIR``: runs that differ in their SG options (on the validation seed), summarized in a selection table (mean cosine
and R², R² in the second half, the share of measurements with R² > 0) and ``<out>/figures/<name>_sg_selection.png``.
"""

from __future__ import annotations

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
from l2l.outer_loop.reports.copy_repeat import (
    RUN_FILES,
    distinct_colors,
    figure,
    metrics_records,
    read_run,
    sg_quality_figure,
)

LAST_EVALUATIONS = 5
ARM_ORDER = ("bptt", "eprop3 (oracle)", "eprop3 (learned)", "eprop3 (zero)", "tbptt_sg (learned)", "tbptt", "eprop")
SG_RULES = ("eprop3", "tbptt_sg")
ORACLE_LR_FROM = {"eprop3 (oracle)": "bptt", "tbptt_sg (oracle)": "bptt"}


def find_runs(root: str | Path) -> list[Path]:
    """Every directory below ``root`` (itself included) with summary.json or metrics.jsonl(.gz), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    found = sorted({p.parent for f in RUN_FILES for p in root.rglob(f)})
    if not found:
        raise ValueError(f"{root}: no run inside (no summary.json or metrics.jsonl below it)")
    return found


def arm_name(rule: dict[str, Any]) -> str:
    """``rule`` for most rules; ``rule (synthetic_gradient)`` for e-prop 3 and truncated BPTT with an SG."""
    name = str(rule.get("name"))
    return f"{name} ({rule.get('synthetic_gradient', 'learned')})" if name in SG_RULES else name


def read_arm_run(run_dir: str | Path) -> dict[str, Any]:
    """:func:`read_run` plus ``arm``, ``lr`` and ``probes``: {k: {"iteration", "time_s", "bits_wrong"}}."""
    run = read_run(run_dir)
    cfg = OmegaConf.to_container(OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml"), resolve=True)
    records = metrics_records(Path(run_dir))
    probes: dict[str, dict[str, list[float]]] = {}
    for r in records:
        for key, value in r.items():
            if key.startswith("probe") and key.endswith("_bits_wrong") and "stage" in r:
                series = probes.setdefault(key.removeprefix("probe").removesuffix("_bits_wrong"),
                                           {"iteration": [], "time_s": [], "bits_wrong": []})
                series["iteration"].append(int(r["iteration"]))
                series["time_s"].append(float(r.get("seconds", math.nan)))
                series["bits_wrong"].append(float(value))
    if not probes:
        raise ValueError(f"{run_dir}: no probe scores in metrics.jsonl (train.curriculum.probe_stages)")
    return {**run, "arm": arm_name(cfg.get("rule") or {}), "lr": float(cfg["train"]["lr"]), "probes": probes}


def final_bits_wrong(run: dict[str, Any], stage: str) -> float:
    """The mean of probe ``stage``'s bits wrong over the run's last ``LAST_EVALUATIONS`` evaluations."""
    return float(np.mean(run["probes"][stage]["bits_wrong"][-LAST_EVALUATIONS:]))


def validation_score(run: dict[str, Any]) -> tuple[int, float]:
    """(stage reached, −Σ_k final bits wrong of probe k): higher is better."""
    return run["stage_reached"], -sum(final_bits_wrong(run, k) for k in run["probes"])


def _order(arm: str) -> tuple[int, str]:
    return (ARM_ORDER.index(arm) if arm in ARM_ORDER else len(ARM_ORDER), arm)


def grid_table(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm: each learning rate's stage reached and final probe bits wrong, and the chosen learning rate."""
    arms: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        arms.setdefault(run["arm"], []).append(run)
    rows = []
    for arm, members in sorted(arms.items(), key=lambda kv: _order(kv[0])):
        lrs = sorted({r["lr"] for r in members})
        if len(lrs) != len(members):
            raise ValueError(f"arm {arm}: several grid runs share a learning rate ({[r['run_dir'] for r in members]})")
        best = max(members, key=validation_score)
        rows.append({"arm": arm, "window": best["window"], "seed": best["seed"], "chosen_lr": best["lr"],
                     "by_lr": [{"lr": r["lr"], "stage_reached": r["stage_reached"],
                                "bits_wrong": {k: final_bits_wrong(r, k) for k in sorted(r["probes"], key=int)}}
                               for r in sorted(members, key=lambda r: r["lr"])]})
    return rows


def chosen_learning_rates(grid: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Arm -> chosen learning rate; the oracle arms take BPTT's."""
    chosen = {row["arm"]: row["chosen_lr"] for row in grid}
    for arm, source in ORACLE_LR_FROM.items():
        if source in chosen:
            chosen[arm] = chosen[source]
    return chosen


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else None}


def arms_table(runs: Sequence[dict[str, Any]], chosen: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Per (arm, Δ): seeds, mean ± std (ddof 1) of stages passed, length × repeats, final bits wrong per probe stage,
    the learned SG's cosine and R² (mean over the last quarter of its measurements), mean wall time. With
    ``chosen``, every run must use its arm's chosen learning rate."""
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for run in runs:
        if chosen is not None and run["arm"] in chosen and not math.isclose(run["lr"], chosen[run["arm"]]):
            raise ValueError(f"{run['run_dir']}: lr {run['lr']} is not arm {run['arm']}'s chosen {chosen[run['arm']]}")
        groups.setdefault((run["arm"], run["window"]), []).append(run)
    rows = []
    for (arm, window), members in sorted(groups.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1] or 0)):
        seeds = [r["seed"] for r in members]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"arm {arm}, Δ {window}: a seed appears twice ({sorted(seeds)})")
        stages = sorted(members[0]["probes"], key=int)
        row = {"arm": arm, "window": window, "lr": members[0]["lr"], "seeds": sorted(seeds), "n_seeds": len(members),
               "finished": sum(r["finished"] for r in members), "iterations": float(np.mean([r["iterations"]
                                                                                            for r in members])),
               "stages_passed": _mean_std([r["stages_passed"] for r in members]),
               "length_x_repeats": _mean_std([r["length_x_repeats"] for r in members]),
               "bits_wrong": {k: _mean_std([final_bits_wrong(r, k) for r in members]) for k in stages},
               "wall_time_s": float(np.mean([r["wall_time_s"] for r in members]))}
        quality = [r["sg_quality"] for r in members if r["sg_quality"]]
        if quality:
            tail = lambda q, key: float(np.mean(q[key][len(q[key]) * 3 // 4:]))  # noqa: E731
            row["sg_cosine"] = _mean_std([tail(q, "cosine") for q in quality])
            row["sg_r2"] = _mean_std([tail(q, "r2") for q in quality])
        rows.append(row)
    return rows


SG_SELECTION_OPTIONS = ("sg_hidden", "sg_lr", "sg_steps", "sg_replay", "sg_calibrate")
"""The synthetic-gradient options the selection table shows (the others are shared by every pilot)."""


def sg_selection_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run that measured its SG: its options, the mean cosine and R² over all measurements and over the second
    half, the fraction of measurements with R² > 0, the stage reached and the wall time."""
    rows = []
    for run in runs:
        q = run["sg_quality"]
        if not q:
            continue
        half = len(q["r2"]) // 2
        rows.append({"run_dir": run["run_dir"], "options": {k: run["options"].get(k) for k in SG_SELECTION_OPTIONS},
                     "measurements": len(q["r2"]), "cosine": float(np.mean(q["cosine"])), "r2": float(np.mean(q["r2"])),
                     "r2_second_half": float(np.mean(q["r2"][half:])),
                     "r2_positive": float(np.mean([v > 0 for v in q["r2"]])), "stage_reached": run["stage_reached"],
                     "wall_time_s": run["wall_time_s"]})
    return rows


def sg_selection_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The SG pilots as Markdown: one row per run."""
    heads = " | ".join(SG_SELECTION_OPTIONS)
    lines = [f"| {heads} | cosine (mean) | R² (mean) | R² (mean, 2nd half) | share of R² > 0 | stage reached | "
             "wall time (s) |", "|---|" + "---|" * (len(SG_SELECTION_OPTIONS) + 5)]
    for r in rows:
        values = " | ".join(str(r["options"][k]) for k in SG_SELECTION_OPTIONS)
        lines.append(f"| {values} | {r['cosine']:.2f} | {r['r2']:.2f} | {r['r2_second_half']:.2f} | "
                     f"{r['r2_positive']:.2f} | {r['stage_reached']} | {r['wall_time_s']:.0f} |")
    return lines


def _pm(stat: dict[str, float | None] | None, digits: int = 1) -> str:
    if stat is None:
        return "–"
    return f"{stat['mean']:.{digits}f} ± " + ("–" if stat["std"] is None else f"{stat['std']:.{digits}f}")


def grid_markdown(grid: Sequence[dict[str, Any]]) -> list[str]:
    """The validation grid: one row per (arm, learning rate), the chosen one in bold."""
    lines = ["| arm | Δ | lr | stage reached | bits wrong per sequence (probe stages) |", "|---|---|---|---|---|"]
    for row in grid:
        for entry in row["by_lr"]:
            bold = "**" if entry["lr"] == row["chosen_lr"] else ""
            bits = ", ".join(f"{k}: {v:.1f}" for k, v in entry["bits_wrong"].items())
            window = "–" if row["window"] is None else str(row["window"])
            lines.append(f"| `{row['arm']}` | {window} | {bold}{entry['lr']:g}{bold} | {entry['stage_reached']} | "
                         f"{bits} |")
    return lines


def arms_markdown(rows: Sequence[dict[str, Any]], stages: Sequence[dict[str, int]]) -> list[str]:
    """The arms table (rule × Δ, mean ± std over seeds)."""
    probe_keys = sorted(rows[0]["bits_wrong"], key=int) if rows else []
    probe_heads = [f"bits wrong, {stages[int(k)]['length']}×{stages[int(k)]['max_repeats']}" for k in probe_keys]
    lines = ["| arm | Δ | lr | seeds | stages passed | longest solved length × repeats | " + " | ".join(probe_heads)
             + " | SG cosine | SG R² | wall time per run (s) |",
             "|---|---|---|---|---|---|" + "---|" * (len(probe_keys) + 3)]
    for r in rows:
        window = "–" if r["window"] is None else str(r["window"])
        bits = " | ".join(_pm(r["bits_wrong"][k]) for k in probe_keys)
        lines.append(f"| `{r['arm']}` | {window} | {r['lr']:g} | {r['n_seeds']} | {_pm(r['stages_passed'])} | "
                     f"{_pm(r['length_x_repeats'])} | {bits} | {_pm(r.get('sg_cosine'), 2)} | "
                     f"{_pm(r.get('sg_r2'), 2)} | {r['wall_time_s']:.0f} |")
    return lines


def probe_figure(runs: Sequence[dict[str, Any]], stage: str) -> Figure:
    """Bits wrong per held-out sequence of probe ``stage`` against iteration (left) and wall time (right), one row
    per Δ (the arms without a window in every row): thin lines per seed, the mean over seeds thick (by iteration)."""
    windows = sorted({r["window"] for r in runs if r["window"] is not None}) or [None]
    fig = Figure(figsize=(11.0, 3.6 * len(windows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(len(windows), 2, sharey=True, squeeze=False))
    arms = sorted({r["arm"] for r in runs}, key=_order)
    colors = distinct_colors(arms)
    for (by_iteration, by_time), window in zip(axes, windows, strict=True):
        shown = [r for r in runs if r["window"] in (window, None)]
        for arm in arms:
            members = [r for r in shown if r["arm"] == arm]
            if not members:
                continue
            for r in members:
                p = r["probes"][stage]
                by_iteration.plot(p["iteration"], p["bits_wrong"], lw=0.5, alpha=0.35, color=colors[arm])
                by_time.plot(p["time_s"], p["bits_wrong"], lw=0.5, alpha=0.35, color=colors[arm])
            common = min(len(r["probes"][stage]["iteration"]) for r in members)
            mean = np.mean([r["probes"][stage]["bits_wrong"][:common] for r in members], axis=0)
            by_iteration.plot(members[0]["probes"][stage]["iteration"][:common], mean, lw=1.8, color=colors[arm],
                              label=f"{arm} ({len(members)} seeds)")
        title = "" if window is None else f"Δ = {window}: "
        by_iteration.set(xlabel="iteration", ylabel="wrong bits per sequence", title=f"{title}by iteration")
        by_time.set(xlabel="wall time (s, one thread)", title=f"{title}by wall time")
        for ax in (by_iteration, by_time):
            ax.grid(alpha=0.3)
        by_iteration.legend(fontsize=7)
    fig.suptitle(f"copy-repeat: held-out wrong bits per sequence at probe stage {stage} (thin: seeds, thick: mean)",
                 fontsize=9)
    return fig


def write_report(grid_root: Path, test_root: Path, out: Path, name: str,
                 pilots_root: Path | None = None) -> dict[str, Any]:
    """Read the roots, write the data and figures (module docstring); returns the data."""
    pilots = [read_run(d) for d in find_runs(pilots_root)] if pilots_root is not None else []
    grid_runs = [read_arm_run(d) for d in find_runs(grid_root)]
    test_runs = [read_arm_run(d) for d in find_runs(test_root)]
    grid = grid_table(grid_runs)
    rows = arms_table(test_runs, chosen_learning_rates(grid))
    stages = test_runs[0]["stages"]
    keep = ("run_dir", "arm", "rule", "window", "seed", "lr", "finished", "stage_reached", "stages_passed",
            "length_x_repeats", "wall_time_s", "iterations")

    def final(run: dict[str, Any]) -> dict[str, Any]:          # the curves stay in the runs' raw logs
        return {**{k: run[k] for k in keep}, "bits_wrong": {k: final_bits_wrong(run, k) for k in run["probes"]}}

    data = {"last_evaluations": LAST_EVALUATIONS, "stages": stages, "sg_selection": sg_selection_rows(pilots),
            "grid": grid, "table": rows,
            "runs": {"grid": [final(r) for r in grid_runs], "test": [final(r) for r in test_runs]}}
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "data" / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    for stage in sorted(test_runs[0]["probes"], key=int):
        probe_figure(test_runs, stage).savefig(out / "figures" / f"{name}_probe{stage}.png", dpi=110)
    by_arm = [{**r, "rule": r["arm"]} for r in test_runs]           # a color per arm, not per rule
    figure(by_arm).savefig(out / "figures" / f"{name}.png", dpi=110)
    if any(r["sg_quality"] for r in test_runs):
        sg_quality_figure(by_arm).savefig(out / "figures" / f"{name}_sg_quality.png", dpi=110)
    if pilots:
        sg_quality_figure(pilots, by_options=True).savefig(out / "figures" / f"{name}_sg_selection.png", dpi=110)
    return data


def main(argv: list[str] | None = None) -> int:
    """The command line: write the report, print the grid and the arms table as Markdown."""
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.eprop3_arms", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, required=True, help="the learning-rate grid's runs (validation seed)")
    parser.add_argument("--test", type=Path, required=True, help="the test seeds' runs")
    parser.add_argument("--pilots", type=Path, help="runs that measured their SG, to choose its options (optional)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--name", default="eprop3_arms", help="data/NAME.json, figures/NAME*.png")
    args = parser.parse_args(argv)
    try:
        data = write_report(args.grid, args.test, args.out, args.name, args.pilots)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if data["sg_selection"]:
        print("\n".join(sg_selection_markdown(data["sg_selection"])))
        print()
    print("\n".join(grid_markdown(data["grid"])))
    print()
    print("\n".join(arms_markdown(data["table"], data["stages"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
