"""l2l.outer_loop.reports.reference_curve: the per-100-iteration table and figure of a run's metrics.jsonl."""

import json

import pytest

from l2l.outer_loop.reports.reference_curve import main, per_bin, read_curve, run_sizes, runs_title, seeds_figure


def write_run(tmp_path, rows):
    tmp_path.mkdir(parents=True, exist_ok=True)
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


def test_several_seeds_give_mean_and_std_per_1000_iterations_and_the_held_out_table(write_eval, tmp_path):
    # seed a: ratio 0.5 over 0-999 and 0.25 over 1000-1999 (its last iteration 1999 logged, as a run does); seed b:
    # 1.5 and 0.75, and it also logged 2000-2500, a bin seed a never completed (left out)
    a = write_run(tmp_path / "a", [{"iteration": i, "seconds": 0.5 * i, "demo_mse": 0.2,
                                    "test_mse": 0.1 if i < 1000 else 0.05} for i in [*range(0, 2000, 10), 1999]])
    b = write_run(tmp_path / "b", [{"iteration": i, "seconds": 1.0 * i, "demo_mse": 0.2,
                                    "test_mse": 0.3 if i < 1000 else 0.15} for i in range(0, 2510, 10)])
    write_eval(a / "eval_at" / "k1", [1.0, 1.0], [0.5, 2.0])       # improved 1 of 2
    write_eval(b / "eval_at" / "k1", [1.0, 1.0], [0.5, 0.5])       # improved 2 of 2
    write_eval(b / "eval_at" / "k2", [1.0, 1.0], [0.5, 0.5])       # only b: not in the table
    (a / "eval_at" / "k1" / "checkpoint.json").write_text(json.dumps({"iteration": 1000}))
    (b / "eval_at" / "k1" / "checkpoint.json").write_text(json.dumps({"iteration": 1000}))
    write_eval(a, [1.0, 1.0], [0.2, 0.2])
    write_eval(b, [1.0, 1.0], [0.4, 0.4])
    assert main([str(a), str(b), "--out", str(tmp_path / "docs"), "--name", "proto"]) == 0
    report = json.loads((tmp_path / "docs" / "data" / "proto.json").read_text())
    bins = report["per_1000"]
    assert [r["iterations"] for r in bins] == ["0-999", "1000-1999"]
    assert bins[0]["per_seed"] == pytest.approx({"a": 0.5, "b": 1.5})
    assert bins[0]["mean"] == pytest.approx(1.0) and bins[0]["std"] == pytest.approx(0.5 ** 0.5)
    assert bins[1]["seconds"] == pytest.approx({"a": 0.5 * 1999, "b": 1990.0})
    assert [r["checkpoint"] for r in report["held_out"]] == ["k1", "end"]
    k1, end = report["held_out"]
    assert k1["per_run"]["a"]["improved"] == 1 and k1["per_run"]["b"]["improved"] == 2
    assert k1["over_runs"]["improved"] == {"mean": 1.5, "std": pytest.approx(0.5 ** 0.5)}
    assert end["over_runs"]["test_mse"]["mean"] == pytest.approx(0.3)
    # where each evaluated checkpoint stood: the last logged iteration before it, and the end of the run
    assert (k1["per_run"]["a"]["iteration"], k1["per_run"]["a"]["seconds"]) == (1000, pytest.approx(0.5 * 990))
    assert (end["per_run"]["b"]["iteration"], end["per_run"]["b"]["seconds"]) == (2501, pytest.approx(2500.0))
    assert (tmp_path / "docs" / "figures" / "proto.png").stat().st_size > 10_000


def test_an_eval_json_that_names_its_iteration_needs_no_checkpoint_json(write_eval, tmp_path):
    # l2l-eval writes the checkpoint's iteration into eval.json: the held-out row stands at that iteration
    a = write_run(tmp_path / "a", [{"iteration": i, "seconds": 2.0 * i, "demo_mse": 0.2, "test_mse": 0.1}
                                   for i in range(0, 3000, 10)])
    write_eval(a / "eval_at" / "k2", [1.0], [0.5])
    eval_json = a / "eval_at" / "k2" / "eval.json"
    eval_json.write_text(json.dumps({**json.loads(eval_json.read_text()), "iteration": 2000}))
    assert main([str(a), str(a), "--out", str(tmp_path / "docs"), "--name", "proto"]) == 0
    k2 = json.loads((tmp_path / "docs" / "data" / "proto.json").read_text())["held_out"][0]
    assert k2["checkpoint"] == "k2"
    assert (k2["per_run"]["a"]["iteration"], k2["per_run"]["a"]["seconds"]) == (2000, pytest.approx(2.0 * 1990))


def test_several_runs_need_a_name(tmp_path, capsys):
    a = write_run(tmp_path, [{"iteration": 0, "seconds": 1.0, "demo_mse": 0.2, "test_mse": 0.1}])
    with pytest.raises(SystemExit):
        main([str(a), str(a), "--out", str(tmp_path / "docs")])
    assert "several run dirs need --name" in capsys.readouterr().err


def test_the_title_names_the_runs_sizes_from_their_configs(tmp_path):
    def run_with(name, learner, layers):
        run = write_run(tmp_path / name, [{"iteration": i, "seconds": float(i), "demo_mse": 0.2, "test_mse": 0.1}
                                          for i in range(0, 200, 10)])
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text(
            f"network:\n  n_hidden: {learner}\n  layers: {layers}\nerror_module:\n  n_hidden: 300\n"
            "outer:\n  batch_size: 100\n")
        return run

    paper, deep = run_with("paper", 400, 1), run_with("deep", 100, 2)
    assert run_sizes(paper) == "learner 400, error module 300, batch 100"
    assert run_sizes(deep) == "learner 2 × 100, error module 300, batch 100"
    assert runs_title([paper, paper]) == "reference protocol (learner 400, error module 300, batch 100)"
    assert runs_title([paper, deep]) == "reference protocol"                      # sizes differ: none named
    bare = write_run(tmp_path / "bare", [])                                      # an older run: no config
    assert runs_title([paper, bare]) == runs_title([paper])
    assert runs_title([bare]) == "reference protocol"
    assert main([str(paper), "--out", str(tmp_path / "docs"), "--name", "paper"]) == 0
    report = json.loads((tmp_path / "docs" / "data" / "paper.json").read_text())
    assert report["title"] == "reference protocol (learner 400, error module 300, batch 100)"
    assert [b["iterations"] for b in report["per_100"]["paper"]] == ["0-99", "100-199"]


def test_the_idle_speed_line_is_drawn_only_when_given(tmp_path):
    run = write_run(tmp_path / "a", [{"iteration": i, "seconds": 3.0 * i, "demo_mse": 0.2, "test_mse": 0.1}
                                     for i in range(0, 500, 10)])
    curves = {"a": read_curve(run)}
    dashed = lambda fig: [line for line in fig.axes[1].lines if line.get_linestyle() == "--"]  # noqa: E731
    assert dashed(seeds_figure(curves)) == []
    (line,) = dashed(seeds_figure(curves, idle_seconds=0.5))
    assert line.get_xdata()[-1] == pytest.approx(490 * 0.5)
    assert main([str(run), "--out", str(tmp_path / "docs"), "--name", "a", "--idle-seconds", "0.5"]) == 0
    report = json.loads((tmp_path / "docs" / "data" / "a.json").read_text())
    assert report["idle_seconds_per_iteration"]["l2l"] == 0.5


def test_the_window_sets_the_running_mean_and_must_hold_a_batch(tmp_path, capsys):
    # ratios 1, 1, 1, 1, 0.5, ...: a window of 2 reaches 0.75 at the fifth point, the default 50 stays near 1
    run = write_run(tmp_path / "a", [{"iteration": 10 * i, "seconds": float(i), "demo_mse": 0.2,
                                      "test_mse": 0.2 if i < 4 else 0.1} for i in range(6)])
    curves = {"a": read_curve(run)}
    assert seeds_figure(curves, 2).axes[0].lines[0].get_ydata()[4] == pytest.approx(0.75)
    assert seeds_figure(curves).axes[0].lines[0].get_ydata()[4] == pytest.approx(1 - 0.5 / 50)
    assert main([str(run), "--out", str(tmp_path / "docs"), "--name", "a", "--window", "2"]) == 0
    with pytest.raises(SystemExit):
        main([str(run), "--out", str(tmp_path / "docs"), "--name", "a", "--window", "0"])
    assert "--window 0: the running mean needs at least 1 logged batch" in capsys.readouterr().err
    with pytest.raises(SystemExit):                          # one run without --name: the options do nothing
        main([str(run), "--out", str(tmp_path / "docs"), "--window", "2"])
    assert "--window and --published shape the several-run report: give --name too" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_an_impossible_idle_speed_is_refused(tmp_path, capsys, value):
    run = write_run(tmp_path, [{"iteration": 0, "seconds": 1.0, "demo_mse": 0.2, "test_mse": 0.1}])
    with pytest.raises(SystemExit):
        main([str(run), "--out", str(tmp_path / "docs"), "--name", "a", "--idle-seconds", value])
    assert f"--idle-seconds {float(value)}: seconds per iteration must be > 0 and finite" in capsys.readouterr().err
