"""The l2l-train console script end to end (subprocesses): run dir outputs, bad overrides, W&B offline, sweeps."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = shutil.which("l2l-train") or str(Path(sys.executable).parent / "l2l-train")
SMALL = ["task.n_steps=60", "task.n_inputs=10", "network.n_hidden=10", "train.iterations=3", "train.log_every=1",
         "train.batch_size=1", "train.eval_batch_size=2", "train.progress=false", "train.threads=1"]


def l2l_train(*args, cwd, env_extra=None, timeout=300):
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0", **(env_extra or {})}
    return subprocess.run([SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_experiment_runs_and_writes_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    done = l2l_train("experiment=pattern_eprop_random", *SMALL, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    *records, held_out = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2] and "eval/nmse" in held_out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["rule"], summary["feedback"], summary["task"]) == ("eprop", "random", "pattern")
    for name in ("learning_curve.png", "episode.png", "checkpoints/last.pt", ".hydra/config.yaml"):
        assert (run_dir / name).exists(), name


def test_bad_override_fails_at_start_naming_the_key(tmp_path):
    done = l2l_train("experiment=evidence_eprop", "train.iteratons=5", cwd=tmp_path)
    assert done.returncode != 0
    assert "iteratons" in done.stderr + done.stdout
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("metrics.jsonl"))


@pytest.mark.slow
def test_wandb_offline_run_is_stored_locally(tmp_path):
    run_dir = tmp_path / "run"
    done = l2l_train("logger=wandb", *SMALL, f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     env_extra={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert done.returncode == 0, done.stderr[-2000:]
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert (run_dir / "metrics.jsonl").exists()


@pytest.mark.slow
def test_multirun_sweep_gives_one_run_dir_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    done = l2l_train("-m", "rule=eprop,bptt", *SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rules = sorted(json.loads((sweep / str(i) / "summary.json").read_text())["rule"] for i in range(2))
    assert rules == ["bptt", "eprop"]


META_SMALL = ["experiment=smoke", "outer.iterations=2", "task.n_steps=40", "network.n_hidden=12",
              "error_module.n_hidden=10", "eval.tasks=2", "outer.progress=false"]


@pytest.mark.slow
def test_smoke_experiment_end_to_end_and_l2l_eval(tmp_path):
    run_dir = tmp_path / "smoke"
    done = l2l_train("experiment=smoke", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = json.loads((run_dir / "eval.json").read_text())
    script = str(Path(SCRIPT).parent / "l2l-eval")
    out = tmp_path / "again"
    evaluated = subprocess.run([script, str(run_dir), "--out", str(out), "--threads", "1"], capture_output=True,
                               text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    again = json.loads((out / "eval.json").read_text())
    assert again["test_mse"] == trained["test_mse"] and again["demo_mse"] == trained["demo_mse"]
    assert (out / "eval.png").exists()


@pytest.mark.slow
def test_meta_sweep_runs_two_jobs_each_its_own_offline_wandb_run(tmp_path):
    sweep = tmp_path / "sweep"
    done = l2l_train("-m", "seed=0,1", "logger=wandb", *META_SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                     env_extra={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert done.returncode == 0, done.stderr[-2000:]
    for job in ("0", "1"):
        assert (sweep / job / "eval.json").exists()
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1
    seeds = sorted(json.loads((sweep / j / "summary.json").read_text())["seed"] for j in ("0", "1"))
    assert seeds == [0, 1]


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_jobs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    done = l2l_train("-m", "hydra/launcher=local_processes", "seed=0,1", *META_SMALL, f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all((sweep / job / "eval.json").exists() for job in ("0", "1"))


def test_help_lists_the_options_of_every_group_and_no_schema(capsys, monkeypatch):
    """--help's groups are the choices on disk: the task and rule schemas in the config store are not choices."""
    from l2l.outer_loop.app import train

    monkeypatch.setattr(sys, "argv", ["l2l-train", "--help"])
    with pytest.raises(SystemExit):
        train.cli()
    out = capsys.readouterr().out
    groups = dict(line.split(": ", 1) for line in out.split("== Configuration groups (group=option) ==\n")[1]
                  .split("\n\n")[0].splitlines())
    conf = Path(train.CONFIG_DIR)
    for group in ("task", "rule", "network", "experiment"):
        assert groups[group].split(", ") == sorted(p.stem for p in (conf / group).glob("*.yaml")), group
    assert "_schema" not in out.split("== The composed config")[0]
