"""l2l.outer_loop.reports.copy_repeat: stages passed, longest solved length × repeats, the table, the figure."""

import json
import math

import pytest
import torch

from l2l.outer_loop.reports.copy_repeat import main, read_run, run_dirs, write_report

STAGES = [{"length": 1, "max_repeats": 1}, {"length": 2, "max_repeats": 1}, {"length": 2, "max_repeats": 2},
          {"length": 3, "max_repeats": 2}, {"length": 3, "max_repeats": 3}]
PATIENCE = 5


def make_run(path, rule, window, seed, logged, reached=None, wall=None, streak=None):
    """A hand-made direct run: ``logged`` = [(iteration, time_s, stage)]; no summary.json when ``reached`` is None."""
    path.mkdir(parents=True)
    rule_cfg = {"name": rule} if window is None else {"name": rule, "window": window}
    cfg = {"seed": seed, "rule": rule_cfg,
           "train": {"curriculum": {"threshold": 0.03, "patience": PATIENCE, "stages": STAGES}}}
    (path / ".hydra").mkdir()
    (path / ".hydra" / "config.yaml").write_text(json.dumps(cfg))                 # JSON is YAML
    rows = [{"iteration": i, "loss": 0.5, "bit_error": 0.1, "stage": s, "time_s": t} for i, t, s in logged]
    rows.append({"iteration": logged[-1][0] + 1, "eval/bit_error": 0.1})          # the final eval line: no stage
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if reached is not None:
        (path / "summary.json").write_text(json.dumps({"rule": rule, "seed": seed, "wall_time_s": wall,
                                                       "curriculum": {"stage": reached, "stages": len(STAGES),
                                                                      "params": STAGES[reached]}}))
    if streak is not None:
        (path / "checkpoints").mkdir()
        torch.save({"iteration": 100, "curriculum": {"stage": reached, "streak": streak}},
                   path / "checkpoints" / "last.pt")
    return path


@pytest.fixture
def runs(tmp_path):
    """eprop3 Δ=4 (a sweep dir, 3 seeds), tbptt Δ=4 (2 runs), bptt (1 unfinished run)."""
    sweep = tmp_path / "multirun" / "sweep"
    # seed 0: logged up to stage 2, the last batch moved it to 3 -> passed 3, last passed (2, 2) -> 4
    make_run(sweep / "0", "eprop3", 4, 0, [(0, 1.0, 0), (10, 20.0, 1), (20, 40.0, 2), (99, 99.0, 2)], 3, 100.0)
    # seed 1: stage 1 -> passed 1, (1, 1) -> 1
    make_run(sweep / "1", "eprop3", 4, 1, [(0, 1.0, 0), (50, 60.0, 1), (99, 119.0, 1)], 1, 120.0)
    # seed 2: the last stage with streak 7 >= patience 5 -> passed all 5, (3, 3) -> 9
    make_run(sweep / "2", "eprop3", 4, 2, [(0, 1.0, 0), (30, 40.0, 2), (60, 90.0, 4), (99, 139.0, 4)], 4, 140.0,
             streak=7)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / ".hydra").mkdir()                                                    # not a run
    # tbptt seed 0: nothing passed -> 0; seed 1: last stage, streak 2 < 5 -> passed 4, (3, 2) -> 6
    a = make_run(tmp_path / "tbptt_0", "tbptt", 4, 0, [(0, 1.0, 0), (99, 49.0, 0)], 0, 50.0)
    b = make_run(tmp_path / "tbptt_1", "tbptt", 4, 1, [(0, 1.0, 0), (80, 60.0, 4), (99, 69.0, 4)], 4, 70.0,
                 streak=2)
    # bptt, unfinished (no summary.json): the last logged stage 2 -> passed 2, (2, 1) -> 2; wall = last time_s 33
    c = make_run(tmp_path / "bptt_0", "bptt", None, 0, [(0, 1.0, 0), (10, 11.0, 1), (40, 33.0, 2)])
    return [sweep, a, b, c]


def test_stages_passed_and_longest_solved_per_run(runs):
    dirs = run_dirs(runs)
    assert [d.name for d in dirs] == ["0", "1", "2", "tbptt_0", "tbptt_1", "bptt_0"]
    got = [read_run(d) for d in dirs]
    assert [r["stages_passed"] for r in got] == [3, 1, 5, 0, 4, 2]
    assert [(r["length"], r["repeats"], r["length_x_repeats"]) for r in got] == [
        (2, 2, 4), (1, 1, 1), (3, 3, 9), (0, 0, 0), (3, 2, 6), (2, 1, 2)]
    assert [r["window"] for r in got] == [4, 4, 4, 4, 4, None]
    assert [r["iterations"] for r in got] == [100, 100, 100, 100, 100, 41]
    assert got[-1]["wall_time_s"] == 33.0 and not got[-1]["finished"]


def test_the_table_json_markdown_and_figure(runs, tmp_path, capsys):
    out = tmp_path / "docs"
    assert main([*map(str, runs), "--out", str(out), "--name", "cr"]) == 0
    report = json.loads((out / "data" / "cr.json").read_text())
    rows = {(r["rule"], r["window"]): r for r in report["table"]}
    assert [(r["rule"], r["window"]) for r in report["table"]] == [("eprop3", 4), ("tbptt", 4), ("bptt", None)]
    e = rows[("eprop3", 4)]
    # stages passed 3, 1, 5: mean 3, std sqrt((0 + 4 + 4) / 2) = 2; length x repeats 4, 1, 9: mean 14/3,
    # squared deviations 4/9 + 121/9 + 169/9 = 294/9, / 2 -> std sqrt(49/3)
    assert e["n_seeds"] == 3 and e["seeds"] == [0, 1, 2]
    assert e["stages_passed"] == {"mean": pytest.approx(3.0), "std": pytest.approx(2.0)}
    assert e["length_x_repeats"] == {"mean": pytest.approx(14 / 3), "std": pytest.approx(math.sqrt(49 / 3))}
    assert e["wall_time_s"] == pytest.approx(120.0)
    t = rows[("tbptt", 4)]
    # stages passed 0, 4: mean 2, std sqrt(8); length x repeats 0, 6: mean 3, std sqrt(18); wall (50 + 70) / 2
    assert t["n_seeds"] == 2
    assert t["stages_passed"] == {"mean": pytest.approx(2.0), "std": pytest.approx(math.sqrt(8))}
    assert t["length_x_repeats"] == {"mean": pytest.approx(3.0), "std": pytest.approx(math.sqrt(18))}
    assert t["wall_time_s"] == pytest.approx(60.0)
    p = rows[("bptt", None)]
    assert p["n_seeds"] == 1 and p["stages_passed"] == {"mean": 2.0, "std": None}
    assert p["length_x_repeats"] == {"mean": 2.0, "std": None} and p["wall_time_s"] == pytest.approx(33.0)
    assert len(report["runs"]) == 6
    assert [s["stage"] for s in report["stage_first_logged"][str(runs[0] / "0")]] == [0, 1, 2]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| rule | Δ |") and lines[1].startswith("|---")
    assert lines[2:] == ["| `eprop3` | 4 | 3 | 3.0 ± 2.0 | 4.7 ± 4.0 | 120 |",
                         "| `tbptt` | 4 | 2 | 2.0 ± 2.8 | 3.0 ± 4.2 | 60 |",
                         "| `bptt` | – | 1 | 2.0 ± – | 2.0 ± – | 33 |"]
    assert (out / "figures" / "cr.png").stat().st_size > 20_000


def test_a_dir_without_runs_and_a_run_without_metrics_are_refused(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty: no run inside"):
        run_dirs([tmp_path / "empty"])
    run = make_run(tmp_path / "run", "eprop3", 4, 0, [(0, 1.0, 0)], 0, 1.0)
    (run / "metrics.jsonl").unlink()
    with pytest.raises(ValueError, match=r"run/metrics\.jsonl: missing"):
        write_report([run], tmp_path / "docs", "x")
    (run / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "eval/bit_error": 0.1}) + "\n")
    with pytest.raises(ValueError, match=r"run/metrics\.jsonl: no logged iteration with a curriculum stage"):
        read_run(run)
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "empty"), "--out", str(tmp_path / "docs")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "empty: no run inside" in err


def test_two_runs_of_the_same_seed_are_refused(runs, tmp_path):
    with pytest.raises(ValueError, match=r"a second run of rule=tbptt, window=4, seed=0"):
        write_report([runs[1], runs[1]], tmp_path / "docs", "x")


def test_the_bit_error_curve_is_read_and_smoothed_over_the_logged_batches():
    from l2l.outer_loop.reports.copy_repeat import _running_mean

    assert _running_mean([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert _running_mean([1.0, 3.0, 5.0], 10).tolist() == [1.0, 2.0, 3.0]


def test_each_run_keeps_its_training_bit_errors(runs):
    first = read_run(run_dirs(runs)[0])
    assert first["curve"]["bit_error"] == [0.1, 0.1, 0.1, 0.1]          # the eval line (no stage) is not a batch


def test_the_synthetic_gradients_measured_quality_is_read_and_drawn(tmp_path):
    run = make_run(tmp_path / "eprop3_0", "eprop3", 4, 0, [(0, 1.0, 0), (10, 2.0, 0), (20, 3.0, 1)], 1, 4.0)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows[0].update(sg_cosine=0.0, sg_r2=-0.5)
    rows[2].update(sg_cosine=0.4, sg_r2=0.1)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = make_run(tmp_path / "tbptt_0", "tbptt", 4, 0, [(0, 1.0, 0), (20, 3.0, 0)], 0, 4.0)
    assert read_run(run)["sg_quality"] == {"iteration": [0, 20], "cosine": [0.0, 0.4], "r2": [-0.5, 0.1]}
    assert read_run(plain)["sg_quality"] is None
    write_report([run, plain], tmp_path / "docs", "cr")
    assert (tmp_path / "docs" / "figures" / "cr_sg_quality.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "docs" / "data" / "cr.json").read_text())
    assert data["runs"][0]["sg_quality"]["r2"] == [-0.5, 0.1]
