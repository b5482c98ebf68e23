"""docs/eprop3.md's separating experiment: its tables are the ones the kept runs give (docs/data/eprop3_arms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from l2l.outer_loop.reports.copy_repeat import read_run
from l2l.outer_loop.reports.eprop3_arms import (
    arms_markdown,
    arms_table,
    chosen_learning_rates,
    find_runs,
    grid_markdown,
    grid_table,
    read_arm_run,
    sg_selection_markdown,
    sg_selection_rows,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "eprop3_arms"
DOC = (ROOT / "docs" / "eprop3.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def grid():
    return grid_table([read_arm_run(d) for d in find_runs(DATA / "grid")])


@pytest.fixture(scope="module")
def test_runs():
    return [read_arm_run(d) for d in find_runs(DATA / "test")]


def test_the_sg_selection_table_recomputes_from_the_pilots():
    rows = sg_selection_rows([read_run(d) for d in find_runs(DATA / "sg_selection")])
    assert "\n".join(sg_selection_markdown(rows)) in DOC


def test_the_grid_table_recomputes_and_every_choice_is_inside_its_grid(grid):
    assert "\n".join(grid_markdown(grid)) in DOC
    for row in grid:
        lrs = [e["lr"] for e in row["by_lr"]]
        assert len(lrs) >= 3 and min(lrs) < row["chosen_lr"] < max(lrs), row["arm"]
        assert row["seed"] == 100                                              # the validation training seed


def test_the_arms_table_recomputes_with_five_test_seeds_at_the_chosen_rates(grid, test_runs):
    rows = arms_table(test_runs, chosen_learning_rates(grid))
    assert "\n".join(arms_markdown(rows, test_runs[0]["stages"])) in DOC
    assert all(r["n_seeds"] >= 5 and r["finished"] == r["n_seeds"] for r in rows)
    assert all(100 not in r["seeds"] for r in rows)                                # never the validation seed
    arms = {(r["arm"], r["window"]) for r in rows}
    for window in (4, 8):
        assert {(a, window) for a in ("tbptt", "tbptt_sg (learned)", "eprop3 (zero)", "eprop3 (learned)")} <= arms
    assert {("bptt", None), ("eprop", None), ("eprop3 (oracle)", 4)} <= arms


def test_the_report_data_file_matches_the_runs(grid, test_runs):
    data = json.loads((DATA.parent / "eprop3_arms.json").read_text(encoding="utf-8"))
    assert data["grid"] == json.loads(json.dumps(grid))
    assert data["table"] == json.loads(json.dumps(arms_table(test_runs, chosen_learning_rates(grid))))
