"""The ``csv`` logger: plain files for labs without a dashboard, read by pandas, R or a spreadsheet.

``<dir>/metrics.csv``: one row per logged iteration, the column ``iteration`` first, then one column per scalar in
the order they first appeared (a row without a scalar leaves its cell empty; non-finite values are ``nan``/``inf``).
``<dir>/config.yaml``: the run's config. ``<dir>/figures/<name>/<iteration>.png``: each figure.

The table is written whole (a new file renamed over the old) when a scalar first appears and at ``begin`` (the
history of a resumed run); otherwise rows are appended and flushed at once, so a crash keeps them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from l2l.outer_loop.app.loggers import MetricsLogger, write_text_atomically
from l2l.outer_loop.checkpoint import disk_write_error


def _cell(value: Any) -> str:
    """A scalar as text: integers exactly, floats by repr (round-trips), None and missing as empty."""
    if value is None:
        return ""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value) if isinstance(value, float) else str(value)


class CsvLogger(MetricsLogger):
    """Writes ``metrics.csv``, ``config.yaml`` and ``figures/`` into ``folder``.

    config: the run's resolved config (a plain dict)."""

    def __init__(self, folder: str | Path, config: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(dict(config))))
        self.path = self.folder / "metrics.csv"
        self.columns: list[str] = ["iteration"]
        self.rows: list[dict[str, str]] = []
        self._file: io.TextIOBase | None = None

    def begin(self, history: list[dict[str, Any]]) -> None:
        self.rows = []
        for record in history:
            self._add(record)
        self._rewrite()

    def _add(self, record: Mapping[str, Any]) -> bool:
        """Keep ``record`` as a row; whether it brought a new column."""
        new = [key for key in record if key not in self.columns]
        self.columns += new
        self.rows.append({key: _cell(value) for key, value in record.items()})
        return bool(new)

    def _line(self, row: Mapping[str, str]) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([row.get(key, "") for key in self.columns])
        return out.getvalue()

    def _rewrite(self) -> None:
        if self._file is not None:
            self._file.close()
        text = self._line({key: key for key in self.columns}) + "".join(self._line(row) for row in self.rows)
        write_text_atomically(self.path, text)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            self.begin([])
        if self._add(record):
            self._rewrite()
            return
        try:
            self._file.write(self._line(self.rows[-1]))
            self._file.flush()
        except OSError as error:
            raise disk_write_error(self.path, error) from error

    def image(self, key: str, figure: Any, iteration: int) -> None:
        folder = self.folder / "figures" / key.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(folder / f"{int(iteration):06d}.png", dpi=100)

    def finish(self, exit_code: int = 0) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
