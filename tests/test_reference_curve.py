"""outer_loop.reports.reference_curve: the per-100-iteration table and figure of a run's metrics.jsonl."""

import json

import pytest

from outer_loop.reports.reference_curve import main, per_bin, read_curve


def write_run(tmp_path, rows):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_bins_average_the_batch_ratios_and_time_each_iteration(tmp_path):
    # 2 s per iteration for 0-99, then 1 s; ratios 0.5 and 2.0 alternate in the first bin, 0.25 in the second
    rows = [{"iteration": i, "seconds": 2.0 * (i + 1) if i < 100 else 200.0 + (i - 99),
             "demo_mse": 0.2, "test_mse": (0.1 if (i // 10) % 2 == 0 else 0.4) if i < 100 else 0.05}
            for i in range(0, 200, 10)] + [{"iteration": 199, "seconds": 300.0, "demo_mse": 0.2, "test_mse": 0.05}]
    rows.append({"eval/test_mse": 0.1})                     # the last line of a run: no curve point
    bins = per_bin(read_curve(write_run(tmp_path, rows)))
    assert [b["iterations"] for b in bins] == ["0-99", "100-199"]
    assert bins[0]["test_over_demo"] == pytest.approx(1.25)
    assert bins[1]["test_over_demo"] == pytest.approx(0.25)
    assert bins[0]["seconds_per_iteration"] == pytest.approx(182.0 / 91.0)   # 0 s before iteration 0 .. 182 s at 90
    assert bins[1]["seconds_per_iteration"] == pytest.approx((300.0 - 182.0) / (199 - 90))


def test_main_writes_the_table_and_figure(tmp_path):
    (tmp_path / "run").mkdir()
    run = write_run(tmp_path / "run", [{"iteration": i, "seconds": float(i + 1), "demo_mse": 0.2, "test_mse": 0.1}
                                       for i in range(0, 300, 10)])
    assert main([str(run), "--out", str(tmp_path / "docs")]) == 0
    table = json.loads((tmp_path / "docs" / "data" / "reference_curve.json").read_text())
    assert table["iterations"] == 291 and len(table["per_100"]) == 3
    assert (tmp_path / "docs" / "figures" / "eprop2_reference_curve.png").stat().st_size > 10_000


def test_a_run_without_curve_points_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has no logged iteration"):
        read_curve(write_run(tmp_path, [{"eval/test_mse": 0.1}]))
