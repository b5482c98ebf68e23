"""l2l-bench reports timings, memory and the ratios measured in one run (no timing assertions)."""

import json

from l2l import bench


def test_bench_json_has_the_ratios(capsys):
    assert bench.main(["--json", "--quick", "--repeats", "1", "--steps", "20", "--hidden", "16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["ratios"]) == {"eprop_over_bptt", "eprop_over_forward", "bptt_over_forward"}
    assert all(v > 0 for v in report["ratios"].values())
    assert set(report["results"]) == {"forward", "eprop", "bptt"}
    assert report["config"]["steps"] == 20 and report["config"]["hidden"] == 16


def test_bench_rejects_bad_sizes(capsys):
    try:
        bench.main(["--hidden", "0"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "--hidden=0 is not allowed" in capsys.readouterr().err


def test_alignment_study_writes_table_and_plot(tmp_path, capsys):
    assert bench.main(["alignment", "--depths", "1", "2", "--seeds", "0", "--steps", "12", "--hidden", "5",
                       "--batch", "2", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads((tmp_path / "alignment.json").read_text())
    assert (tmp_path / "alignment.png").stat().st_size > 0
    table = report["table"]
    assert set(table) == {"eprop_local", "deep_eprop", "order1", "order2", "rtrl"}
    assert len(table["deep_eprop"]["depth2"]["mean"]) == 2
    for layer_cos in table["rtrl"]["depth2"]["mean"]:
        assert abs(layer_cos - 1.0) < 1e-9  # RTRL is exact
    # one layer: deep e-prop is e-prop, the same as the layer-local rule
    assert abs(table["deep_eprop"]["depth1"]["mean"][0] - table["eprop_local"]["depth1"]["mean"][0]) < 1e-12
    assert json.loads(capsys.readouterr().out)["config"]["steps"] == 12
