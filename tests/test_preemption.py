"""Preemption: SIGUSR1 (SLURM's warning) checkpoints and stops, requeues the SLURM job, and outer.resume=auto
continues the run from its own checkpoint; under torchrun SIGTERM does the same for every rank."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from l2l.outer_loop.checkpoint import load_checkpoint

TINY_META = ["experiment=smoke", "task.n_steps=30", "network.n_hidden=8", "error_module.n_hidden=6",
             "error_module.code_neurons=4", "outer.batch_size=2", "outer.progress=false", "eval.enabled=false",
             "outer.figure_every=0", "outer.log_every=1"]


def _wait_for_lines(path: Path, count: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not (path.is_file() and len(path.read_text().splitlines()) >= count):
        assert time.time() < end, "timed out"
        assert process.poll() is None, process.stderr.read()[-800:]
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _iterations(run_dir: Path) -> list[int]:
    return [json.loads(line)["iteration"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigusr1_checkpoints_requeues_and_auto_resume_continues(tmp_path):
    run_dir = tmp_path / "run"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "scontrol_calls"
    (fake_bin / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (fake_bin / "scontrol").chmod(0o755)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLURM_JOB_ID": "4242", "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    args = [sys.executable, "-m", "l2l.outer_loop.app.train", *TINY_META, "outer.iterations=2000",
            "outer.checkpoint_every=1000", "outer.resume=auto", f"hydra.run.dir={run_dir}"]
    run = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(run_dir / "metrics.jsonl", 3, run)
    run.send_signal(signal.SIGUSR1)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGUSR1, err[-800:]
    assert "stopped by signal 10" in err and "SLURM job 4242 requeued" in err
    assert calls.read_text().split() == ["requeue", "4242"]
    stopped = load_checkpoint(run_dir)["iteration"]  # the checkpoint of the iteration it stopped after
    assert _iterations(run_dir)[-1] == stopped - 1
    # the requeued job runs the same command: it finds its checkpoint and continues the metrics
    again = [a if not a.startswith("outer.iterations=") else f"outer.iterations={stopped + 3}" for a in args]
    out = subprocess.run(again, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert _iterations(run_dir) == list(range(stopped + 3))
    # a fresh run dir with outer.resume=auto simply starts
    fresh = tmp_path / "fresh"
    first_run = [a for a in args if not a.startswith(("outer.iterations=", "hydra.run.dir="))]
    out = subprocess.run([*first_run, "outer.iterations=2", f"hydra.run.dir={fresh}"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert _iterations(fresh) == [0, 1]


@pytest.mark.slow
def test_sigterm_to_torchrun_checkpoints_every_rank_and_stops(tmp_path):
    run_dir = tmp_path / "run"
    l2l_train = os.path.join(os.path.dirname(sys.executable), "l2l-train")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update({"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    run = subprocess.Popen([*launcher, l2l_train, *[a for a in TINY_META if not a.startswith("outer.batch_size")],
                            "outer.batch_size=4", "outer.iterations=2000", "outer.checkpoint_every=1000",
                            "outer.threads=1", f"hydra.run.dir={run_dir}"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(run_dir / "metrics.jsonl", 3, run)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0
    stopped = load_checkpoint(run_dir)["iteration"]
    assert stopped >= 3 and _iterations(run_dir)[-1] == stopped - 1, err[-1500:]
    assert err.count(f"stopped by signal 15 after iteration {stopped - 1}") == 2, err[-3000:]  # both, the same
