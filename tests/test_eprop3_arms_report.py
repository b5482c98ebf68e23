"""l2l.outer_loop.reports.eprop3_arms: arms, the validation grid's choice, the arms table, the command line."""

import json
import math

import numpy as np
import pytest

from l2l.outer_loop.reports.eprop3_arms import (
    arm_name,
    arms_table,
    chosen_learning_rates,
    final_bits_wrong,
    grid_table,
    main,
    read_arm_run,
)

STAGES = [{"length": 1, "max_repeats": 1}, {"length": 2, "max_repeats": 1}, {"length": 2, "max_repeats": 2}]


def make_run(path, rule, lr, seed, reached, bits, window=None, sg=None, quality=None):
    """A finished run: one evaluation row per entry of ``bits`` = [(probe 1 bits wrong, probe 2 bits wrong)]."""
    path.mkdir(parents=True)
    rule_cfg = {"name": rule, **({"window": window} if window else {}), **({"synthetic_gradient": sg} if sg else {})}
    cfg = {"seed": seed, "rule": rule_cfg, "train": {"lr": lr, "curriculum": {"patience": 5, "stages": STAGES}}}
    (path / ".hydra").mkdir()
    (path / ".hydra" / "config.yaml").write_text(json.dumps(cfg))
    rows = []
    for k, (b1, b2) in enumerate(bits):
        row = {"iteration": 100 * k, "bit_error": 0.1, "stage": min(k, reached), "seconds": 2.0 * k,
               "probe1_bits_wrong": b1, "probe2_bits_wrong": b2}
        if quality is not None:
            row.update({"sg_cosine": quality[k][0], "sg_r2": quality[k][1]})
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "summary.json").write_text(json.dumps({"wall_time_s": 2.0 * len(bits), "curriculum": {"stage": reached}}))
    return path


def test_arm_names_separate_the_synthetic_gradients():
    assert arm_name({"name": "bptt"}) == "bptt"
    assert arm_name({"name": "eprop3", "synthetic_gradient": "zero"}) == "eprop3 (zero)"
    assert arm_name({"name": "eprop3"}) == "eprop3 (learned)"                     # the rule's default
    assert arm_name({"name": "tbptt_sg", "synthetic_gradient": "oracle"}) == "tbptt_sg (oracle)"


def test_final_bits_wrong_is_the_mean_of_the_last_five_evaluations(tmp_path):
    bits = [(float(k), 10.0 * k) for k in range(8)]
    run = read_arm_run(make_run(tmp_path / "r", "bptt", 1e-3, 0, 2, bits))
    assert final_bits_wrong(run, "1") == pytest.approx(np.mean([3, 4, 5, 6, 7]))
    assert final_bits_wrong(run, "2") == pytest.approx(50.0)
    assert run["probes"]["2"]["time_s"][-1] == 14.0 and run["arm"] == "bptt" and run["lr"] == 1e-3


def test_the_grid_chooses_the_highest_stage_then_the_fewest_bits_and_the_oracle_takes_bptts(tmp_path):
    runs = [read_arm_run(make_run(tmp_path / name, rule, lr, 100, reached, [(b, b)] * 6, window, sg))
            for name, rule, lr, reached, b, window, sg in [
                ("b1", "bptt", 1e-3, 2, 5.0, None, None),     # stage 2, 10 bits
                ("b2", "bptt", 3e-3, 2, 1.0, None, None),     # stage 2, 2 bits: chosen (tie on stage)
                ("b3", "bptt", 1e-2, 1, 0.0, None, None),     # fewest bits but a lower stage
                ("z1", "eprop3", 1e-3, 1, 3.0, 4, "zero"),    # chosen (higher stage)
                ("z2", "eprop3", 3e-3, 0, 0.5, 4, "zero")]]
    grid = grid_table(runs)
    assert [(row["arm"], row["chosen_lr"]) for row in grid] == [("bptt", 3e-3), ("eprop3 (zero)", 1e-3)]
    assert [e["lr"] for e in grid[0]["by_lr"]] == [1e-3, 3e-3, 1e-2]
    assert grid[0]["by_lr"][0]["bits_wrong"] == {"1": 5.0, "2": 5.0}
    assert chosen_learning_rates(grid) == {"bptt": 3e-3, "eprop3 (zero)": 1e-3, "eprop3 (oracle)": 3e-3,
                                           "tbptt_sg (oracle)": 3e-3}
    duplicate = runs + [read_arm_run(make_run(tmp_path / "b4", "bptt", 3e-3, 100, 0, [(1, 1)] * 6))]
    with pytest.raises(ValueError, match="several grid runs share a learning rate"):
        grid_table(duplicate)


def test_the_arms_table_mean_std_over_seeds_and_the_sg_quality(tmp_path):
    quality = [(0.1 * k, -1.0 + 0.2 * k) for k in range(8)]          # last quarter: k = 6, 7
    runs = [read_arm_run(make_run(tmp_path / f"l{s}", "eprop3", 1e-3, s, reached, [(b, 2 * b)] * 8, 4, "learned",
                                  quality)) for s, reached, b in [(0, 1, 1.0), (1, 2, 3.0)]]
    runs.append(read_arm_run(make_run(tmp_path / "z0", "eprop3", 1e-3, 0, 0, [(9.0, 9.0)] * 8, 4, "zero")))
    rows = arms_table(runs, {"eprop3 (learned)": 1e-3})
    assert [(r["arm"], r["window"], r["n_seeds"]) for r in rows] == [("eprop3 (learned)", 4, 2),
                                                                    ("eprop3 (zero)", 4, 1)]
    learned = rows[0]
    assert learned["stages_passed"] == {"mean": 1.5, "std": pytest.approx(math.sqrt(0.5))}
    # reached 1: stage 0 (1×1) passed; reached 2, the last stage, without a checkpoint: stage 1 (2×1) passed
    assert learned["length_x_repeats"] == {"mean": 1.5, "std": pytest.approx(math.sqrt(0.5))}
    assert learned["bits_wrong"]["1"] == {"mean": 2.0, "std": pytest.approx(math.sqrt(2.0))}
    assert learned["bits_wrong"]["2"]["mean"] == 4.0
    assert learned["sg_cosine"]["mean"] == pytest.approx(0.65) and learned["sg_r2"]["mean"] == pytest.approx(0.3)
    assert "sg_r2" not in rows[1]
    with pytest.raises(ValueError, match="is not arm eprop3 \\(learned\\)'s chosen 0.003"):
        arms_table(runs, {"eprop3 (learned)": 3e-3})
    runs.append(read_arm_run(make_run(tmp_path / "l0b", "eprop3", 1e-3, 0, 0, [(1, 1)] * 8, 4, "learned")))
    with pytest.raises(ValueError, match="a seed appears twice"):
        arms_table(runs)


def test_the_command_writes_data_figures_and_tables(tmp_path, capsys):
    grid, test = tmp_path / "grid", tmp_path / "test"
    for lr, b in ((1e-3, 4.0), (3e-3, 2.0)):
        make_run(grid / "bptt" / f"lr{lr}", "bptt", lr, 100, 2, [(b, b)] * 6)
        make_run(grid / "eprop3" / f"lr{lr}", "eprop3", lr, 100, 1, [(b, 2 * b)] * 6, 4, "learned",
                 [(0.5, 0.1)] * 6)
    for s in range(2):
        make_run(test / "bptt" / f"seed{s}", "bptt", 3e-3, s, 2, [(1.0 + s, 2.0)] * 6)
        make_run(test / "oracle" / f"seed{s}", "eprop3", 3e-3, s, 2, [(1.0, 2.0)] * 6, 4, "oracle")
        make_run(test / "learned" / f"seed{s}", "eprop3", 3e-3, s, 1, [(3.0, 5.0)] * 6, 4, "learned",
                 [(0.5, 0.1 * s)] * 6)
    out = tmp_path / "docs"
    assert main(["--grid", str(grid), "--test", str(test), "--out", str(out), "--name", "arms"]) == 0
    data = json.loads((out / "data" / "arms.json").read_text())
    assert [r["arm"] for r in data["table"]] == ["bptt", "eprop3 (oracle)", "eprop3 (learned)"]
    for suffix in ("", "_probe1", "_probe2", "_sg_quality"):
        assert (out / "figures" / f"arms{suffix}.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "| `bptt` | – | **0.003** | 2 | 1: 2.0, 2: 2.0 |" in printed
    assert "| `eprop3 (learned)` | 4 | 0.003 | 2 | 1.0 ± 0.0 | 1.0 ± 0.0 | 3.0 ± 0.0 | 5.0 ± 0.0 | 0.50 ± 0.00 | " \
           "0.05 ± 0.07 | 12 |" in printed
    make_run(test / "wrong_lr" / "seed0", "bptt", 1e-3, 7, 2, [(1.0, 2.0)] * 6)
    with pytest.raises(SystemExit):
        main(["--grid", str(grid), "--test", str(test), "--out", str(out)])
    assert "lr 0.001 is not arm bptt's chosen 0.003" in capsys.readouterr().err


def test_a_compressed_raw_log_reads_the_same(tmp_path):
    import gzip

    path = make_run(tmp_path / "r", "eprop3", 1e-3, 0, 1, [(2.0, 3.0)] * 6, 4, "learned", [(0.2, -0.1)] * 6)
    plain = read_arm_run(path)
    metrics = path / "metrics.jsonl"
    (path / "metrics.jsonl.gz").write_bytes(gzip.compress(metrics.read_bytes()))
    metrics.unlink()
    packed = read_arm_run(path)
    assert {k: v for k, v in packed.items() if k != "run_dir"} == {k: v for k, v in plain.items() if k != "run_dir"}
    (path / "metrics.jsonl.gz").unlink()
    with pytest.raises(ValueError, match="metrics.jsonl: missing"):
        read_arm_run(path)


def test_the_sg_selection_rows_average_the_measurements():
    from l2l.outer_loop.reports.eprop3_arms import sg_selection_markdown, sg_selection_rows

    run = {"run_dir": "p", "options": {"sg_hidden": 64, "sg_lr": 3e-4, "sg_steps": 4, "sg_replay": 4,
                                       "sg_calibrate": True},
           "sg_quality": {"iteration": [0, 20, 40, 60], "cosine": [0.1, 0.2, 0.3, 0.4], "r2": [-1.0, 0.5, 0.2, -0.1]},
           "stage_reached": 3, "wall_time_s": 12.4}
    rows = sg_selection_rows([run, {**run, "sg_quality": None}])
    assert len(rows) == 1
    row = rows[0]
    assert row["cosine"] == pytest.approx(0.25) and row["r2"] == pytest.approx(-0.1)
    assert row["r2_second_half"] == pytest.approx(0.05) and row["r2_positive"] == 0.5
    assert sg_selection_markdown(rows)[2] == "| 64 | 0.0003 | 4 | 4 | True | 0.25 | -0.10 | 0.05 | 0.50 | 3 | 12 |"
