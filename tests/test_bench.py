"""l2l-bench reports timings, memory and the ratios measured in one run (no timing assertions)."""

import json

from l2l import bench


def test_bench_json_has_the_ratios_and_the_memory_growth(capsys):
    assert bench.main(["--json", "--quick", "--repeats", "1", "--steps", "20", "--hidden", "16",
                       "--sections", "gradient,memory", "--long-steps", "60"]) == 0
    report = json.loads(capsys.readouterr().out)
    gradient = report["gradient"]
    assert set(gradient["ratios"]) == {"eprop_over_bptt", "eprop_over_forward", "bptt_over_forward",
                                       "eprop_online_over_forward"}
    assert all(v > 0 for v in gradient["ratios"].values())
    assert set(gradient["results"]) == {"forward", "eprop", "eprop_online", "bptt"}
    assert gradient["config"]["steps"] == 20 and gradient["config"]["hidden"] == 16
    memory = report["memory"]
    assert memory["config"]["steps"] == [20, 60]
    assert set(memory["growth"]) == {"eprop_online", "eprop", "bptt"}
    assert set(memory["peak_memory_bytes"]["bptt"]) == {"20", "60"}
    assert "meta" not in report and "scaling" not in report


def test_bench_meta_and_scaling_sections_write_json_and_figure(tmp_path, capsys):
    assert bench.main(["--quick", "--sections", "meta,scaling", "--out", str(tmp_path), "--threads", "1"]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["meta"]) == {"smoke"}
    meta = report["meta"]["smoke"]
    assert meta["seconds_per_iteration"] > 0 and meta["fraction_of_gemm"] > 0
    assert set(report["scaling"]["axes"]) == {"batch_size", "network_size", "trial_length"}
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert "s per outer iteration" in capsys.readouterr().out


def test_bench_rejects_unknown_sections(capsys):
    try:
        bench.main(["--sections", "gradient,speed"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "--sections='gradient,speed' is not allowed" in capsys.readouterr().err


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
