"""The ``tensorboard`` logger: event files in ``<run dir>/tensorboard`` (``tensorboard --logdir outputs``).

Every scalar is a scalar series (its key as the tag, the iteration as the step), the config a text entry
``config`` (YAML), each figure an image. A resumed run writes into the same directory and tells TensorBoard to
drop what the interrupted run logged after its checkpoint (``purge_step``), so a curve is never drawn twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from l2l.outer_loop.app.loggers import MetricsLogger, figure_pixels


def summary_writer() -> type:
    """torch's SummaryWriter; ImportError with the install command where the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("logger=tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or pip install 'l2l[tensorboard]')") from error
    return SummaryWriter


class TensorBoardLogger(MetricsLogger):
    """Scalars, config and figures of one run as TensorBoard events in ``folder``.

    config: the run's resolved config (a plain dict)."""

    def __init__(self, folder: str | Path, config: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.config = dict(config)
        self._writer_class = summary_writer()
        self.writer = None

    def begin(self, history: list[dict[str, Any]]) -> None:
        resumed = self.folder.is_dir() and any(self.folder.glob("events.out.tfevents.*"))
        first_new = max((int(r["iteration"]) for r in history), default=-1) + 1
        self.writer = self._writer_class(log_dir=str(self.folder), purge_step=first_new if resumed else None)
        self.writer.add_text("config", "```yaml\n" + OmegaConf.to_yaml(OmegaConf.create(self.config)) + "```", 0)
        if not resumed:   # the earlier events already hold the history
            for record in history:
                self.log(record)

    def log(self, record: Mapping[str, Any]) -> None:
        if self.writer is None:
            self.begin([])
        step = int(record.get("iteration", 0))
        for key, value in record.items():
            if key == "iteration" or value is None:
                continue
            value = value.item() if hasattr(value, "item") else value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value) if math.isfinite(value) else math.nan, step)
        self.writer.flush()

    def image(self, key: str, figure: Any, iteration: int) -> None:
        if self.writer is None:
            self.begin([])
        self.writer.add_image(key, figure_pixels(figure)[..., :3], int(iteration), dataformats="HWC")
        self.writer.flush()

    def finish(self, exit_code: int = 0) -> None:
        if self.writer is not None:
            self.writer.close()
