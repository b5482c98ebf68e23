"""Model selection on validation tasks, reported on test tasks (outer_loop/reports/model_selection.py)."""

import json

import pytest
from test_reliability import TINY_META

from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run
from l2l.outer_loop.reports.eval_cli import main as l2l_eval
from l2l.outer_loop.reports.model_selection import main, select


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    root = tmp_path_factory.mktemp("selection")
    for seed in (0, 1):
        run(compose_config([*TINY_META, "outer.iterations=2", f"seed={seed}", "eval.bptt_lrs=[0.1]",
                            "eval.eprop1_lrs=[0.1]"]), root / f"seed{seed}")
    return [str(root / f"seed{seed}") for seed in (0, 1)]


def test_the_choice_is_made_on_validation_and_reported_on_test(candidates, tmp_path):
    result = select(candidates, tasks=3, validation_seed=11, test_seed=12)
    validation = [row["validation_after"] for row in result["candidates"]]
    assert result["selected"] == candidates[validation.index(min(validation))]
    # the test rows are what l2l-eval reports on the test tasks
    for row in result["candidates"]:
        out = tmp_path / row["model"].split("/")[-1]
        assert l2l_eval([row["model"], "--tasks", "3", "--seed", "12", "--out", str(out)]) == 0
        evaluation = json.loads((out / "eval.json").read_text())
        assert row["test"]["after"] == pytest.approx(evaluation["test_mse"], rel=1e-6)
        assert row["test"]["before"] == pytest.approx(evaluation["demo_mse"], rel=1e-6)
    # and the validation score is the same evaluation on the validation tasks
    out = tmp_path / "validation"
    assert l2l_eval([result["selected"], "--tasks", "3", "--seed", "11", "--out", str(out)]) == 0
    assert min(validation) == pytest.approx(json.loads((out / "eval.json").read_text())["test_mse"], rel=1e-6)


def test_the_same_seed_for_both_is_refused(candidates, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*candidates, "--validation-seed", "5", "--test-seed", "5", "--tasks", "2"])
    assert stop.value.code == 2 and "choose on other tasks than you report on" in capsys.readouterr().err
