"""The dashboards ``logger=`` chooses (csv, tensorboard, mlflow; W&B in test_train.py), one or several at once:
each is read back with its own reader and holds the same scalars as metrics.jsonl, the config and the figures."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from test_reliability import TINY_DIRECT, TINY_META, rows_of
from test_run_engine import crash_at

from l2l.outer_loop.algorithm import run_loop
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run

ALL = "logger=[csv,tensorboard,mlflow]"


def direct_cfg(*extra: str):
    return compose_config([*TINY_DIRECT, "train.iterations=6", "train.checkpoint_every=2", "train.log_every=1",
                           "train.plots=true", *extra])


def csv_rows(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv as numbers, empty cells left out."""
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]


def scalars(jsonl_rows: list[dict]) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in r.items() if isinstance(v, (int, float)) and v is not None} for r in jsonl_rows]


def tensorboard_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0,
                                                                            "tensors": 0})
    events.Reload()
    return events


def mlflow_runs(run_dir: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("l2l")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return client, runs


def same(a: float, b: float, rel: float = 0.0) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=0.0)


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory) -> Path:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    run_dir = tmp_path_factory.mktemp("loggers") / "run"
    run(direct_cfg(ALL), run_dir)
    return run_dir


def test_csv_holds_every_scalar_of_metrics_jsonl_exactly(direct_run):
    expected = scalars(rows_of(direct_run))
    assert csv_rows(direct_run) == expected
    header = (direct_run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "iteration" and "eval/loss" in header and "task_loss" in header
    config = (direct_run / "csv" / "config.yaml").read_text()
    assert "name: pattern" in config and "iterations: 6" in config
    assert sorted(p.name for p in (direct_run / "csv" / "figures").iterdir()) == ["learning_curve", "pattern"]
    assert (direct_run / "csv" / "figures" / "learning_curve" / "000006.png").read_bytes()[:4] == b"\x89PNG"


def test_tensorboard_events_hold_the_scalars_config_and_figures(direct_run):
    events = tensorboard_events(direct_run)
    rows = rows_of(direct_run)
    for key in ("loss", "task_loss", "nmse", "eval/loss"):
        logged = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None]
        read = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in read] == [s for s, _ in logged], key
        assert all(same(v, w, rel=1e-6) for (_, v), (_, w) in zip(read, logged, strict=True)), key  # float32
    tags = events.Tags()
    assert set(tags["images"]) == {"learning_curve", "pattern"}
    assert "config/text_summary" in tags["tensors"]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: pattern" in text


def test_mlflow_store_holds_the_metric_histories_params_and_artifacts(direct_run):
    client, runs = mlflow_runs(direct_run)
    assert len(runs) == 1
    mlflow_run = runs[0]
    rows = rows_of(direct_run)
    for key in ("loss", "task_loss", "eval/nmse"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, key))
        logged = [(r["iteration"], float(r[key])) for r in rows if r.get(key) is not None]
        assert history == logged, key    # exact: MLflow keeps doubles
    params = mlflow_run.data.params
    assert params["task.name"] == "pattern" and params["train.iterations"] == "6"
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name.endswith("seed0")
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"config.json", "figures"} <= artifacts
    figures = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "figures/pattern")}
    assert figures == {"figures/pattern/000006.png"}


def test_a_meta_run_logs_its_figures_and_held_out_scores_to_each(tmp_path):
    pytest.importorskip("mlflow")
    run_dir = tmp_path / "meta"
    run(compose_config([*TINY_META, "outer.iterations=2", "outer.log_every=1", "outer.figure_every=1",
                        "eval.enabled=true", "eval.tasks=2", "eval.figure_tasks=1", "logger=[csv,mlflow]"]), run_dir)
    rows = csv_rows(run_dir)
    assert rows == scalars(rows_of(run_dir)) and any("eval/test_mse" in r for r in rows)
    figures = {p.name for p in (run_dir / "csv" / "figures").iterdir()}
    assert "learning_curve" in figures and len(figures) >= 3, figures
    client, (mlflow_run,) = mlflow_runs(run_dir)
    assert [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "test_mse")] == [0, 1]
    assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "figures")} >= {
        f"figures/{name}" for name in figures}


def test_a_resumed_run_logs_each_iteration_once(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    original = run_loop.TrainingLoop.run
    monkeypatch.setattr(run_loop.TrainingLoop, "run", crash_at(5))
    with pytest.raises(RuntimeError, match="went away"):
        run(direct_cfg(ALL), tmp_path)
    monkeypatch.setattr(run_loop.TrainingLoop, "run", original)
    run(direct_cfg(ALL, "train.resume=auto"), tmp_path)
    iterations = [r["iteration"] for r in rows_of(tmp_path) if "loss" in r]
    assert iterations == list(range(6))
    assert [r["iteration"] for r in csv_rows(tmp_path) if "loss" in r] == iterations
    assert [e.step for e in tensorboard_events(tmp_path).Scalars("loss")] == iterations
    client, runs = mlflow_runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    assert sorted(m.step for m in client.get_metric_history(runs[1].info.run_id, "loss")) == iterations


@pytest.mark.parametrize("overrides, message", [
    (["+logger.backends.foo=true"], "logger.backends='foo' is not allowed: choose one of ['csv', 'mlflow', "
                                   "'tensorboard', 'wandb']"),
])
def test_an_unknown_backend_is_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ValueError) as error:
        run(direct_cfg(*overrides), tmp_path / "run")
    assert str(error.value) == message
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_missing_package_is_named_before_the_run(tmp_path, monkeypatch):
    import importlib.util
    import sys

    monkeypatch.delitem(sys.modules, "tensorboard", raising=False)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        find_spec(name, *a))
    with pytest.raises(ValueError, match=r"logger.backends='tensorboard' is not allowed: it needs the tensorboard "
                                         r"package, which is not installed \(pip install tensorboard\)"):
        run(direct_cfg("logger=tensorboard"), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_none_and_a_list_compose_as_expected(compose):
    assert dict(compose("logger=none").logger.backends) == {}
    assert dict(compose("logger=[csv,tensorboard]").logger.backends) == {"csv": True, "tensorboard": True}
    assert dict(compose("logger=wandb", "+logger.backends.csv=true").logger.backends) == {"wandb": True, "csv": True}


def test_a_config_saved_before_the_backends_loads(tmp_path):
    """Checkpoints and shipped models of earlier l2l name one dashboard (logger.name); they still load."""
    from l2l.outer_loop.app.config import saved_config
    from l2l.outer_loop.reports.pretrained import load_pretrained

    assert dict(saved_config({"logger": {"name": "none"}}).logger.backends) == {}
    assert dict(saved_config({"logger": {"name": "wandb", "mode": "offline"}}).logger.backends) == {"wandb": True}
    meta, cfg, _ = load_pretrained("arm_one_shot")      # saved with logger: {name: none}
    assert dict(cfg.logger.backends) == {} and meta is not None
