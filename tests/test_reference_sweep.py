"""l2l.outer_loop.reports.reference_sweep: configurations beside the plain protocol at the same checkpoint."""

import json

import pytest
from matplotlib.colors import to_hex

from l2l.outer_loop.reports.reference_sweep import _idle_seconds, configuration, main, sweep_figure


def _run(path, ratio_before, ratio_after, switch, last, seconds_per_iteration=1.0):
    """A run dir whose logged batches have test/demo ``ratio_before`` below iteration ``switch``, then
    ``ratio_after``, logged every 10 iterations up to ``last``."""
    path.mkdir(parents=True, exist_ok=True)
    rows = [{"iteration": i, "seconds": seconds_per_iteration * (i + 1), "demo_mse": 0.2,
             "test_mse": 0.2 * (ratio_before if i < switch else ratio_after)} for i in [*range(0, last, 10), last]]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_baseline_is_read_at_its_checkpoint_and_a_variant_at_its_end(write_eval, tmp_path):
    # baseline: 4000 iterations; its k3 checkpoint (iteration 3000) was evaluated; its batches' ratio is 2.0 up
    # to 2500 and 0.5 after, so the 1000 iterations before k3 average (50·2.0 + 50·0.5) / 100 = 1.25
    base = [_run(tmp_path / f"seed{s}", 2.0, 0.5, 2500, 3999) for s in (1, 2)]
    for s, test in ((1, [0.5, 0.5]), (2, [0.5, 2.0])):
        write_eval(base[s - 1] / "eval_at" / "k3", [1.0, 1.0], test)
        (base[s - 1] / "eval_at" / "k3" / "checkpoint.json").write_text(json.dumps({"iteration": 3000}))
    row = configuration("base", base, "k3")
    assert row["iterations"] == [3000, 3000]
    assert row["training_batches_test_over_demo"]["mean"] == pytest.approx(1.25)
    assert row["training_seconds"]["mean"] == pytest.approx(2991.0)      # the last logged batch before 3000
    assert row["held_out"]["test_mse"] == {"mean": pytest.approx(0.875), "std": pytest.approx(0.375 * 2 ** 0.5)}
    assert row["held_out"]["improved"]["mean"] == pytest.approx(1.5)

    variant = _run(tmp_path / "v", 1.0, 0.25, 2900, 2999, seconds_per_iteration=2.0)
    (variant / ".hydra").mkdir()
    (variant / ".hydra" / "overrides.yaml").write_text("- experiment=arm_one_shot_reference\n- inner.n_demos=2\n")
    write_eval(variant, [1.0, 1.0], [0.1, 0.1])
    row = configuration("v", [variant])
    assert row["iterations"] == [3000] and row["overrides"][-1] == "inner.n_demos=2"
    assert row["training_batches_test_over_demo"] == {"mean": pytest.approx((90 + 10 * 0.25 + 0.25) / 101),
                                                       "std": 0.0}
    assert row["training_seconds"]["mean"] == pytest.approx(6000.0)


def test_main_writes_the_table_and_refuses_a_missing_evaluation(write_eval, tmp_path, capsys):
    base = _run(tmp_path / "seed1", 1.0, 0.5, 1000, 1999)
    write_eval(base, [1.0], [0.4])
    variant = _run(tmp_path / "v", 1.0, 0.5, 1000, 1999)
    write_eval(variant, [1.0], [0.2])
    out = tmp_path / "docs"
    assert main(["--baseline", str(base), "--variant", f"v={variant}", "--out", str(out), "--name", "s"]) == 0
    printed = capsys.readouterr().out
    assert "| v | 1 | 2000 |" in printed and "| 0.200 (0.20) |" in printed
    assert printed.rstrip().endswith("| 1 / 1 |")          # one seed: a count, not a mean with decimals
    report = json.loads((out / "data" / "s.json").read_text())
    assert [r["name"] for r in report["configurations"]] == ["reference protocol (no change)", "v"]
    assert (out / "figures" / "s.png").stat().st_size > 10_000

    with pytest.raises(SystemExit) as stop:
        main(["--baseline", str(base), "--at", "k9", "--out", str(out)])
    assert stop.value.code == 2
    assert "no held-out evaluation 'k9'" in capsys.readouterr().err


def test_idle_seconds_add_a_panel_and_must_name_every_configuration(write_eval, tmp_path, capsys):
    base = _run(tmp_path / "seed1", 1.0, 0.5, 1000, 1999)
    write_eval(base, [1.0], [0.4])
    variant = _run(tmp_path / "v", 1.0, 0.5, 1000, 1999)
    write_eval(variant, [1.0], [0.2])
    out, base_name = tmp_path / "docs", "reference protocol (no change)"
    argv = ["--baseline", str(base), "--variant", f"v={variant}", "--out", str(out), "--name", "s"]
    assert main([*argv, "--idle-seconds", f"{base_name}=0.25", "--idle-seconds", "v=0.5"]) == 0
    rows = json.loads((out / "data" / "s.json").read_text())["configurations"]
    assert [r["idle_seconds_per_iteration"] for r in rows] == [0.25, 0.5]
    assert _idle_seconds("network.layers=2=0.6") == ("network.layers=2", 0.6)   # a name with "=" in it
    for bad, message in (([f"--idle-seconds={base_name}=0.25"], "it needs every configuration once"),
                         (["--idle-seconds", "w=1", "--idle-seconds", f"{base_name}=1", "--idle-seconds", "v=1"],
                          "(unknown: ['w'])"),
                         (["--idle-seconds", "v=-1"], "expected NAME=SECONDS with SECONDS > 0"),
                         (["--idle-seconds", "v=inf"], "expected NAME=SECONDS with SECONDS > 0")):
        with pytest.raises(SystemExit) as stop:
            main([*argv, *bad])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_idle_panel_places_each_curve_at_iteration_times_its_seconds(tmp_path):
    base, variant = _run(tmp_path / "b", 1.0, 0.5, 100, 199), _run(tmp_path / "v", 1.0, 0.5, 100, 199)
    fig = sweep_figure({"b": [base], "v": [variant]}, window=5, idle_seconds={"b": 0.5, "v": 2.0})
    by_iteration, by_time = fig.axes
    assert by_iteration.lines[1].get_xdata()[-1] == 199
    assert by_time.lines[0].get_xdata()[-1] == pytest.approx(199 * 0.5)
    assert by_time.lines[1].get_xdata()[-1] == pytest.approx(199 * 2.0)
    assert len(sweep_figure({"b": [base]}, window=5).axes) == 1


def test_no_configuration_is_drawn_in_the_baselines_grey(tmp_path):
    # nine configurations beside the baseline: the eighth used to get C7, the grey of matplotlib's cycle
    runs = {name: [_run(tmp_path / name, 1.0, 0.5, 100, 199)] for name in ["base", *(f"v{k}" for k in range(9))]}
    lines = sweep_figure(runs, window=5).axes[0].lines
    colours = [to_hex(line.get_color()) for line in lines[:10]]
    assert colours[0] == to_hex("0.55")
    assert to_hex("C7") not in colours and len(set(colours[1:])) == 9
