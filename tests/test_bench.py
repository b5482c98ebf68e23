"""l2l-bench reports timings, memory and the ratios measured in one run (no timing assertions)."""

import json

import pytest

from l2l.outer_loop.bench import cli as bench


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


@pytest.mark.parametrize("argv, message", [
    (["--sections", "gradient,speed"], "--sections='gradient,speed' is not allowed"),
    (["--hidden", "0"], "--hidden=0 is not allowed"),
])
def test_bench_rejects_bad_arguments_naming_them(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
