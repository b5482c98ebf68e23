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
