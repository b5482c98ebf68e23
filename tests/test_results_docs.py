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


METHOD_LABELS = {"eprop2": "e-prop 2", "maml": "MAML", "maml_first_order": "MAML, first order",
                 "eprop1_symmetric": "e-prop 1 step, symmetric", "eprop1_random": "e-prop 1 step, random"}


def eta_grid_table(grid: dict) -> str:
    """The validation grid as docs/results.md shows it: one row per method, the error after the update per η0
    (4 decimals), the chosen one in bold, "–" where that η0 was not run."""
    etas = sorted({float(e) for rows in grid["grid"].values() for e in rows})
    lines = ["| method | " + " | ".join(f"η0 {e:g}" for e in etas) + " |", "|" + "---|" * (len(etas) + 1)]
    for method, label in METHOD_LABELS.items():
        rows = {float(e): (e, row) for e, row in grid["grid"][method].items()}
        cells = []
        for eta in etas:
            if eta not in rows:
                cells.append("–")
                continue
            key, row = rows[eta]
            value = f"{row['after']:.4f}"
            cells.append(f"**{value}**" if key == grid["chosen"][method] else value)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_the_chosen_eta_table_recomputes_and_the_choice_is_the_validation_argmin(tmp_path):
    from l2l.outer_loop.reports.meta_controls import report

    data = ROOT / "docs" / "data"
    grid = json.loads((data / "meta_controls_eta" / "validation_grid" / "grid.json").read_text())
    assert set(grid["grid"]) == set(grid["chosen"]) == set(METHOD_LABELS)
    for method, rows in grid["grid"].items():
        assert grid["chosen"][method] == min(rows, key=lambda eta: rows[eta]["after"])
        assert {row["eval_seed"] for row in rows.values()} == {20261205}
    docs = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for line in eta_grid_table(grid).splitlines():
        assert line in docs, line
    runs = lambda folder: [folder / f"seed{s}" for s in (0, 1, 2)]  # noqa: E731
    eta = data / "meta_controls_eta"
    groups = {"e-prop 2 (η0 1e-3, default)": runs(data / "make_run_seeds")}
    for method, value in grid["chosen"].items():     # each ran at its chosen η0, learned per synapse
        groups[f"{METHOD_LABELS[method]} (η0 {float(value):g})"] = runs(eta / method)
        for run in runs(eta / method):
            inner = yaml.safe_load((run / "config.yaml").read_text())["inner"]
            assert (inner["lr"], inner["lr_mode"]) == (float(value), "per_synapse"), run
            assert (inner["backend"] == "explicit") if method == "eprop2" else (inner["backend"] in method), run
            assert json.loads((run / "eval.json").read_text())["eval_seed"] == 20261122   # the test tasks
    table = report(groups, tmp_path, "meta_controls_eta")["table"]
    for line in table.splitlines():
        assert line in docs, line


REFERENCE_METHODS = METHOD_LABELS    # the same five methods, the same labels, on the reference protocol


def sitting_table(timing: Path) -> str:
    """Seconds per iteration in the one-thread sitting: the published code (median of its ITER lines after the first
    two) and each method (l2l-bench meta), their ratio to the published code and 3000 iterations in minutes."""
    published = [float(line.split()[2]) for line in (timing / "published.log").read_text().splitlines()
                 if line.startswith("ITER ")]
    seconds = {"published code": statistics.median(published[2:])}
    for method, label in REFERENCE_METHODS.items():
        seconds[label] = json.loads((timing / f"l2l_{method}.json").read_text())["seconds_per_iteration"]
    base = seconds["published code"]
    lines = ["| one outer iteration | " + " | ".join(seconds) + " |", "|" + "---|" * (len(seconds) + 1),
             "| seconds | " + " | ".join(f"{v:.3f}" for v in seconds.values()) + " |",
             "| × the published code | " + " | ".join(f"{v / base:.2f}" for v in seconds.values()) + " |",
             "| 3000 iterations (minutes) | " + " | ".join(f"{3000 * v / 60:.0f}" for v in seconds.values()) + " |"]
    return "\n".join(lines)


def test_the_reference_protocol_controls_recompute_from_their_data(tmp_path):
    """docs/results.md "On the reference protocol": both tables from the runs' data, the sitting's timing table from
    its raw files; every run is the method it is labelled, evaluated on the reference-protocol rows' tasks."""
    from l2l.outer_loop.reports.meta_controls import report

    data = ROOT / "docs" / "data" / "meta_controls_reference"
    groups = {label: [data / method / f"seed{s}" for s in (1, 2, 3)] for method, label in REFERENCE_METHODS.items()}
    for method, runs in zip(REFERENCE_METHODS, groups.values(), strict=True):
        for run in runs:
            config = yaml.safe_load((run / "config.yaml").read_text())
            assert config["name"] == "arm_one_shot_reference" and config["outer"]["iterations"] == 3000, run
            backend = config["inner"]["backend"]
            assert (backend == "explicit") if method == "eprop2" else (backend in method), run
            for path in (run / "eval.json", run / "eval_at" / "k1" / "eval.json", run / "eval_at" / "k2" / "eval.json"):
                evaluation = json.loads(path.read_text())
                assert (evaluation["eval_seed"], evaluation["n_tasks"]) == (20261122, 64), path
    result = report(groups, tmp_path, "meta_controls_reference")
    docs = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for line in (result["table"] + "\n" + result["checkpoint_table"]).splitlines():
        assert line in docs, line
    for line in sitting_table(data / "timing").splitlines():
        assert line in docs, line
    stored = json.loads((ROOT / "docs" / "data" / "meta_controls_reference.json").read_text())
    recomputed = json.loads((tmp_path / "data" / "meta_controls_reference.json").read_text())
    assert {k: v["summary"] for k, v in stored.items()} == {k: v["summary"] for k, v in recomputed.items()}
