"""docs/eprop3.md's synthetic-gradient pilot tables are the ones their data give (docs/data/eprop3_sg_pilot)."""

from __future__ import annotations

import json
from pathlib import Path

from l2l.outer_loop.reports.copy_repeat import read_run, run_dirs, sg_quality_table
from l2l.outer_loop.reports.sg_fit import markdown

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "eprop3_sg_pilot"


def test_the_online_table_recomputes_from_the_runs():
    runs = [read_run(d) for d in run_dirs(sorted((DATA / "online").iterdir()))]
    assert len(runs) == 14
    assert sg_quality_table(runs) in (ROOT / "docs" / "eprop3.md").read_text(encoding="utf-8")


def test_the_frozen_fit_table_recomputes_from_its_data():
    record = json.loads((DATA / "fit" / "sg_fit.json").read_text(encoding="utf-8"))
    assert record["run"] == "docs/data/eprop3_sg_pilot/frozen_run" and record["stage"] == 3
    assert markdown(record) in (ROOT / "docs" / "eprop3.md").read_text(encoding="utf-8")
