"""l2l.outer_loop.reports.published_log: the published e-prop 2 code's raw log as a curve, and the several-seed
report that compares it at l2l's windows."""

import json
from pathlib import Path

import numpy as np
import pytest

from l2l.outer_loop.reports.published_log import PublishedLogError, read_published_log
from l2l.outer_loop.reports.reference_curve import main

SEED1 = Path(__file__).parents[1] / "docs" / "data" / "published_code" / "seed1_small.log"


def write_log(path: Path, ratios: dict[int, float], seconds: float = 1.5, until: int = 2000) -> Path:
    """A log as the program prints it: a TensorFlow warning, ITER every iteration, CURVE every 10."""
    lines = ["W0000 00:00:1796432750.9 generator_dataset_op.cc:113] Error occurred when finalizing"]
    for k in range(until):
        if k % 10 == 0:
            demo = 0.2
            lines.append(f"CURVE {k} {demo} {demo * ratios[k // 1000]}")
        lines.append(f"ITER {k} {seconds}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_log_becomes_a_curve_with_elapsed_seconds(tmp_path):
    curve = read_published_log(write_log(tmp_path / "a.log", {0: 0.5, 1: 0.25}, seconds=2.0))
    assert curve["iteration"][:3].tolist() == [0, 10, 20] and curve["iteration"].size == 200
    assert curve["seconds"][:2].tolist() == [2.0, 22.0]          # ITER 0 .. k summed, at each CURVE iteration
    assert np.allclose(curve["ratio"][:100], 0.5) and np.allclose(curve["ratio"][100:], 0.25)


def test_the_kept_log_of_seed_1_reads_whole():
    curve = read_published_log(SEED1)
    assert curve["iteration"].size == 300 and curve["iteration"][-1] == 2990
    assert np.isfinite(curve["ratio"]).all() and curve["seconds"][-1] > 2990


@pytest.mark.parametrize("text, message", [("", "has no CURVE line"), ("CURVE 0 0.1\n", "line 1 is not"),
                                           ("CURVE 10 0.1 0.1\nCURVE 0 0.1 0.1\n", "do not increase"),
                                           ("ITER x 1.0\n", "line 1 is not")])
def test_a_log_of_another_kind_is_named(tmp_path, text, message):
    (tmp_path / "x.log").write_text(text)
    with pytest.raises(PublishedLogError, match=message):
        read_published_log(tmp_path / "x.log")


def test_the_several_seed_report_compares_the_logs_at_the_same_windows(tmp_path):
    runs = []
    for name, test in (("a", 0.1), ("b", 0.3)):
        run = tmp_path / name
        run.mkdir()
        rows = [{"iteration": i, "seconds": 0.5 * i, "demo_mse": 0.2, "test_mse": test} for i in range(0, 2000, 10)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(str(run))
    logs = [str(write_log(tmp_path / "seed1.log", {0: 1.0, 1: 0.5})), str(write_log(tmp_path / "seed2.log",
                                                                                     {0: 0.8, 1: 0.7}))]
    assert main([*runs, "--out", str(tmp_path / "docs"), "--name", "proto", "--published", *logs]) == 0
    report = json.loads((tmp_path / "docs" / "data" / "proto.json").read_text())
    published = report["published"]
    assert [r["iterations"] for r in published["per_1000"]] == ["0-999", "1000-1999"]
    assert [r["mean"] for r in published["per_1000"]] == pytest.approx([0.9, 0.6])
    assert published["per_1000"][0]["std"] == pytest.approx(np.std([1.0, 0.8], ddof=1))
    assert published["per_100"]["seed1"][0]["test_over_demo"] == pytest.approx(1.0)
    assert published["iterations"] == {"seed1": 2000, "seed2": 2000}        # CURVE every 10 up to 1990
    assert (tmp_path / "docs" / "figures" / "proto.png").stat().st_size > 10_000
    with pytest.raises(SystemExit):
        main([runs[0], "--out", str(tmp_path / "docs"), "--published", logs[0]])     # one run: needs --name
