"""Reliability and security of l2l-train and the commands that read checkpoints: one-line errors for bad
input, no code execution from checkpoints, one run per run dir, guarded training, graceful stops."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from l2l.outer_loop.app import train
from l2l.outer_loop.app.checks import meta_iteration_bytes
from l2l.outer_loop.app.loggers import write_json
from l2l.outer_loop.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from l2l.outer_loop.guard import DivergedError, DivergenceGuard, NonFiniteLossError

TINY_META = ["experiment=smoke", "task.n_steps=30", "network.n_hidden=8", "error_module.n_hidden=6",
             "error_module.code_neurons=4", "outer.batch_size=2", "outer.progress=false", "eval.enabled=false",
             "outer.figure_every=0"]
TINY_DIRECT = ["experiment=pattern_eprop", "task.n_steps=30", "task.n_inputs=5", "network.n_hidden=8",
               "train.batch_size=2", "train.iterations=3", "train.progress=false", "train.plots=false"]


def run_hydra_command(main, argv: list[str]) -> tuple[int, str]:
    """A Hydra command's ``main`` in this process, its logging off: (exit code, stderr)."""
    err = io.StringIO()
    saved = sys.argv
    sys.argv = [*argv, "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    try:
        with contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = saved
    return code, err.getvalue()


def l2l_train(args: list[str], run_dir: Path) -> tuple[int, str]:
    """``l2l-train ARGS`` in this process: (exit code, stderr)."""
    return run_hydra_command(train.main, ["l2l-train", *args, f"hydra.run.dir={run_dir}"])


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
# The bad-input table of every command (l2l-train, l2l-demo, l2l-eval, l2l-verify, l2l-bench, l2l-tune and damaged
# files) is tests/test_bad_input.py.


@NO_GPU
def test_a_missing_gpu_is_reported_as_the_device_key(tmp_path):
    code, err = l2l_train([*TINY_META, "device=cuda"], tmp_path / "run")
    assert code == 2 and "error: device='cuda' is not available here" in err, err


def test_hydra_full_error_still_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError, match="outer.lr=-1"):
        l2l_train([*TINY_META, "outer.lr=-1"], tmp_path / "run")


# ---- checkpoints never execute code ------------------------------------------------------------------------


class Payload:
    """What a crafted checkpoint smuggles in: unpickling it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A tiny meta run and a tiny direct run (their checkpoints are the templates of the payloads)."""
    root = tmp_path_factory.mktemp("runs")
    assert l2l_train([*TINY_META, "outer.iterations=2"], root / "meta")[0] == 0
    assert l2l_train(TINY_DIRECT, root / "direct")[0] == 0
    return root


def plant(run: Path, target: Path, marker: Path) -> Path:
    """Copy ``run``'s last.pt to ``target`` (a run dir layout) with a payload added."""
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["evil"] = Payload(marker)
    (target / "checkpoints").mkdir(parents=True)
    torch.save(state, target / "checkpoints" / "last.pt")
    return target / "checkpoints" / "last.pt"


def test_no_entry_point_runs_code_from_a_checkpoint(finished_runs, tmp_path, capsys):
    from l2l.outer_loop.reports import eval_cli, plots, pretrained

    marker = tmp_path / "marker"
    meta_file = plant(finished_runs / "meta", tmp_path / "meta", marker)
    direct_dir = plant(finished_runs / "direct", tmp_path / "direct", marker).parent.parent
    unsafe = "is corrupted or not a torch checkpoint"
    for resume in (meta_file, meta_file.parent.parent):
        code, err = l2l_train([*TINY_META, "outer.iterations=4", f"outer.resume={resume}"], tmp_path / "resumed")
        assert code == 2 and err.count("\n") == 1 and str(meta_file) in err and unsafe in err, err
    calls = [lambda: eval_cli.main([str(meta_file)]),
             lambda: pretrained.main(["export", str(meta_file.parent.parent), "x", "--command", "c",
                                      "--out", str(tmp_path / "export")]),
             lambda: plots.main(["episode", str(tmp_path / "e.png"), str(direct_dir)])]
    for call in calls:
        with pytest.raises(SystemExit) as stop:
            call()
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and unsafe in err, err
    code, err = demo_main(["checkpoint=" + str(meta_file), f"hydra.run.dir={tmp_path / 'demo'}"])
    assert code == 2 and unsafe in err, err
    assert not marker.exists()
    # the control: the same file, unpickled without the safe loader, does run the payload
    torch.load(meta_file, weights_only=False)
    assert marker.read_text() == "pwned"


def demo_main(args: list[str]) -> tuple[int, str]:
    from l2l.outer_loop.reports import demo

    saved, sys.argv = sys.argv, ["l2l-demo", *args, "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            demo.main()
        return 0, err.getvalue()
    except SystemExit as stop:
        return stop.code, err.getvalue()
    finally:
        sys.argv = saved


def test_resume_refuses_non_finite_weights_and_iterations_below_the_checkpoint(finished_runs, tmp_path):
    state = load_checkpoint(finished_runs / "meta")
    state["meta"]["learner.layers.0.w_rec"][0, 1] = math.nan
    save_checkpoint(tmp_path / "nan.pt", state)
    code, err = l2l_train([*TINY_META, "outer.iterations=4", f"outer.resume={tmp_path / 'nan.pt'}"], tmp_path / "a")
    assert code == 2 and "non-finite values in ['meta.learner.layers.0.w_rec']" in err, err
    code, err = l2l_train([*TINY_META, "outer.iterations=1", f"outer.resume={finished_runs / 'meta'}"], tmp_path / "b")
    assert code == 2 and "outer.iterations=1 is below the checkpoint's iteration 2" in err, err


def test_eval_of_a_loose_checkpoint_writes_into_the_current_directory(finished_runs, tmp_path, monkeypatch, capsys):
    from l2l.outer_loop.reports import eval_cli

    loose = tmp_path / "some" / "dir"
    loose.mkdir(parents=True)
    (loose / "model.pt").write_bytes((finished_runs / "meta" / "checkpoints" / "last.pt").read_bytes())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert eval_cli.main([str(loose / "model.pt"), "--tasks", "2"]) == 0
    assert (work / "eval.json").is_file() and not (tmp_path / "some" / "eval.json").exists()
    assert json.loads((work / "eval.json").read_text())["iteration"] == 2  # where the checkpoint stood


def test_eval_of_a_run_trained_without_evaluation_fills_its_summary(finished_runs, tmp_path):
    import shutil

    from l2l.outer_loop.reports import eval_cli

    run = tmp_path / "meta"
    shutil.copytree(finished_runs / "meta", run)
    assert json.loads((run / "summary.json").read_text())["eval"] is None      # trained with eval.enabled=false
    assert eval_cli.main([str(run), "--tasks", "2"]) == 0
    scores = json.loads((run / "summary.json").read_text())["eval"]
    written = json.loads((run / "eval.json").read_text())
    assert scores["test_mse"] == written["test_mse"] and scores["n_tasks"] == 2 and scores["by"] == "l2l-eval"
    assert eval_cli.main([str(run), "--tasks", "3"]) == 0                       # scores there: left as they are
    assert json.loads((run / "summary.json").read_text())["eval"] == scores


# ---- one run per run dir; atomic writes -------------------------------------------------------------------------


def l2l_train_process(args: list[str], run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "l2l.outer_loop.app.train", *args, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for(predicate, timeout: float = 60.0, pause: float = 0.02, process: subprocess.Popen | None = None) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        assert process is None or process.poll() is None, f"the run ended first: {process.stderr.read()[-500:]}"
        if pause:
            time.sleep(pause)


@pytest.mark.slow
def test_a_second_run_into_a_busy_run_dir_stops_at_start(tmp_path):
    run_dir = tmp_path / "run"
    first = l2l_train_process([*TINY_META, "outer.iterations=400", "outer.checkpoint_every=1000"], run_dir)
    try:
        # a generous wait: on a loaded machine (CI beside training runs) the start alone took over 60 s
        wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size > 0,
                 timeout=300.0, process=first)
        code, err = l2l_train([*TINY_META, "outer.iterations=2"], run_dir)
        assert code == 2 and f"run dir {str(run_dir)!r} is in use by pid {first.pid}" in err, err
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(60)
    # the first run stopped gracefully: one line, a checkpoint, valid metrics
    assert first.returncode == 128 + signal.SIGINT, first.stderr.read()
    assert "stopped by signal 2" in first.stderr.read()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert load_checkpoint(run_dir)["iteration"] >= rows[-1]["iteration"] + 1
    # once it is gone, the run dir is no longer busy, but it holds a run: refused, unless asked to overwrite it
    code, err = l2l_train([*TINY_META, "outer.iterations=1"], run_dir)
    assert code == 2 and "holds an earlier run" in err and err.count("\n") == 1, err
    assert l2l_train([*TINY_META, "outer.iterations=1", "overwrite=true"], run_dir)[0] == 0


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "last.pt"
    errors = []

    def write(k: int) -> None:
        try:
            for i in range(20):
                save_checkpoint(path, {"writer": k, "i": i, "w": torch.full((1000,), float(k))})
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            errors.append(error)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    state = read_checkpoint(path)
    assert state["i"] == 19 and bool((state["w"] == state["writer"]).all())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_default_run_dirs_are_distinct_within_one_second():
    from omegaconf import OmegaConf

    hydra = OmegaConf.to_container(OmegaConf.load(Path(train.CONFIG_DIR) / "config.yaml").hydra, resolve=False)
    assert hydra["run"]["dir"].endswith("${l2l_run_stamp:}")               # microseconds: two runs started in
    assert hydra["sweep"]["dir"].endswith("${now:%Y-%m-%d_%H-%M-%S_%f}")   # the same second get two dirs


def test_the_run_stamp_is_the_torchrun_launchers_start_in_every_worker(monkeypatch):
    import datetime
    import os

    from l2l.outer_loop.app.run_stamp import FORMAT, process_start, run_stamp

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    alone = [run_stamp(), time.sleep(0.002) or run_stamp()]         # 2 ms apart: two stamps, whatever the clock
    assert alone[0] != alone[1] and len(alone[0]) == len("2026-12-05_04-10-00_123456")     # now, to the µs
    started = process_start(os.getppid())
    if started is None:
        pytest.skip("no /proc here: the stamp is always now")
    assert abs(started - time.time()) < 365 * 86400                 # the parent started in the past, not at 1970
    monkeypatch.setenv("LOCAL_RANK", "1")                            # a torchrun worker: its parent is the launcher
    assert run_stamp() == run_stamp() == datetime.datetime.fromtimestamp(started).strftime(FORMAT)


# ---- kill -9 and resume -----------------------------------------------------------------------------------------


KILLS = ("after 3 logged", "after 6 logged", "during a checkpoint write", "after 11 logged")
KILL_RUN = [*TINY_META, "outer.iterations=14", "outer.checkpoint_every=1", "outer.log_every=1", "seed=3"]


def rows_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.slow
def test_kill_9_at_any_point_loses_at_most_one_checkpoint_interval(tmp_path):
    whole = tmp_path / "whole"
    assert l2l_train(KILL_RUN, whole)[0] == 0
    run_dir = tmp_path / "killed"
    checkpoints = run_dir / "checkpoints"
    lost = []
    for kill in KILLS:
        process = l2l_train_process([*KILL_RUN, "outer.resume=auto"], run_dir)
        if kill.startswith("during"):   # poll without pause: a write takes milliseconds
            wait_for(lambda: any(e.name.endswith(".tmp") for e in os.scandir(checkpoints)), 120, 0, process)
        else:
            count = int(kill.split()[1])
            wait_for(lambda c=count: (run_dir / "metrics.jsonl").is_file() and len(rows_of(run_dir)) >= c, 120,
                     process=process)
        process.kill()
        process.wait(30)
        logged = rows_of(run_dir)[-1]["iteration"] + 1 if rows_of(run_dir) else 0
        kept = load_checkpoint(run_dir)["iteration"] if (checkpoints / "last.pt").exists() else 0
        lost.append(logged - kept)
    assert l2l_train([*KILL_RUN, "outer.resume=auto"], run_dir)[0] == 0
    print("iterations lost per kill (logged - checkpointed):", dict(zip(KILLS, lost, strict=True)))
    assert all(n <= 1 for n in lost), lost                      # checkpoint_every = 1
    assert without_time(rows_of(run_dir)) == without_time(rows_of(whole))
    final, reference = load_checkpoint(run_dir)["meta"], load_checkpoint(whole)["meta"]
    assert all(torch.equal(final[k], reference[k]) for k in reference)


# ---- divergence --------------------------------------------------------------------------------------------------


def test_meta_training_stops_on_divergence_and_keeps_the_last_good_checkpoint(tmp_path):
    code, err = l2l_train([*TINY_META, "outer.iterations=30", "outer.lr=1e6", "outer.checkpoint_every=1"],
                          tmp_path / "run")   # the loss jumps from 6.5 to 2.6e10 at iteration 1
    assert code == 2 and "stopping instead of training on garbage" in err and err.count("\n") == 1, err
    assert "more than outer.divergence_factor=1000 times its running median" in err
    if (tmp_path / "run" / "checkpoints" / "last.pt").exists():
        state = load_checkpoint(tmp_path / "run")
        assert all(bool(torch.isfinite(v).all()) for v in state["meta"].values())
    assert not (tmp_path / "run" / "summary.json").exists()
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


def test_direct_training_stops_before_stepping_on_a_nan(tmp_path):
    code, err = l2l_train([*TINY_DIRECT, "train.iterations=20", "train.lr=1e30"], tmp_path / "run")
    assert code == 2 and "iteration 1: the loss is inf; stopping instead of training on garbage" in err, err
    assert err.rstrip().endswith("Try a smaller train.lr."), err
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_the_guard_catches_non_finite_and_diverging_losses_only():
    guard = DivergenceGuard(10.0, "outer.divergence_factor", window=5, warmup=3)
    for loss in (1.0, 2.0, 1.5, 5.0, 9.0):             # grows, but within 10× the running median
        guard.check_loss(loss)
    with pytest.raises(DivergedError, match="more than outer.divergence_factor=10 times its running median"):
        guard.check_loss(100.0)
    with pytest.raises(NonFiniteLossError, match="the loss is nan"):
        DivergenceGuard(0.0, "k").check_loss(math.nan)
    off = DivergenceGuard(0.0, "k", warmup=1)
    for loss in (1.0, 1e9):
        off.check_loss(loss)
    with pytest.raises(NonFiniteLossError, match="the weight w has non-finite entries"):
        DivergenceGuard.check_weights([("v", torch.ones(2)), ("w", torch.tensor([1.0, math.inf]))])


def test_summaries_are_strict_json(tmp_path):
    path = write_json(tmp_path / "s.json", {"a": math.nan, "b": [1.0, math.inf], "c": torch.tensor(2.0)})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": 2.0}


# ---- memory pre-flight ---------------------------------------------------------------------------------------------


def test_the_memory_estimate_is_close_to_a_measured_iteration(compose):
    from l2l.memory import peak_memory_bytes
    from l2l.outer_loop.algorithm.outer_step import outer_step
    from l2l.outer_loop.app.build import build_meta, build_task
    from l2l.outer_loop.optimizers import make_optimizer

    cfg = compose("experiment=arm_one_shot", "outer.batch_size=8", "network.n_hidden=120",
                  "error_module.n_hidden=120")
    family = build_task(cfg.task)
    torch.manual_seed(0)
    meta = build_meta(cfg, family)
    optimizer = make_optimizer("adam", meta.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    episode = family.sample(8, g)
    outer_step(meta, optimizer, episode, g)                            # warm-up
    measured = peak_memory_bytes(lambda: outer_step(meta, optimizer, family.sample(8, g), g))
    if measured is None:
        pytest.skip("no resident-set measurement on this platform")
    estimate, drivers = meta_iteration_bytes(cfg, family)
    assert "outer.batch_size=8" in drivers and "network.n_hidden=120" in drivers
    assert 0.5 * measured < estimate < 4 * measured, (estimate, measured)   # cautious, never blocking a real run


# ---- W&B without a network -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_wandb_online_without_a_server_falls_back_to_offline(tmp_path):
    env = {**os.environ, "WANDB_MODE": "", "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "a" * 40,
           "WANDB_SILENT": "true"}
    env.pop("WANDB_MODE")
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "l2l.outer_loop.app.train", *TINY_META, "outer.iterations=2",
                             "logger=wandb", "logger.mode=online", "logger.init_timeout=2",
                             f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, env=env,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "W&B: could not start an online run within 2 s" in log and "logging offline" in log
    assert len(rows_of(tmp_path / "run")) == 2
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert time.time() - started < 200
