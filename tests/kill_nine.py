"""kill -9 at random moments of a meta-training run and its resumes; the table of what each kill cost.

    python tests/kill_nine.py --kills 40 --out docs/data/kill_nine.json

Every attempt starts ``l2l-train ... outer.resume=auto`` in the same run dir (a checkpoint every iteration) and
sends SIGKILL after a random delay (uniform in [0.2, --max-delay] s: the start-up, the resume, training and
checkpoint writes all get hit). After each kill: is ``metrics.jsonl`` whole (parses, starts at iteration 0,
no gap) and how many logged iterations the checkpoint lacks. At the end one resume runs to the last iteration,
and its metrics and weights are compared with an uninterrupted run's, bit for bit. ``tests/test_run_engine.py``
runs it with a few kills (slow tier).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

RUN = ["experiment=smoke", "task.n_steps=30", "network.n_hidden=8", "error_module.n_hidden=6",
       "error_module.code_neurons=4", "outer.batch_size=2", "outer.progress=false", "eval.enabled=false",
       "outer.figure_every=0", "outer.checkpoint_every=1", "outer.log_every=1", "seed=7"]


def l2l_train(args: list[str], run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "l2l.outer_loop.app.train", *args, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def rows(run_dir: Path) -> list[dict] | None:
    """The logged records, or None when metrics.jsonl is damaged (unparsable, not from 0, a gap)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError:
        return None
    if [r["iteration"] for r in records] != list(range(len(records))):
        return None
    return records


def checkpoint_iteration(run_dir: Path) -> int:
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return 0
    return int(torch.load(last, map_location="cpu", weights_only=True)["iteration"])


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def kill_nine(out: Path, kills: int, iterations: int, max_delay: float, seed: int) -> dict:
    """Run the experiment in ``out``; returns the table (also what --out writes)."""
    draw = random.Random(seed)
    args = [*RUN, f"outer.iterations={iterations}"]
    whole, run_dir = out / "whole", out / "killed"
    assert l2l_train(args, whole).wait() == 0, "the uninterrupted run failed"
    table = []
    before = 0
    for k in range(kills):
        delay = draw.uniform(0.2, max_delay)
        process = l2l_train([*args, "outer.resume=auto"], run_dir)
        started = time.time()
        try:
            process.wait(delay)
            finished = True
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
            finished = False
        records = rows(run_dir)
        kept = checkpoint_iteration(run_dir)
        logged = len(records) if records is not None else None
        phase = ("finished" if finished else "start-up or resume (no new checkpoint)" if kept == before
                 else "after the last iteration" if kept == iterations else "training")
        table.append({"kill": k, "delay_s": round(delay, 3), "killed_after_s": round(time.time() - started, 3),
                      "phase": phase, "metrics_whole": records is not None,
                      "checkpointed": kept, "logged": logged,
                      "lost": (logged - kept) if logged is not None else None})
        before = kept
        if finished:
            break
    final = l2l_train([*args, "outer.resume=auto"], run_dir)
    _, err = final.communicate(timeout=3600)
    assert final.returncode == 0, err[-2000:]
    reference = torch.load(whole / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    resumed = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    bit_exact = all(torch.equal(reference["meta"][k], resumed["meta"][k]) for k in reference["meta"])
    same_metrics = without_time(rows(run_dir) or []) == without_time(rows(whole) or [])
    lost = [r["lost"] for r in table if r["lost"] is not None]
    phases = {p: sum(r["phase"] == p for r in table) for p in sorted({r["phase"] for r in table})}
    return {"iterations": iterations, "kills": sum(r["phase"] != "finished" for r in table), "seed": seed,
            "max_delay_s": max_delay, "kills_by_phase": phases,
            "metrics_whole_after_every_kill": all(r["metrics_whole"] for r in table),
            "most_lost": max(lost, default=0), "mean_lost": sum(lost) / max(1, len(lost)),
            "final_weights_bit_exact": bit_exact, "final_metrics_equal": same_metrics, "per_kill": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--max-delay", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("outputs/kill_nine"))
    parser.add_argument("--out", type=Path, default=None)
    options = parser.parse_args()
    if options.work.exists() and any(options.work.iterdir()):
        parser.error(f"--work {str(options.work)!r} is not empty: give a new folder")
    report = kill_nine(options.work, options.kills, options.iterations, options.max_delay, options.seed)
    summary = {k: v for k, v in report.items() if k != "per_kill"}
    print(json.dumps(summary, indent=2))
    if options.out is not None:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
