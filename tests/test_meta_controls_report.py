"""The meta-controls report: mean ± std over seeds from eval.json and metrics.jsonl, the table, JSON and figure."""

import json

import pytest

from l2l.outer_loop.reports.meta_controls import main, report


def fake_run(folder, before, after, per_task, seconds, eval_seed=7, adam=None, cosine=None):
    folder.mkdir(parents=True)
    evaluation = {"demo_mse": before, "test_mse": after, "bptt_step_mse": 0.5, "eprop1_step_mse": 0.6,
                  "per_task": {"demo_mse": per_task[0], "test_mse": per_task[1]}, "n_tasks": len(per_task[0]),
                  "eval_seed": eval_seed}
    if adam:
        evaluation["adam_steps"] = {k: {"mse": v, "lr": 0.01} for k, v in adam.items()}
    if cosine is not None:
        evaluation["alignment"] = {"cosine": {"all": {"mean": cosine, "std": 0.0}},
                                   "step_scale": {"0.0": before, "1.0": after, "2.0": before}}
    (folder / "eval.json").write_text(json.dumps(evaluation))
    rows = [{"iteration": i, "test_mse": 0.1, "demo_mse": 0.2, "seconds": 30.0 + seconds * i} for i in range(0, 21, 10)]
    rows[0]["seconds"] = 100.0       # the first record holds the start-up: left out
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_table_is_the_mean_and_std_over_seeds(tmp_path):
    a = [fake_run(tmp_path / f"a{s}", 0.2, after, ([0.2, 0.2], [0.1, 0.3]), sec, adam={"10": 0.01})
         for s, (after, sec) in enumerate([(0.1, 0.5), (0.3, 1.5)])]
    b = [fake_run(tmp_path / "b0", 0.4, 0.1, ([0.4, 0.4], [0.1, 0.2]), 2.0)]
    out = report({"A": a, "B": b}, tmp_path / "docs", "controls")
    summary = out["methods"]["A"]["summary"]
    assert summary["after"] == pytest.approx({"mean": 0.2, "std": 0.1})
    assert summary["after_over_before"] == pytest.approx({"mean": 1.0, "std": 0.5})
    assert summary["improved"] == {"mean": 1.0, "std": 0.0}
    assert summary["seconds_per_iteration"] == pytest.approx({"mean": 1.0, "std": 0.5})
    assert summary["adam_10"] == {"mean": 0.01, "std": 0.0}
    table = out["table"].splitlines()
    assert table[0].startswith("| method | seeds | before") and "10 Adam steps" in table[0]
    assert table[2].startswith("| A | 2 | 0.2 | 0.2 ± 0.1 | 1 ± 0.5 | 1.0 / 2 |")
    assert table[3].startswith("| B | 1 | 0.4 | 0.1 | 0.25 | 2.0 / 2 |") and "| — |" in table[3]
    data = json.loads((tmp_path / "docs" / "data" / "controls.json").read_text())
    assert data["A"]["summary"]["after"]["mean"] == pytest.approx(0.2)
    assert (tmp_path / "docs" / "figures" / "controls.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_on_other_held_out_tasks_are_refused(tmp_path, capsys):
    a = fake_run(tmp_path / "a", 0.2, 0.1, ([0.2], [0.1]), 1.0, eval_seed=1)
    b = fake_run(tmp_path / "b", 0.2, 0.1, ([0.2], [0.1]), 1.0, eval_seed=2)
    with pytest.raises(SystemExit) as stop:
        main([f"A={a}", f"B={b}", "--out", str(tmp_path / "docs")])
    assert stop.value.code == 2 and "different held-out tasks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([f"A={tmp_path / 'nothing'}"])


def test_the_alignment_column_and_panel(tmp_path):
    a = [fake_run(tmp_path / f"a{s}", 0.2, 0.1, ([0.2], [0.1]), 1.0, cosine=c) for s, c in enumerate((0.2, 0.4))]
    out = report({"A": a}, tmp_path / "docs", "aligned")
    assert "cosine with BPTT" in out["table"].splitlines()[0] and "| 0.3 ± 0.1 |" in out["table"]
    assert (tmp_path / "docs" / "figures" / "aligned.png").is_file()


def test_held_out_rows_at_fixed_checkpoints(tmp_path):
    runs = []
    for s, (early, late) in enumerate([(0.2, 0.1), (0.4, 0.3)]):
        run = fake_run(tmp_path / f"a{s}", 0.5, late, ([0.5], [late]), 1.0)
        for label, after, iteration in (("k1", early, 1000), ("k2", (early + late) / 2, 2000)):
            (run / "eval_at" / label).mkdir(parents=True)
            (run / "eval_at" / label / "eval.json").write_text(json.dumps(
                {"demo_mse": 0.5, "test_mse": after, "n_tasks": 1, "eval_seed": 7, "iteration": iteration}))
        runs.append(run)
    (runs[0] / "eval_at" / "k9").mkdir()         # a label one run lacks is left out
    (runs[0] / "eval_at" / "k9" / "eval.json").write_text(json.dumps(
        {"demo_mse": 0.4, "test_mse": 0.05, "n_tasks": 1, "eval_seed": 7, "iteration": 9000}))
    table = report({"A": runs}, tmp_path / "docs", "checkpoints")["checkpoint_table"].splitlines()
    assert table[0] == "| method | k1 (1000 it.) | k2 (2000 it.) | end (21 it.) |"
    assert table[2] == "| A | 0.3 ± 0.1 (0.6 ± 0.2) | 0.25 ± 0.1 (0.5 ± 0.2) | 0.2 ± 0.1 (0.4 ± 0.2) |"
    other = runs[1] / "eval_at" / "k1" / "eval.json"
    other.write_text(other.read_text().replace('"eval_seed": 7', '"eval_seed": 8'))
    with pytest.raises(ValueError, match="evaluated on other held-out tasks"):
        report({"A": runs}, tmp_path / "docs", "checkpoints")
