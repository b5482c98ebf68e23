"""The one run engine (outer_loop/algorithm/run_loop.py) and the run-dir rules of l2l-train: no run is ever
lost or overwritten. Each case here failed before the engine: a second run overwrote the first, a failed
resume emptied metrics.jsonl, direct training never checkpointed, a sweep died at its first bad job, a signal
waited for the end of a long iteration."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_reliability import TINY_DIRECT, TINY_META, l2l_train, l2l_train_process, rows_of, without_time

from l2l.outer_loop.algorithm import run_loop
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.run_dir import RunDirUsedError
from l2l.outer_loop.app.train import run
from l2l.outer_loop.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from l2l.outer_loop.guard import TrainingInterrupted

ROOT = Path(__file__).resolve().parents[1]


def files_of(run_dir: Path) -> dict[str, str]:
    """Every file of the run dir (but the lock) and the hash of its bytes."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


def meta_cfg(*extra: str):
    return compose_config([*TINY_META, "outer.iterations=4", "outer.checkpoint_every=2", "outer.log_every=1", *extra])


def direct_cfg(*extra: str):
    return compose_config([*TINY_DIRECT, "train.iterations=6", "train.checkpoint_every=2", "train.log_every=1",
                           *extra])


# ---- a run dir is never overwritten -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [meta_cfg, direct_cfg], ids=["meta", "direct"])
def test_a_second_run_into_a_used_run_dir_is_refused_and_touches_nothing(make, tmp_path):
    run(make(), tmp_path)
    before = files_of(tmp_path)
    assert {"metrics.jsonl", "summary.json", "checkpoints/last.pt"} <= set(before)
    with pytest.raises(RunDirUsedError, match="holds an earlier run .*=auto, give this run another hydra.run.dir, "
                                              "or pass overwrite=true"):
        run(make("seed=5"), tmp_path)
    assert files_of(tmp_path) == before


def test_overwrite_true_replaces_the_earlier_run(tmp_path):
    run(meta_cfg("outer.keep_checkpoints=true"), tmp_path)
    assert (tmp_path / "checkpoints" / "iteration_000004.pt").is_file()
    run(meta_cfg("outer.iterations=2", "overwrite=true"), tmp_path)
    assert [r["iteration"] for r in rows_of(tmp_path)] == [0, 1]
    assert load_checkpoint(tmp_path)["iteration"] == 2
    assert not (tmp_path / "checkpoints" / "iteration_000004.pt").exists()   # the earlier run's files are gone


def test_resume_auto_without_a_checkpoint_starts_afresh_in_a_dir_with_metrics_only(tmp_path):
    """A run killed before its first checkpoint left metrics and nothing to continue: auto starts it again."""
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 0, "loss": 1.0}\n')
    with pytest.raises(RunDirUsedError):
        run(meta_cfg(), tmp_path)
    run(meta_cfg("outer.resume=auto"), tmp_path)
    assert [r["iteration"] for r in rows_of(tmp_path)] == [0, 1, 2, 3]


# ---- resume is all-or-nothing -------------------------------------------------------------------------------------


def _drop(key):
    def damage(state):
        del state[key]
    return damage


def _set(key, value):
    def damage(state):
        state[key] = value
    return damage


def _meta_weight(value):
    def damage(state):
        state["meta"]["learner.layers.0.w_rec"] = value
    return damage


def _adam_moment(state):
    moments = state["optimizer"]["state"]
    first = min(moments)
    moments[first]["exp_avg"] = torch.zeros(3, 3)


DAMAGES = {
    "no data_rng": (_drop("data_rng"), "lacks 'data_rng'"),
    "no meta": (_drop("meta"), "lacks \\['meta'\\]"),
    "wrong-shaped weight": (_meta_weight(torch.zeros(3, 3)), "does not fit this run's model or optimizer"),
    "non-finite weight": (_meta_weight(torch.full((8, 8), float("nan"))), "non-finite values in"),
    "bad data_rng": (_set("data_rng", torch.zeros(7, dtype=torch.uint8)), "damaged data_rng"),
    "bad torch_rng": (_set("torch_rng", torch.ones(5)), "damaged torch_rng"),
    "bad iteration": (_set("iteration", -3), "iteration=-3"),
    "damaged history": (_set("history", "oops"), "damaged history"),
    "wrong-shaped Adam moment": (_adam_moment, "exp_avg has shape \\(3, 3\\)"),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_a_failed_resume_leaves_every_file_of_the_run_dir_byte_identical(name, tmp_path):
    run(meta_cfg(), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    state = read_checkpoint(last)
    damage, message = DAMAGES[name]
    damage(state)
    save_checkpoint(last, state)
    before = files_of(tmp_path)
    with pytest.raises((CheckpointError, ValueError), match=message):
        run(meta_cfg("outer.iterations=8", "outer.resume=auto"), tmp_path)
    assert files_of(tmp_path) == before


def test_a_failed_resume_from_the_cli_is_one_line_and_keeps_metrics(tmp_path):
    run_dir = tmp_path / "run"
    assert l2l_train([*TINY_META, "outer.iterations=3"], run_dir)[0] == 0
    state = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    del state["data_rng"]
    save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
    before = files_of(run_dir)
    code, err = l2l_train([*TINY_META, "outer.iterations=6", "outer.resume=auto"], run_dir)
    assert code == 2 and err.count("\n") == 1 and "lacks 'data_rng'" in err, err
    assert files_of(run_dir) == before and (run_dir / "metrics.jsonl").stat().st_size > 0


def crash_at(iteration: int):
    """A TrainingLoop.run whose stepper raises RuntimeError('the machine went away') at ``iteration``."""
    original = run_loop.TrainingLoop.run

    def crashing(self, logger=None, evaluate=None):
        step = self.stepper.step

        def failing(k, *args):
            if k == iteration:
                raise RuntimeError("the machine went away")
            return step(k, *args)

        self.stepper.step = failing
        return original(self, logger, evaluate)

    return crashing


def test_a_direct_run_stopped_half_way_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Direct training checkpoints every train.checkpoint_every iterations (before: only at the end)."""
    run(direct_cfg("train.iterations=9"), tmp_path / "whole")
    original = run_loop.TrainingLoop.run
    monkeypatch.setattr(run_loop.TrainingLoop, "run", crash_at(7))
    with pytest.raises(RuntimeError, match="went away"):
        run(direct_cfg("train.iterations=9"), tmp_path / "cut")
    monkeypatch.setattr(run_loop.TrainingLoop, "run", original)
    assert load_checkpoint_direct(tmp_path / "cut")["iteration"] == 6
    run(direct_cfg("train.iterations=9", "train.resume=auto"), tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut", "network")


def load_checkpoint_direct(run_dir: Path) -> dict:
    return read_checkpoint(run_dir / "checkpoints" / "last.pt", ("network", "iteration"))


def assert_same_run(whole: Path, cut: Path, weights: str) -> None:
    """The resumed run's final weights and logged records (but the times) equal the uninterrupted run's."""
    a, b = load_checkpoint_direct(whole) if weights == "network" else load_checkpoint(whole), (
        load_checkpoint_direct(cut) if weights == "network" else load_checkpoint(cut))
    assert all(torch.equal(a[weights][k], b[weights][k]) for k in a[weights])
    assert without_time(rows_of(cut)) == without_time(rows_of(whole))


def test_metric_keys_are_the_same_in_both_modes(tmp_path):
    run(meta_cfg(), tmp_path / "meta")
    run(direct_cfg(), tmp_path / "direct")
    for mode in ("meta", "direct"):
        rows = [r for r in rows_of(tmp_path / mode) if not any(k.startswith("eval/") for k in r)]
        assert len(rows) == 4 if mode == "meta" else 6
        assert all({"iteration", "loss", "seconds"} <= set(r) for r in rows), rows[0]
        assert not any("time_s" in r for r in rows)


# ---- signals inside a long iteration ------------------------------------------------------------------------------


def test_sigterm_inside_a_meta_iteration_stops_at_once_and_the_resume_is_bit_exact(tmp_path, monkeypatch):
    run(meta_cfg("outer.iterations=5"), tmp_path / "whole")
    # the signal arrives in the outer step of iteration 3, inside the forward pass (before any weight changes)
    from l2l.outer_loop.algorithm import meta

    original = meta.MetaLearner.adapt
    calls = {"n": 0}

    def adapt_with_signal(self, *args, **kwargs):
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(meta.MetaLearner, "adapt", adapt_with_signal)
    with pytest.raises(TrainingInterrupted, match="during iteration 3, which was abandoned \\(3 complete\\)"):
        run(meta_cfg("outer.iterations=5"), tmp_path / "cut")
    monkeypatch.setattr(meta.MetaLearner, "adapt", original)
    assert load_checkpoint(tmp_path / "cut")["iteration"] == 3
    run(meta_cfg("outer.iterations=5", "outer.resume=auto"), tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut", "meta")


@pytest.mark.parametrize("restore", [True, False], ids=["restored", "negative-control"])
def test_sigterm_inside_a_direct_iteration_restores_the_synthetic_gradient(tmp_path, monkeypatch, restore):
    """e-prop 3's learned synthetic gradient takes its own step inside rule.backward: an abandoned iteration
    must not keep that step. Negative control: without the restore the resumed run differs."""
    cfg = ["experiment=copy_repeat_eprop3", "train.iterations=6", "train.batch_size=2", "train.progress=false",
           "train.plots=false", "network.n_hidden=8", "train.log_every=1", "train.checkpoint_every=2",
           "train.curriculum.stages=[]", "task.length=3", "task.max_repeats=2", "rule.window=2"]   # borders
    run(compose_config(cfg), tmp_path / "whole")
    from l2l.outer_loop.algorithm.direct_train import DirectStepper
    from l2l.rules import truncated_bptt

    original = truncated_bptt.TBPTTSyntheticGradient.after_pass
    calls = {"n": 0}

    def update_then_signal(self, result):
        original(self, result)                         # the synthetic gradient has stepped ...
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)       # ... when the signal arrives
        calls["n"] += 1

    monkeypatch.setattr(truncated_bptt.TBPTTSyntheticGradient, "after_pass", update_then_signal)
    if not restore:
        monkeypatch.setattr(DirectStepper, "restore", lambda self, snapshot: None)
    with pytest.raises(TrainingInterrupted, match="during iteration 4"):
        run(compose_config(cfg), tmp_path / "cut")
    monkeypatch.setattr(truncated_bptt.TBPTTSyntheticGradient, "after_pass", original)
    run(compose_config([*cfg, "train.resume=auto"]), tmp_path / "cut")
    whole, cut = load_checkpoint_direct(tmp_path / "whole"), load_checkpoint_direct(tmp_path / "cut")
    sg_whole, sg_cut = (c["rule"]["synthetic_gradient"]["module"] for c in (whole, cut))
    same = all(torch.equal(sg_whole[k], sg_cut[k]) for k in sg_whole) and all(
        torch.equal(whole["network"][k], cut["network"][k]) for k in whole["network"])
    assert same == restore


# ---- sweeps survive bad jobs --------------------------------------------------------------------------------------


def sweep(tmp_path: Path, *launcher: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "l2l.outer_loop.app.train", "-m", *TINY_DIRECT, "train.lr=0.001,nan,0.002",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", *launcher]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def check_sweep(tmp_path: Path, done: subprocess.CompletedProcess) -> None:
    sweep_dir = tmp_path / "sweep"
    assert done.returncode == 1, done.stderr[-2000:]
    assert "1 job(s) of the sweep failed" in done.stderr and "job 1 (" in done.stderr, done.stderr[-2000:]
    assert "train.lr=nan is not allowed" in done.stderr
    assert (sweep_dir / "0" / "summary.json").is_file() and (sweep_dir / "2" / "summary.json").is_file()
    failure = json.loads((sweep_dir / "failed_jobs" / "1.json").read_text())
    assert failure["job"] == 1 and "train.lr=nan" in failure["overrides"]
    assert "Traceback" not in done.stderr
    # the sweep's table: one row per job, the finished jobs' scores equal their summaries
    with (sweep_dir / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed"), ("2", "ok")]
    assert "train.lr=nan" in rows[1]["overrides"] and "train.lr=nan is not allowed" in rows[1]["error"]
    for row in (rows[0], rows[2]):
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert float(row["final_eval/loss"]) == summary["final_eval"]["loss"]
        assert float(row["train/loss"]) == summary["final_train"]["loss"]
    assert f"sweep of 3 jobs in {sweep_dir}; the table is {sweep_dir / 'summary.csv'}" in done.stderr


def check_job_labels(done: subprocess.CompletedProcess) -> None:
    """Each job's log lines start with its number (parallel launchers interleave them)."""
    output = done.stdout + done.stderr
    for job in (0, 2):
        assert f"job {job} | " in output and any(line.startswith(f"job {job} | ") and "run dir:" in line
                                                 for line in output.splitlines()), output[-2000:]


def test_a_sweep_with_one_bad_job_runs_the_others_and_exits_1(tmp_path):
    done = sweep(tmp_path)
    check_sweep(tmp_path, done)
    check_job_labels(done)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local_parallel", "local_processes"])
def test_a_sweep_with_one_bad_job_survives_joblib_and_submitit(tmp_path, launcher):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher" if launcher == "local_parallel"
                        else "hydra_plugins.hydra_submitit_launcher")
    done = sweep(tmp_path, f"hydra/launcher={launcher}")
    check_sweep(tmp_path, done)
    if launcher == "local_parallel":      # submitit writes each job's output into its own log file
        check_job_labels(done)


# ---- kill -9 in the first second of a resume ----------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_during_the_first_second_of_a_resume_leaves_a_run_that_resumes(tmp_path):
    """The rewrite of metrics.jsonl at a resume is a new file renamed over the old one: a kill at any moment of
    the resume's start leaves the whole history (before: 0 bytes)."""
    args = [*TINY_META, "outer.iterations=12", "outer.checkpoint_every=1", "outer.log_every=1", "seed=4"]
    whole, run_dir = tmp_path / "whole", tmp_path / "killed"
    assert l2l_train(args, whole)[0] == 0
    assert l2l_train([*args, "outer.iterations=4"], run_dir)[0] == 0      # the later override wins
    for delay in (0.3, 0.6, 0.9, 1.2, 1.5, 2.0):
        process = l2l_train_process([*args, "outer.resume=auto"], run_dir)
        try:
            process.wait(delay)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        rows = rows_of(run_dir)
        assert rows and rows[0]["iteration"] == 0, f"metrics.jsonl lost its history after a kill at {delay} s"
        assert load_checkpoint(run_dir)["iteration"] >= 4
    assert l2l_train([*args, "outer.resume=auto"], run_dir)[0] == 0
    final, reference = load_checkpoint(run_dir)["meta"], load_checkpoint(whole)["meta"]
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    assert without_time(rows_of(run_dir)) == without_time(rows_of(whole))


@pytest.mark.slow
def test_random_kill_9s_never_damage_the_metrics_and_the_resume_is_bit_exact(tmp_path):
    """A few random kills of tests/kill_nine.py (the closing table ran 40)."""
    from kill_nine import kill_nine

    report = kill_nine(tmp_path, kills=6, iterations=200, max_delay=5.0, seed=1)
    assert report["metrics_whole_after_every_kill"], report["per_kill"]
    assert report["most_lost"] <= 1, report["per_kill"]           # a checkpoint every iteration
    assert report["final_weights_bit_exact"] and report["final_metrics_equal"]


def test_a_direct_checkpoint_from_before_the_engine_resumes_with_its_metrics(tmp_path):
    """Direct checkpoints before 0.3 held no history and named the data generator 'generator': the resume keeps
    the records of the run's metrics.jsonl instead of starting it empty."""
    run(direct_cfg(), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    state = read_checkpoint(last)
    state["generator"] = state.pop("data_rng")
    del state["history"], state["torch_rng"]
    save_checkpoint(last, state)
    run(direct_cfg("train.iterations=8", "train.resume=auto"), tmp_path)
    assert [r["iteration"] for r in rows_of(tmp_path) if "loss" in r] == list(range(8))
