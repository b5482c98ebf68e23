"""Sweeps survive bad jobs: a failed job of ``l2l-train -m`` is recorded and the others run.

Inside a multirun job, ``l2l-train`` catches the job's error (a refused config, a diverged run, any exception),
prints one line naming the job and its overrides, and writes ``<sweep dir>/failed_jobs/<job>.json`` (the line,
the overrides, the job's run dir) and ``<job>.log`` (the traceback); the job then returns normally, so the
basic, joblib and submitit launchers go on with the next one. A job that finishes writes
``<sweep dir>/jobs/<job>.json`` (its overrides, scores and run dir). At the end of the sweep, :class:`SweepReport`
(a Hydra callback in ``conf/config.yaml``) writes ``<sweep dir>/summary.csv`` (one row per job: job, status,
overrides, held-out scores, final training metrics, run dir, error), prints it with the sweep dir, lists the
failed jobs and exits with status 1 if there are any.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

FAILED = "failed_jobs"
JOBS = "jobs"
SUMMARY = "summary.csv"


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (a sweep)."""
    if not HydraConfig.initialized():
        return False
    mode = HydraConfig.get().mode
    return mode == RunMode.MULTIRUN


def job_prefix() -> str:
    """``"job N "`` in a sweep job, ``""`` otherwise: what starts this job's log lines and progress bar."""
    return f"job {HydraConfig.get().job.num} " if in_multirun() else ""


def label_job_output() -> None:
    """In a sweep job, start every log line with ``job N |`` (parallel launchers interleave the jobs' lines)."""
    prefix = job_prefix()
    if not prefix:
        return
    for handler in logging.getLogger().handlers:
        fmt = handler.formatter._fmt if handler.formatter is not None else "%(message)s"
        if not fmt.startswith(prefix):
            handler.setFormatter(logging.Formatter(f"{prefix}| {fmt}"))


def record_failure(error: BaseException, line: str) -> str:
    """Write the failure of this sweep job (one line, overrides, traceback) into the sweep dir; returns the
    one line printed for it (``job N (overrides): line``)."""
    hydra = HydraConfig.get()
    job = hydra.job.num
    overrides = list(hydra.overrides.task)
    folder = Path(hydra.sweep.dir) / FAILED
    folder.mkdir(parents=True, exist_ok=True)
    record = {"job": job, "overrides": overrides, "run_dir": hydra.runtime.output_dir, "error": line}
    (folder / f"{job}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (folder / f"{job}.log").write_text("".join(traceback.format_exception(error)), encoding="utf-8")
    return f"job {job} ({' '.join(overrides) or 'no overrides'}): {line}"


def job_scores(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers of a run's summary.json a sweep table shows: ``eval/<k>`` (a meta run's held-out scores),
    ``final_eval/<k>`` (a direct run's held-out batch) and ``train/<k>`` (the last training record)."""
    scores: dict[str, float] = {}
    for node in ("eval", "final_eval", "final_train"):
        values = summary.get(node)
        if isinstance(values, dict):
            prefix = "train" if node == "final_train" else node
            scores.update({f"{prefix}/{k}": v for k, v in values.items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration"})
    return scores


def record_success(summary: dict[str, Any]) -> None:
    """Write this sweep job's row (overrides, scores, run dir) into the sweep dir."""
    hydra = HydraConfig.get()
    folder = Path(hydra.sweep.dir) / JOBS
    folder.mkdir(parents=True, exist_ok=True)
    record = {"job": hydra.job.num, "status": "ok", "overrides": list(hydra.overrides.task),
              "scores": job_scores(summary), "run_dir": hydra.runtime.output_dir}
    (folder / f"{hydra.job.num}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _records(folder: Path, unreadable: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
        try:
            rows.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            rows.append({"job": path.stem, "overrides": [], "error": unreadable})
    return rows


def write_summary(sweep_dir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """``<sweep_dir>/summary.csv`` from the jobs' records (finished and failed); returns it and its rows."""
    rows = [{**r, "status": r.get("status", "ok")} for r in _records(sweep_dir / JOBS, "(its record is unreadable)")]
    rows += [{**r, "status": "failed"} for r in _records(sweep_dir / FAILED, "(its failure record is unreadable)")]
    rows.sort(key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else 0)
    keys = sorted({k for r in rows for k in r.get("scores", {})}, key=lambda k: (not k.startswith("eval"), k))
    path = sweep_dir / SUMMARY
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["job", "status", "overrides", *keys, "run_dir", "error"])
        for r in rows:
            scores = r.get("scores", {})
            writer.writerow([r["job"], r["status"], " ".join(r.get("overrides", [])),
                             *(scores.get(k, "") for k in keys), r.get("run_dir", ""), r.get("error", "")])
    return path, rows


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The sweep table for the terminal: job, status, the first held-out score, the overrides that differ
    between the jobs (summary.csv has every override and score)."""
    keys = sorted({k for r in rows for k in r.get("scores", {}) if not k.startswith("train/")})
    shown = keys[0] if keys else None
    shared = set.intersection(*(set(r.get("overrides", [])) for r in rows)) if len(rows) > 1 else set()
    lines = [f"  {'job':>4}  {'status':<6}  {shown or '':>16}  overrides"]
    for r in rows:
        value = r.get("scores", {}).get(shown, "") if shown else ""
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        own = [o for o in r.get("overrides", []) if o not in shared]
        lines.append(f"  {r['job']!s:>4}  {r['status']:<6}  {text:>16}  {' '.join(own)}")
    return lines


class SweepReport(Callback):
    """Prints the sweep dir at the start of a sweep; at its end writes and prints summary.csv, lists the failed
    jobs and exits 1 if any."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for folder in (FAILED, JOBS):                            # a sweep run again into its dir starts clean
            shutil.rmtree(sweep_dir / folder, ignore_errors=True)
        print(f"l2l-train: sweep dir {sweep_dir}", file=sys.stderr)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        path, rows = write_summary(sweep_dir)
        print(f"l2l-train: sweep of {len(rows)} jobs in {sweep_dir}; the table is {path}:\n"
              + "\n".join(summary_lines(rows)), file=sys.stderr)
        failed = [r for r in rows if r["status"] == "failed"]
        if not failed:
            return
        lines = [f"  job {r['job']} ({' '.join(r['overrides']) or 'no overrides'}): {r['error']}" for r in failed]
        print(f"l2l-train: {len(failed)} job(s) of the sweep failed (details in {sweep_dir / FAILED}):\n"
              + "\n".join(lines), file=sys.stderr)
        raise SystemExit(1)
