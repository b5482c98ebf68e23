"""docs/results.md tables that recompute from docs/data: the shipped reference models (docs/data/model_selection/: the
validation choice and every test number), and the shipped models are the ones chosen there."""

import json
import statistics
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"arm_one_shot_reference": "plain", "arm_one_shot_reference_deep": "2 × 100"}


def row_cells(record: dict, row: dict) -> str:
    t = row["test"]
    return (f"| {row['validation_after']:.4f} | {t['before']:.3f} | {{after}} ({t['after_over_before']:.3f}) | "
            f"{t['one_bptt_step']:.3f} | {t['one_eprop1_step']:.3f} | {t['improved']} / {record['tasks']} |"
            ).replace("{after}", f"**{t['after']:.4f}**" if row["model"] == record["selected"] else f"{t['after']:.4f}")


@pytest.mark.parametrize("name", sorted(LABELS))
def test_the_docs_table_is_the_recorded_selection(name):
    record = json.loads((ROOT / "docs" / "data" / "model_selection" / f"{name}.json").read_text())
    docs = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    validation = [row["validation_after"] for row in record["candidates"]]
    assert record["selected"] == record["candidates"][validation.index(min(validation))]["model"]
    assert record["validation_seed"] != record["test_seed"]
    for row in record["candidates"]:
        seed = row["model"].split("seed")[-1]
        line = next(line for line in docs.splitlines() if line.startswith(f"| {LABELS[name]}, seed {seed} "))
        assert line.endswith(row_cells(record, row)), (line, row_cells(record, row))
    after = [row["test"]["after"] for row in record["candidates"]]
    mean = f"{statistics.fmean(after):.4f} ± {statistics.pstdev(after):.4f}"
    assert f"| {LABELS[name]}, 3 seeds (mean ± std) | | " in docs and mean in docs


@pytest.mark.parametrize("name", sorted(LABELS))
def test_the_shipped_model_is_the_chosen_one(name):
    shipped = yaml.safe_load((ROOT / "l2l" / "pretrained" / f"{name}.yaml").read_text())
    record = json.loads((ROOT / "docs" / "data" / "model_selection" / f"{name}.json").read_text())
    assert shipped["selection"]["selected"] == record["selected"]
    assert f"seed={record['selected'].split('seed')[-1]} " in shipped["command"]
    assert shipped["eval"]["eval_seed"] == record["test_seed"] and shipped["eval"]["n_tasks"] == record["tasks"]
    chosen = next(row for row in record["candidates"] if row["model"] == record["selected"])
    assert shipped["eval"]["test_mse"] == pytest.approx(chosen["test"]["after"], rel=1e-6)


def test_the_make_run_seed_table_recomputes_from_its_data():
    """docs/results.md "Across training seeds": each row from docs/data/make_run_seeds/seedS/eval.json."""
    docs = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    afters = []
    for seed in (0, 1, 2):
        evaluation = json.loads((ROOT / "docs" / "data" / "make_run_seeds" / f"seed{seed}" / "eval.json").read_text())
        per_task = evaluation["per_task"]
        improved = sum(a < b for a, b in zip(per_task["test_mse"], per_task["demo_mse"], strict=True))
        cells = (f"| {evaluation['demo_mse']:.3f} | {evaluation['test_mse']:.4f} | {evaluation['bptt_step_mse']:.3f} | "
                 f"{evaluation['eprop1_step_mse']:.3f} | {improved} / 64 |")
        line = next(line for line in docs.splitlines() if line.startswith(f"| {seed} "))
        assert line.endswith(cells), (line, cells)
        afters.append(evaluation["test_mse"])
    assert f"**{statistics.fmean(afters):.4f} ± {statistics.stdev(afters):.4f}**" in docs


def test_the_meta_controls_table_recomputes_from_its_data(tmp_path):
    """docs/results.md "Meta-trained controls": the report on docs/data's runs prints the table the page shows."""
    from l2l.outer_loop.reports.meta_controls import report

    data = ROOT / "docs" / "data"
    runs = lambda folder: [folder / f"seed{s}" for s in (0, 1, 2)]  # noqa: E731
    groups = {"e-prop 2": runs(data / "make_run_seeds"), "MAML": runs(data / "meta_controls" / "maml"),
              "MAML, first order": runs(data / "meta_controls" / "maml_first_order"),
              "e-prop 1 step, symmetric": runs(data / "meta_controls" / "eprop1_symmetric"),
              "e-prop 1 step, random": runs(data / "meta_controls" / "eprop1_random")}
    table = report(groups, tmp_path, "meta_controls")["table"]
    docs = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for line in table.splitlines():
        assert line in docs, line
    stored = json.loads((data / "meta_controls.json").read_text())
    recomputed = json.loads((tmp_path / "data" / "meta_controls.json").read_text())
    assert {k: v["summary"] for k, v in stored.items()} == {k: v["summary"] for k, v in recomputed.items()}


def test_the_chosen_eta_table_recomputes_and_the_choice_is_the_validation_argmin(tmp_path):
    from l2l.outer_loop.reports.meta_controls import report

    data = ROOT / "docs" / "data"
    grid = json.loads((data / "meta_controls_eta" / "validation_grid" / "grid.json").read_text())
    for method, rows in grid["grid"].items():
        assert grid["chosen"][method] == min(rows, key=lambda eta: rows[eta]["after"])
        assert {row["eval_seed"] for row in rows.values()} == {20261205}
    runs = lambda folder: [folder / f"seed{s}" for s in (0, 1, 2)]  # noqa: E731
    chosen = {m: float(e) for m, e in grid["chosen"].items()}
    eta = data / "meta_controls_eta"
    groups = {"e-prop 2 (η0 1e-3, default)": runs(data / "make_run_seeds"),
              f"MAML, first order (η0 {chosen['maml_first_order']:g})": runs(eta / "maml_first_order"),
              f"e-prop 1 step, symmetric (η0 {chosen['eprop1_symmetric']:g})": runs(eta / "eprop1_symmetric"),
              f"e-prop 1 step, random (η0 {chosen['eprop1_random']:g})": runs(eta / "eprop1_random")}
    for method, value in chosen.items():     # each control ran at its chosen η0, learned per synapse
        for run in runs(eta / method):
            inner = yaml.safe_load((run / "config.yaml").read_text())["inner"]
            assert (inner["lr"], inner["lr_mode"], inner["backend"] in method) == (value, "per_synapse", True)
    table = report(groups, tmp_path, "meta_controls_eta")["table"]
    docs = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for line in table.splitlines():
        assert line in docs, line
