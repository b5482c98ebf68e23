"""Choose a model on validation tasks, report it on test tasks: the rule for anything l2l ships.

    python -m l2l.outer_loop.reports.model_selection CHECKPOINT... --validation-seed 20261205 \\
        --test-seed 20261206 [--tasks 64] [--out selection.json]

Each candidate (a checkpoint, run dir or shipped name; e.g. the last checkpoints of 3 training seeds) is scored on
the held-out tasks of ``--validation-seed`` (the metric after the one-shot update); the lowest is selected. Every
candidate is then evaluated on the tasks of ``--test-seed`` (before, after, the one-step baselines told the true
error, tasks improved): the selected model's test row is what the docs report, beside the mean ± std of all
candidates (what a new training run can expect). The two task sets are disjoint draws (different seeds), so the
choice never sees the tasks it is reported on.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch

from l2l.command_line import CommandParser
from l2l.outer_loop.algorithm.evaluation import evaluate_one_shot, one_shot_step


def validation_score(path: str, tasks: int, seed: int) -> float:
    """The candidate's mean metric after the update on the validation tasks."""
    from l2l.outer_loop.reports.eval_cli import held_out_tasks, load_meta

    meta, cfg, _ = load_meta(path, [f"eval.tasks={tasks}", f"eval.seed={seed}"])
    episode, codes = held_out_tasks(meta, cfg)
    return float(one_shot_step(meta, episode, codes).metrics["test_mse"])


def scores_on_test(path: str, tasks: int, seed: int) -> dict[str, float]:
    """The candidate on the test tasks: before, after, after/before, one BPTT step, one e-prop 1 step (best lr of
    the model's own grids), tasks improved."""
    from l2l.outer_loop.reports.eval_cli import held_out_tasks, load_meta

    meta, cfg, _ = load_meta(path, [f"eval.tasks={tasks}", f"eval.seed={seed}"])
    episode, codes = held_out_tasks(meta, cfg)
    result = evaluate_one_shot(meta, episode, codes, list(cfg.eval.bptt_lrs), list(cfg.eval.eprop1_lrs))
    per_task = result["per_task"]
    improved = sum(a < b for a, b in zip(per_task["test_mse"], per_task["demo_mse"], strict=True))
    return {"before": result["demo_mse"], "after": result["test_mse"],
            "after_over_before": result["test_mse"] / result["demo_mse"], "one_bptt_step": result["bptt_step_mse"],
            "one_eprop1_step": result["eprop1_step_mse"], "improved": improved}


def select(candidates: list[str], tasks: int, validation_seed: int, test_seed: int) -> dict[str, Any]:
    """Score every candidate on validation, pick the lowest, evaluate every candidate on test."""
    if validation_seed == test_seed:
        raise ValueError(f"--validation-seed and --test-seed are both {test_seed}: choose on other tasks than you "
                         "report on")
    rows = [{"model": c, "validation_after": validation_score(c, tasks, validation_seed)} for c in candidates]
    chosen = min(range(len(rows)), key=lambda k: rows[k]["validation_after"])
    for row in rows:
        row["test"] = scores_on_test(row["model"], tasks, test_seed)
    keys = list(rows[0]["test"])
    spread = {k: {"mean": statistics.fmean(r["test"][k] for r in rows),
                  "std": statistics.pstdev([r["test"][k] for r in rows]) if len(rows) > 1 else 0.0} for k in keys}
    return {"tasks": tasks, "validation_seed": validation_seed, "test_seed": test_seed, "candidates": rows,
            "selected": rows[chosen]["model"], "selected_test": rows[chosen]["test"], "all_test": spread}


def markdown(result: dict[str, Any]) -> str:
    """The selection as a table: each candidate's validation score and test row, the selected one marked."""
    lines = ["| model | validation: after | test: before | test: after (after/before) | one BPTT step | "
             "one e-prop 1 step | tasks improved |", "|---|---|---|---|---|---|---|"]
    for row in result["candidates"]:
        t = row["test"]
        mark = " (selected)" if row["model"] == result["selected"] else ""
        lines.append(f"| `{row['model']}`{mark} | {row['validation_after']:.4f} | {t['before']:.4f} | "
                     f"{t['after']:.4f} ({t['after_over_before']:.3f}) | {t['one_bptt_step']:.4f} | "
                     f"{t['one_eprop1_step']:.4f} | {t['improved']} / {result['tasks']} |")
    a = result["all_test"]
    lines.append(f"| all candidates (mean ± std) | | {a['before']['mean']:.4f} ± {a['before']['std']:.4f} | "
                 f"{a['after']['mean']:.4f} ± {a['after']['std']:.4f} ({a['after_over_before']['mean']:.3f} ± "
                 f"{a['after_over_before']['std']:.3f}) | {a['one_bptt_step']['mean']:.4f} ± "
                 f"{a['one_bptt_step']['std']:.4f} | {a['one_eprop1_step']['mean']:.4f} ± "
                 f"{a['one_eprop1_step']['std']:.4f} | {a['improved']['mean']:.1f} / {result['tasks']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the table; ``--out`` writes the JSON."""
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.model_selection",
                           description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="+", help="checkpoints, run dirs or shipped names")
    parser.add_argument("--validation-seed", type=int, required=True)
    parser.add_argument("--test-seed", type=int, required=True)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--out", default=None, help="a JSON file for the result")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    parser.require_at_least("--tasks", args.tasks, 1)
    parser.require_seed("--validation-seed", args.validation_seed)
    parser.require_seed("--test-seed", args.test_seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from l2l.outer_loop.reports.pretrained import CheckpointError

    try:
        result = select(args.candidates, args.tasks, args.validation_seed, args.test_seed)
    except (ValueError, CheckpointError) as error:
        parser.exit(2, f"model_selection: error: {error}\n")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
