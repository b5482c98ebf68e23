"""docs/results.md's table and curves from finished runs (l2l.outer_loop.reports.results)."""

import json

from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run
from l2l.outer_loop.reports.results import main, smooth

TINY = ["experiment=smoke", "task.n_steps=40", "network.n_hidden=12", "error_module.n_hidden=10",
        "error_module.code_neurons=6", "outer.batch_size=2", "outer.iterations=3", "outer.log_every=1",
        "outer.checkpoint_every=3", "outer.figure_every=0", "outer.progress=false", "eval.tasks=3",
        "eval.figure_tasks=0", "eval.bptt_lrs=[0.1,1.0]", "eval.eprop1_lrs=[0.1,1.0]"]


def test_results_table_and_figure_from_a_finished_run(tmp_path, capsys):
    run(compose_config(TINY), tmp_path / "tiny")
    assert main([str(tmp_path / "tiny"), "--out", str(tmp_path / "docs")]) == 0
    table = json.loads((tmp_path / "docs" / "data" / "results.json").read_text())
    evaluation = json.loads((tmp_path / "tiny" / "eval.json").read_text())
    assert table[0]["name"] == "tiny" and table[0]["n_tasks"] == 3 and table[0]["iterations"] == 3
    assert table[0]["scores"]["test_mse"] == evaluation["test_mse"]
    assert 0 <= table[0]["improved_tasks"] <= 3
    assert (tmp_path / "docs" / "figures" / "results_curves.png").stat().st_size > 0
    assert "tiny: demo_mse" in capsys.readouterr().out


def test_running_mean_keeps_length_and_constant_series():
    assert list(smooth([2.0] * 7, 3)) == [2.0] * 7
    assert list(smooth([1.0, 2.0], 5)) == [1.0, 2.0]
