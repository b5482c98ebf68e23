"""Sweeps survive bad jobs: a failed job of ``l2l-train -m`` is recorded and the others run.

Inside a multirun job, ``l2l-train`` catches the job's error (a refused config, a diverged run, any exception),
prints one line naming the job and its overrides, and writes ``<sweep dir>/failed_jobs/<job>.json`` (the line,
the overrides, the job's run dir) and ``<job>.log`` (the traceback); the job then returns normally, so the
basic, joblib and submitit launchers go on with the next one. At the end of the sweep, :class:`FailedJobsReport`
(a Hydra callback in ``conf/config.yaml``) lists the failed jobs and exits with status 1.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

FAILED = "failed_jobs"


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (a sweep)."""
    if not HydraConfig.initialized():
        return False
    mode = HydraConfig.get().mode
    return mode == RunMode.MULTIRUN


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


class FailedJobsReport(Callback):
    """Prints the sweep dir at the start of a sweep; at its end lists the failed jobs and exits 1 if any."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        shutil.rmtree(sweep_dir / FAILED, ignore_errors=True)   # a sweep run again into its dir starts clean
        print(f"l2l-train: sweep dir {sweep_dir}", file=sys.stderr)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = []
        for path in sorted((sweep_dir / FAILED).glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
            try:
                failed.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                failed.append({"job": path.stem, "overrides": [], "error": "(its failure record is unreadable)"})
        if not failed:
            return
        lines = [f"  job {r['job']} ({' '.join(r['overrides']) or 'no overrides'}): {r['error']}" for r in failed]
        print(f"l2l-train: {len(failed)} job(s) of the sweep failed (details in {sweep_dir / FAILED}):\n"
              + "\n".join(lines), file=sys.stderr)
        raise SystemExit(1)
