"""Where metrics go: ``metrics.jsonl`` in the run dir always, and the dashboards asked for: W&B (offline by
default), TensorBoard, CSV, MLflow (a local file store by default), one or several (``logger=[csv,tensorboard]``).

``make_logger(cfg, run_dir, config)`` returns a :class:`MetricsLogger`; call ``begin(history)`` once (the
records a resumed run already has), ``log(record)`` once per logged iteration (a flat dict of numbers with an
``iteration`` key), ``image(key, figure, iteration)`` for figures, and ``finish(exit_code)`` at the end — for W&B
that is ``wandb.finish``, which keeps Hydra multirun jobs in separate W&B runs. A resumed run starts a new
dashboard run that holds the whole history (TensorBoard: the same directory, steps after the checkpoint dropped).

``metrics.jsonl`` is never truncated in place: ``begin`` writes the history to a new file and renames it over
the old one (a kill at any moment leaves the old file or the new one whole), then records are appended.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2l.outer_loop.checkpoint import disk_write_error, write_atomically
from l2l.registry import Registry
from l2l.validation import InvalidValueError, require_choice, require_positive

log = logging.getLogger(__name__)

WANDB_MODES = ("offline", "disabled", "online")


def _jsonable(value: Any) -> Any:
    """Python scalars for JSON; non-finite floats become null (JSON has no NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def strict(value: Any) -> Any:
    """``value`` (dicts, lists, numbers, tensors' items) with every non-finite float as None: valid JSON."""
    if isinstance(value, Mapping):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return _jsonable(value)


def write_json(path: str | Path, value: Any) -> Path:
    """``value`` as strict JSON (``null``, never ``NaN``) in ``path``, indented, written atomically."""
    return write_text_atomically(path, json.dumps(strict(value), indent=2, allow_nan=False) + "\n")


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``text`` into ``path`` by a new file renamed over it (:func:`l2l.outer_loop.checkpoint.write_atomically`)."""
    return write_atomically(path, lambda f: f.write(text), binary=False)


class MetricsLogger:
    """Base: writes nothing."""

    def begin(self, history: list[dict[str, Any]]) -> None:
        """Start with the records a resumed run already has (logged again, in order)."""
        for record in history:
            self.log(record)

    def log(self, record: Mapping[str, Any]) -> None:
        """Record one logged iteration."""

    def image(self, key: str, figure: Any, iteration: int) -> None:
        """Record a matplotlib figure (e.g. an arm trajectory) at ``iteration``."""

    def finish(self, exit_code: int = 0) -> None:
        """Close the logger (0: success)."""


class JsonlLogger(MetricsLogger):
    """One JSON object per line in ``path``: ``begin(history)`` replaces the file atomically with the history,
    then each record is appended and flushed at once (a crash keeps the lines). Nothing is written before
    ``begin`` (or the first ``log``), so a run refused at start leaves the file as it was."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = None

    def begin(self, history: list[dict[str, Any]]) -> None:
        write_text_atomically(self.path, "".join(self._line(r) for r in history))
        self._file = self.path.open("a", encoding="utf-8")

    @staticmethod
    def _line(record: Mapping[str, Any]) -> str:
        return json.dumps(strict(dict(record)), allow_nan=False) + "\n"

    def log(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            self.begin([])
        try:
            self._file.write(self._line(record))
            self._file.flush()
        except OSError as error:
            raise disk_write_error(self.path, error) from error

    def finish(self, exit_code: int = 0) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


class WandbLogger(MetricsLogger):
    """Weights & Biases run stored under ``run_dir/wandb``; ``mode`` offline (default), disabled or online.

    Online, ``wandb.init`` waits at most ``init_timeout`` seconds for the server; if it cannot start the run
    (no network, no API key, a server error), the run is logged offline instead, with one warning line,
    so that training never dies because a dashboard is unreachable (``wandb sync`` uploads it later).
    """

    def __init__(self, run_dir: str | Path, config: Mapping[str, Any], project: str = "l2l", mode: str = "offline",
                 name: str | None = None, entity: str | None = None, group: str | None = None,
                 tags: list[str] | None = None, init_timeout: float = 30.0) -> None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        require_choice("logger.mode", mode, WANDB_MODES)
        require_positive("logger.init_timeout", init_timeout)
        import wandb  # imported here: runs without W&B never pay for the import

        self._wandb = wandb
        options = dict(project=project, entity=entity, name=name, group=group, tags=list(tags or []),
                       dir=str(run_dir), config=dict(config), reinit="finish_previous")
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=init_timeout), **options)
        except Exception as error:   # wandb raises its own errors (CommError, UsageError, ...) and timeouts
            if mode != "online":
                raise
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            log.warning("W&B: could not start an online run within %g s (%s); logging offline to %s/wandb "
                        "instead (wandb sync uploads it later)", init_timeout, reason, run_dir)
            self.run = wandb.init(mode="offline", **options)

    def log(self, record: Mapping[str, Any]) -> None:
        step = record.get("iteration")
        values = {k: _jsonable(v) for k, v in record.items() if k != "iteration"}
        self.run.log(values, step=int(step) if step is not None else None)

    def image(self, key: str, figure: Any, iteration: int) -> None:
        self.run.log({key: self._wandb.Image(figure_pixels(figure))}, step=int(iteration))

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


class CompositeLogger(MetricsLogger):
    """Sends every record to each of ``loggers``."""

    def __init__(self, loggers: list[MetricsLogger]) -> None:
        self.loggers = loggers

    def begin(self, history: list[dict[str, Any]]) -> None:
        for logger in self.loggers:
            logger.begin(history)

    def log(self, record: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(record)

    def image(self, key: str, figure: Any, iteration: int) -> None:
        for logger in self.loggers:
            logger.image(key, figure, iteration)

    def finish(self, exit_code: int = 0) -> None:
        for logger in self.loggers:
            logger.finish(exit_code)


def wandb_settings(cfg: Any, run_dir: str | Path, run_name: str | None = None, default_group: str | None = None,
                   default_tags: list[str] | None = None) -> dict[str, Any]:
    """The W&B run's settings: each from the config when it is set there, else from W&B's environment
    variable, else l2l's default (see ``LoggerConfig``)."""
    env = os.environ
    if cfg.tags:
        tags = list(cfg.tags)
    elif env.get("WANDB_TAGS"):
        tags = [t.strip() for t in env["WANDB_TAGS"].split(",") if t.strip()]
    else:
        tags = list(default_tags or [])
    return {
        "mode": cfg.mode or env.get("WANDB_MODE") or "offline",
        "project": cfg.project or env.get("WANDB_PROJECT") or "l2l",
        "entity": cfg.entity or env.get("WANDB_ENTITY") or None,
        "group": cfg.group or env.get("WANDB_RUN_GROUP") or default_group,
        "tags": [str(t)[:64] for t in tags],
        "name": cfg.run_name or env.get("WANDB_NAME") or run_name,
        "run_dir": cfg.dir or env.get("WANDB_DIR") or str(run_dir),
    }


@dataclass(frozen=True)
class LoggerEntry:
    """A dashboard ``logger=<name>`` chooses: ``make(cfg, run_dir, config, defaults)`` returns its logger.
    ``defaults``: ``run_name``, ``default_group`` and ``default_tags`` of this run (:func:`make_logger`).
    ``requires``: the module it imports and the package that provides it, checked before the run starts."""

    name: str
    make: Callable[[Any, Path, Mapping[str, Any], dict[str, Any]], MetricsLogger]
    requires: tuple[str, str] | None = None


def _wandb(cfg: Any, run_dir: Path, config: Mapping[str, Any], defaults: dict[str, Any]) -> MetricsLogger:
    settings = wandb_settings(cfg, run_dir, **defaults)
    return WandbLogger(config=config, init_timeout=cfg.init_timeout, **settings)


def _tensorboard(cfg: Any, run_dir: Path, config: Mapping[str, Any], defaults: dict[str, Any]) -> MetricsLogger:
    from l2l.outer_loop.app.tensorboard_logger import TensorBoardLogger

    return TensorBoardLogger(run_dir / "tensorboard", config)


def _csv(cfg: Any, run_dir: Path, config: Mapping[str, Any], defaults: dict[str, Any]) -> MetricsLogger:
    from l2l.outer_loop.app.csv_logger import CsvLogger

    return CsvLogger(run_dir / "csv", config)


def _mlflow(cfg: Any, run_dir: Path, config: Mapping[str, Any], defaults: dict[str, Any]) -> MetricsLogger:
    from l2l.outer_loop.app.mlflow_logger import MlflowLogger, mlflow_settings

    return MlflowLogger(config=config, **mlflow_settings(cfg, run_dir, **defaults))


LOGGERS: Registry[LoggerEntry] = Registry("logger.backends")
"""Every dashboard by name (``logger=<name>``); a new one is its class, one ``LOGGERS.register(...)`` and a
``conf/logger/<name>.yaml`` that sets ``backends: {<name>: true}``."""
LOGGERS.register(LoggerEntry("wandb", _wandb, ("wandb", "wandb")))
LOGGERS.register(LoggerEntry("tensorboard", _tensorboard, ("tensorboard", "tensorboard")))
LOGGERS.register(LoggerEntry("csv", _csv))
LOGGERS.register(LoggerEntry("mlflow", _mlflow, ("mlflow", "mlflow-skinny")))


def chosen_backends(cfg: Any) -> list[str]:
    """The names of the dashboards ``cfg`` (a LoggerConfig node) turns on, each registered in :data:`LOGGERS`
    and its package installed (InvalidValueError naming ``logger.backends`` otherwise)."""
    names = [str(name) for name, on in (cfg.backends or {}).items() if on]
    for name in names:
        requires = LOGGERS.entry(name).requires
        if requires is not None and requires[0] not in sys.modules and importlib.util.find_spec(requires[0]) is None:
            raise InvalidValueError("logger.backends", name, f": it needs the {requires[1]} package, which is not "
                                    f"installed (pip install {requires[1]})")
    return names


def make_logger(cfg: Any, run_dir: str | Path, config: Mapping[str, Any], run_name: str | None = None,
                default_group: str | None = None, default_tags: list[str] | None = None) -> MetricsLogger:
    """``metrics.jsonl`` in ``run_dir``, plus each dashboard ``cfg.backends`` turns on (:data:`LOGGERS`; W&B's
    settings: :func:`wandb_settings`), all receiving the same records and figures.

    cfg: a LoggerConfig node; ``default_group`` the experiment or sweep name, ``default_tags`` the overrides.
    """
    names = chosen_backends(cfg)
    defaults = {"run_name": run_name, "default_group": default_group, "default_tags": default_tags}
    loggers: list[MetricsLogger] = [JsonlLogger(Path(run_dir) / "metrics.jsonl")]
    try:
        for name in names:
            loggers.append(LOGGERS[name].make(cfg, Path(run_dir), config, defaults))
    except BaseException:
        for logger in loggers:   # the ones already started are closed, as failed runs
            logger.finish(exit_code=1)
        raise
    return CompositeLogger(loggers)


def figure_pixels(figure: Any) -> Any:
    """A matplotlib Figure rendered to an (H, W, 4) uint8 array (no pyplot, no display needed)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()
