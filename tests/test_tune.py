"""l2l-tune: parameter specs, a study killed and resumed, a direct-mode study, objectives a summary lacks."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from l2l.outer_loop.app.run_lock import RunDirLock  # noqa: E402
from l2l.outer_loop.app.tune import (  # noqa: E402
    MissingObjectiveError,
    Param,
    main,
    objective_value,
    parse_param,
    parse_params,
)

META = ["experiment=smoke", "task.n_steps=30", "network.n_hidden=8", "error_module.n_hidden=6",
        "error_module.code_neurons=4", "outer.batch_size=2", "outer.progress=false", "outer.iterations=2",
        "eval.tasks=2", "eval.figure_tasks=0", "eval.bptt_lrs=[0.1]", "eval.eprop1_lrs=[0.1]", "outer.figure_every=0",
        "outer.threads=1"]
DIRECT = ["experiment=pattern_eprop", "task.n_steps=30", "task.n_inputs=5", "network.n_hidden=8",
          "train.batch_size=2", "train.iterations=3", "train.progress=false", "train.plots=false", "train.threads=1"]
LRS = ["--param", "outer.lr=log:1e-4:1e-2", "--param", "inner.lr=log:1e-4:1e-2"]


def load(out, study):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{out / f'{study}.db'}")


# (a) parameter specs


@pytest.mark.parametrize(("spec", "expected"), [
    ("outer.lr=log:1e-4:1e-2", Param("outer.lr", "log", 1e-4, 1e-2)),
    ("task.omega_weight=float:0:0.5", Param("task.omega_weight", "float", 0.0, 0.5)),
    ("error_module.n_hidden=int:50:200", Param("error_module.n_hidden", "int", 50, 200)),
    ("network.cell=choice:lif,alif", Param("network.cell", "choice", choices=("lif", "alif"))),
    ("error_module.n_hidden=choice:50,100,200", Param("error_module.n_hidden", "choice", choices=(50, 100, 200))),
])
def test_param_specs_parse(spec, expected):
    param = parse_param(spec)
    assert param == expected
    assert parse_param(param.spec) == param


def test_param_overrides_are_l2l_train_overrides():
    assert Param("outer.lr", "log", 1e-4, 1e-2).override(1e-05) == "outer.lr=1e-05"
    assert Param("network.cell", "choice", choices=("lif", "alif")).override("alif") == "network.cell=alif"
    assert Param("n", "int", 1, 3).override(2) == "n=2"


@pytest.mark.parametrize(("spec", "message"), [
    ("outer.lr", "write KEY=KIND:..."),
    ("=log:1:2", "write KEY=KIND:..."),
    ("outer.lr=exp:1:2", "kind 'exp' is not allowed: choose one of ['float', 'log', 'int', 'choice']"),
    ("outer.lr=log:1e-2", "log needs two bounds"),
    ("outer.lr=log:0:1", "log needs LOW > 0"),
    ("outer.lr=float:2:1", "LOW=2.0 must be below HIGH=1.0"),
    ("outer.lr=float:a:1", "'a' is not a number"),
    ("outer.lr=float:0:inf", "must be finite"),
    ("n=int:1.5:3", "'1.5' is not an integer"),
    ("network.cell=choice:", "comma-separated list"),
    ("network.cell=choice:lif,,alif", "comma-separated list"),
    ("network.cell=choice:lif,lif", "must differ"),
])
def test_bad_param_specs_name_the_spec(spec, message):
    with pytest.raises(ValueError, match="--param") as error:
        parse_param(spec)
    assert message in str(error.value) and spec in str(error.value)


def test_a_key_searched_twice_or_also_shared_is_refused():
    with pytest.raises(ValueError, match="outer.lr is searched twice"):
        parse_params(["outer.lr=log:1e-4:1e-2", "outer.lr=float:0.1:0.2"])
    with pytest.raises(ValueError, match="outer.lr is also set by a shared override"):
        parse_params(["outer.lr=log:1e-4:1e-2"], ["outer.lr=0.1"])


@pytest.mark.parametrize(("param", "message"), [
    ("outer.lr=lg:1:2", "kind 'lg' is not allowed"),
    ("outer.lrr=log:1e-4:1e-2", "outer.lrr=0.0001 (did you mean outer.lr?) is not an l2l-train key"),
])
def test_bad_param_fails_at_start_with_one_line(tmp_path, capsys, param, message):
    assert main([*META, "--param", param, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("l2l-tune: error: --param ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.rglob("*.db"))


# (b) a study killed after its first trial, then resumed


@pytest.mark.slow
def test_killed_study_resumes_to_the_requested_complete_trials(tmp_path, capsys):
    out = tmp_path / "out"
    command = [*META, *LRS, "--trials", "3", "--study", "lr", "--out", str(out), "--seed", "0"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "l2l.outer_loop.app.tune", *command], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    try:
        while not (out / "lr" / "trial_1").exists():      # trial 1 asked: trial 0 told COMPLETE
            assert child.poll() is None, child.stdout.read()
            assert time.monotonic() < deadline, "the study's second trial did not start"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    before = {t.number: t for t in load(out, "lr").get_trials()}
    assert before[0].state == TrialState.COMPLETE
    running = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert running, "the kill came after the study's last trial"

    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "resuming study lr" in printed and f"marked FAIL the interrupted {running}" in printed
    trials = load(out, "lr").get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING not in states
    assert all(trials[n].state == TrialState.FAIL for n in running)
    assert (trials[0].params, trials[0].value) == (before[0].params, before[0].value)
    assert all(t.params != trials[0].params for t in trials[1:] if t.state == TrialState.COMPLETE)  # not redrawn
    best = json.loads((out / "lr_best.json").read_text())
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    winner = min(complete, key=lambda t: t.value)
    assert (best["best_trial"], best["best_value"], best["params"]) == (winner.number, winner.value, winner.params)
    assert best["run_dir"] == str(out / "lr" / f"trial_{winner.number}")
    assert json.loads((out / "lr" / f"trial_{winner.number}" / "summary.json").read_text())["eval"]["test_mse"] \
        == winner.value
    assert printed.count("test_mse") >= 3 and f"best: trial {winner.number}" in printed


# (c) a direct-mode study


def test_direct_study_optimizes_the_task_metric(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*DIRECT, "--param", "train.lr=log:1e-3:1e-1", "--trials", "2", "--study", "direct",
                 "--out", str(out)]) == 0
    study = load(out, "direct")
    assert study.direction.name == "MINIMIZE"                          # pattern: nmse, lower is better
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        summary = json.loads((out / "direct" / f"trial_{trial.number}" / "summary.json").read_text())
        assert trial.value == summary["final_eval"]["nmse"]
        assert trial.params["train.lr"] == override_value(out / "direct" / f"trial_{trial.number}", "train.lr")
    assert json.loads((out / "direct_best.json").read_text())["objective"] == "nmse"
    assert "trial 1: nmse" in capsys.readouterr().out


def override_value(run_dir, key):
    """The value of ``key`` in the overrides a trial's run dir records (what ``l2l-train`` would rerun it with)."""
    text = (run_dir / ".hydra" / "overrides.yaml").read_text()
    return float(next(line for line in text.splitlines() if f"{key}=" in line).split("=", 1)[1])


# (d) objectives the summary lacks, failed trials, a study run twice


def test_objective_value_reads_the_summary():
    summary = {"mode": "meta", "eval": {"test_mse": 0.5}, "final_train": {"test_mse": 1}}
    assert objective_value(summary, "test_mse") == 0.5
    assert objective_value({"mode": "meta", "eval": None, "final_train": {"test_mse": 1}}, "test_mse") == 1.0
    assert objective_value({"final_eval": {"nmse": 0.25}}, "nmse") == 0.25


@pytest.mark.parametrize(("summary", "where"), [
    ({"mode": "meta", "eval": None, "final_train": {}}, "final_train.test_mse"),
    ({"mode": "meta", "eval": {"test_mse": None}}, "eval.test_mse"),
    ({"final_eval": None}, "final_eval.test_mse"),
])
def test_missing_objective_is_a_clear_error(summary, where):
    with pytest.raises(MissingObjectiveError, match=f"no {where}, the study's objective"):
        objective_value(summary, "test_mse")


def test_missing_objective_stops_the_study(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("l2l.outer_loop.app.train.run", lambda cfg, run_dir: {"mode": "meta", "eval": None,
                                                                          "final_train": {}})
    assert main([*META, *LRS, "--trials", "3", "--study", "m", "--out", str(tmp_path)]) == 2
    assert "l2l-tune: error: the run's summary has no final_train.test_mse" in capsys.readouterr().err
    assert [t.state for t in load(tmp_path, "m").get_trials()] == [TrialState.FAIL]


def test_a_bad_sampled_config_fails_its_trial_and_the_study_goes_on(tmp_path, capsys, monkeypatch):
    calls = []

    def run(cfg, run_dir):
        calls.append(run_dir)
        if len(calls) == 1:
            raise ValueError("outer.lr=0.5 is not allowed: it diverges")
        return {"mode": "meta", "eval": {"test_mse": float(len(calls))}}

    monkeypatch.setattr("l2l.outer_loop.app.train.run", run)
    assert main([*META, *LRS, "--trials", "2", "--study", "f", "--out", str(tmp_path)]) == 0
    assert [t.state for t in load(tmp_path, "f").get_trials()] == [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert "trial 0: failed (outer.lr=0.5 is not allowed: it diverges)" in capsys.readouterr().out


def test_a_study_being_run_is_not_run_twice(tmp_path, capsys):
    with RunDirLock(tmp_path / "busy"):
        assert main([*META, *LRS, "--trials", "1", "--study", "busy", "--out", str(tmp_path)]) == 2
    assert "--study busy in --out" in capsys.readouterr().err


def test_overrides_may_come_between_the_options():
    from l2l.outer_loop.app.tune import parser

    args = parser().parse_intermixed_args(["experiment=smoke", "--param", "outer.lr=log:1e-4:1e-2", "seed=1",
                                           "--trials", "3"])
    assert (args.overrides, args.param, args.trials) == (["experiment=smoke", "seed=1"], ["outer.lr=log:1e-4:1e-2"], 3)


def test_the_trial_table_plots_and_dashboard_names(tmp_path, capsys):
    """<study>_trials.csv holds every trial (also printed); --plots writes Optuna's two figures; each trial's
    dashboard run is named by study and trial, grouped by the study and tagged (read back from MLflow's store)."""
    pytest.importorskip("mlflow")
    import csv

    from mlflow import MlflowClient

    out = tmp_path / "out"
    assert main([*DIRECT, "logger=csv", "--param", "train.lr=log:1e-3:1e-1", "--trials", "3", "--study", "named",
                 "--out", str(out), "--plots"]) == 0
    printed = capsys.readouterr().out
    with (out / "named_trials.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    study = load(out, "named")
    assert [int(r["trial"]) for r in rows] == [t.number for t in study.get_trials()] == [0, 1, 2]
    assert [float(r["nmse"]) for r in rows] == [t.value for t in study.get_trials()]
    assert [float(r["train.lr"]) for r in rows] == [t.params["train.lr"] for t in study.get_trials()]
    assert {r["state"] for r in rows} == {"complete"} and all(r["run_dir"].endswith(f"trial_{r['trial']}")
                                                               for r in rows)
    assert "3 trials of study named; the table is" in printed and "  2  complete" in printed
    for figure in ("named_history.png", "named_importance.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG", figure
    config = (out / "named" / "trial_1" / ".hydra" / "config.yaml").read_text()
    assert "run_name: named-trial1" in config and "group: named" in config and "- study:named" in config
    # the same names reach a dashboard: an MLflow run of trial 0 and 1
    assert main([*DIRECT, "logger=mlflow", "--param", "train.lr=log:1e-3:1e-1", "--trials", "2", "--study", "ml",
                 "--out", str(out)]) == 0
    for number in (0, 1):
        store = (out / "ml" / f"trial_{number}" / "mlruns").as_uri()
        (mlflow_run,) = MlflowClient(tracking_uri=store).search_runs(
            [MlflowClient(tracking_uri=store).get_experiment_by_name("l2l").experiment_id])
        assert mlflow_run.info.run_name == f"ml-trial{number}"
        tags = mlflow_run.data.tags
        assert tags["group"] == "ml" and {"study:ml", f"trial:{number}"} <= set(tags.values())
