"""The ``mlflow`` logger: an MLflow run in a local store, no server (``mlflow ui --backend-store-uri <store>``).

Every scalar is a metric history (the iteration as the step), the config the run's parameters (dotted keys) and
an artifact ``config.json``, each figure an artifact ``figures/<name>/<iteration>.png``. The experiment is
``logger.project`` (else ``MLFLOW_EXPERIMENT_NAME``, else ``l2l``), the run name and tags those W&B gets (the
group as the tag ``group``, each override as ``override.<n>``). The store: ``logger.tracking_uri``, else
``MLFLOW_TRACKING_URI``, else the file store ``<run dir>/mlruns``. A resumed run is a new MLflow run holding the
whole history. Uses :class:`mlflow.MlflowClient` only (no global active run, so sweep jobs in one process never
share a run).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from l2l.outer_loop.app.loggers import MetricsLogger

PARAM_BATCH = 100      # MLflow takes at most 100 parameters per call
PARAM_LENGTH = 6000    # and values of at most 6000 characters


def mlflow_settings(cfg: Any, run_dir: str | Path, run_name: str | None = None, default_group: str | None = None,
                    default_tags: list[str] | None = None) -> dict[str, Any]:
    """The MLflow run's settings from the logger config, MLflow's environment and l2l's defaults."""
    env = os.environ
    uri = cfg.tracking_uri or env.get("MLFLOW_TRACKING_URI") or (Path(run_dir).resolve() / "mlruns").as_uri()
    tags = {"group": cfg.group or default_group or ""}
    tags.update({f"override.{i}": str(t)[:5000] for i, t in enumerate(cfg.tags or default_tags or [])})
    return {"tracking_uri": uri, "experiment": cfg.project or env.get("MLFLOW_EXPERIMENT_NAME") or "l2l",
            "run_name": cfg.run_name or run_name, "tags": {k: v for k, v in tags.items() if v}}


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"outer.lr": "0.001", ...}``: every leaf of a nested config as a dotted key and a string."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            params.update(flat_params(value, name + "."))
        else:
            params[name] = str(value)[:PARAM_LENGTH]
    return params


def mlflow_client(tracking_uri: str) -> Any:
    """An MlflowClient on ``tracking_uri``; ImportError with the install command where mlflow is missing."""
    try:
        from mlflow import MlflowClient
    except ImportError as error:
        raise ImportError("logger=mlflow needs MLflow: pip install mlflow-skinny (or pip install 'l2l[mlflow]')"
                          ) from error
    if tracking_uri.startswith("file:"):
        # MLflow 3 keeps its file store but asks for this opt-in; a local file store is what l2l defaults to
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=tracking_uri)


class MlflowLogger(MetricsLogger):
    """One MLflow run: scalars as metrics, the config as parameters and ``config.json``, figures as artifacts."""

    def __init__(self, config: Mapping[str, Any], tracking_uri: str, experiment: str = "l2l",
                 run_name: str | None = None, tags: Mapping[str, str] | None = None) -> None:
        from mlflow.entities import Param

        self.client = mlflow_client(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {})).info.run_id
        params = [Param(k, v) for k, v in flat_params(config).items()]
        for start in range(0, len(params), PARAM_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + PARAM_BATCH])
        self.client.log_dict(self.run_id, dict(config), "config.json")

    def log(self, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(record.get("iteration", 0))
        now = int(time.time() * 1000)
        metrics = []
        for key, value in record.items():
            value = value.item() if hasattr(value, "item") else value
            if key == "iteration" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metrics.append(Metric(key, float(value) if math.isfinite(value) else math.nan, now, step))
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def image(self, key: str, figure: Any, iteration: int) -> None:
        self.client.log_figure(self.run_id, figure, f"figures/{key.replace('/', '_')}/{int(iteration):06d}.png")

    def finish(self, exit_code: int = 0) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if exit_code == 0 else "FAILED")
