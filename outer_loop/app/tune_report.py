"""What ``l2l-tune`` writes about a study: the trial table (``<out>/<study>_trials.csv``, printed at the end) and,
with ``--plots``, the optimization history and parameter importances (Optuna's matplotlib figures)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial of ``study``: number, state, value, sampled params, seconds, run dir, error."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if (
            trial.datetime_complete and trial.datetime_start) else None
        rows.append({"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value,
                     "params": dict(trial.params), "seconds": seconds,
                     "run_dir": trial.user_attrs.get("run_dir", ""), "error": trial.user_attrs.get("error", "")})
    return rows


def write_trials_table(study: Any, path: Path, objective: str) -> list[dict[str, Any]]:
    """``path`` (CSV): trial, state, the objective, one column per searched key, seconds, run_dir, error."""
    rows = trial_rows(study)
    keys = sorted({k for r in rows for k in r["params"]})
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["trial", "state", objective, *keys, "seconds", "run_dir", "error"])
        for r in rows:
            writer.writerow([r["trial"], r["state"], "" if r["value"] is None else r["value"],
                             *(r["params"].get(k, "") for k in keys),
                             "" if r["seconds"] is None else round(r["seconds"], 3), r["run_dir"], r["error"]])
    return rows


def table_lines(rows: list[dict[str, Any]], objective: str) -> list[str]:
    """The trial table for the terminal: trial, state, objective, the sampled values."""
    lines = [f"  {'trial':>5}  {'state':<8}  {objective:>14}  params"]
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.6g}"
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        lines.append(f"  {r['trial']:>5}  {r['state']:<8}  {value:>14}  {params}")
    return lines


def write_study_plots(study: Any, out: Path, name: str) -> list[Path]:
    """``<out>/<name>_history.png`` (the objective per trial and the best so far) and, with at least two
    complete trials and a searched parameter, ``<name>_importance.png`` (fANOVA parameter importances)."""
    import optuna
    from matplotlib import pyplot
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as figures

    written = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        plots = [("history", figures.plot_optimization_history)]
        if len(complete) >= 2 and any(t.params for t in complete):
            plots.append(("importance", figures.plot_param_importances))
        for suffix, plot in plots:
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:   # e.g. every complete trial sampled the same values
                print(f"l2l-tune: no {suffix} figure: {' '.join(str(error).split())[:200]}", flush=True)
                continue
            path = out / f"{name}_{suffix}.png"
            axes.figure.savefig(path, dpi=100, bbox_inches="tight")
            pyplot.close(axes.figure)
            written.append(path)
    return written
