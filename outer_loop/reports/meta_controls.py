"""The table and curves of e-prop 2 beside its meta-trained controls (MAML, one e-prop 1 step), from run dirs.

    python -m l2l.outer_loop.reports.meta_controls "e-prop 2=RUN,RUN,RUN" "MAML=RUN,RUN,RUN" ... \\
        --out docs --name meta_controls

Each argument is a method's label and its run dirs (one per training seed), each evaluated by ``l2l-eval``
(``eval.json``; ``--adam-steps 10,100`` adds the difficulty reference). Per method, mean ± std over seeds of the
held-out metric before and after the update, after/before, the tasks improved, the one-step baselines told the true
error from the same initialization, k Adam steps where evaluated, and the seconds per outer iteration
(``metrics.jsonl``, the first logged iteration left out: it holds the start-up). Writes ``<out>/data/<name>.json``
and ``<out>/figures/<name>.png`` (the training batches' metric after the update, running mean, per method) and
prints the markdown table.

Held-out rows at fixed checkpoints: a run's ``eval_at/<label>/eval.json`` (``l2l-eval CHECKPOINT --out
RUN/eval_at/<label>``, e.g. from ``outer.keep_checkpoints=true``'s ``checkpoints/iteration_001000.pt``) are read
too; the second table has the held-out metric after the update (and after/before) at every checkpoint label all
runs of all methods have, and at the end.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from l2l.command_line import CommandParser

WINDOW = 20
"""Logged records in the running mean of the curves."""


def read_run(run_dir: Path) -> dict[str, Any]:
    """One run's held-out scores (eval.json) and seconds per iteration (metrics.jsonl)."""
    evaluation = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    rows = [r for r in rows if "test_mse" in r and "seconds" in r]
    per_task = evaluation["per_task"]
    improved = sum(a < b for a, b in zip(per_task["test_mse"], per_task["demo_mse"], strict=True))
    seconds = (rows[-1]["seconds"] - rows[1]["seconds"]) / (rows[-1]["iteration"] - rows[1]["iteration"])
    scores = {"before": evaluation["demo_mse"], "after": evaluation["test_mse"],
              "after_over_before": evaluation["test_mse"] / evaluation["demo_mse"], "improved": improved,
              "one_bptt_step": evaluation["bptt_step_mse"], "one_eprop1_step": evaluation["eprop1_step_mse"],
              "seconds_per_iteration": seconds}
    for k, reached in evaluation.get("adam_steps", {}).items():
        scores[f"adam_{k}"] = reached["mse"]
    alignment = evaluation.get("alignment")
    if alignment:
        scores["cosine_bptt"] = alignment["cosine"]["all"]["mean"]
    checkpoints = {}
    for path in sorted((run_dir / "eval_at").glob("*/eval.json")):
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier.get("eval_seed") != evaluation.get("eval_seed") or earlier["n_tasks"] != evaluation["n_tasks"]:
            raise ValueError(f"{path}: evaluated on other held-out tasks than {run_dir / 'eval.json'}")
        checkpoints[path.parent.name] = {"iteration": earlier.get("iteration"), "before": earlier["demo_mse"],
                                         "after": earlier["test_mse"]}
    checkpoints["end"] = {"iteration": evaluation.get("iteration", rows[-1]["iteration"] + 1),
                          "before": evaluation["demo_mse"], "after": evaluation["test_mse"]}
    return {"run_dir": str(run_dir), "n_tasks": evaluation["n_tasks"], "eval_seed": evaluation.get("eval_seed"),
            "iterations": rows[-1]["iteration"] + 1, "scores": scores, "checkpoints": checkpoints,
            "step_scale": alignment["step_scale"] if alignment else None,
            "curve": [(r["iteration"], r["test_mse"], r["demo_mse"]) for r in rows]}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and population std over the runs of every score they all have."""
    keys = [k for k in runs[0]["scores"] if all(k in r["scores"] for r in runs)]
    out = {}
    for key in keys:
        values = [float(r["scores"][key]) for r in runs]
        out[key] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}
    return out


def _cell(summary: dict[str, dict[str, float]], key: str, digits: int = 3) -> str:
    if key not in summary:
        return "—"
    mean, std = summary[key]["mean"], summary[key]["std"]
    return f"{mean:.{digits}g} ± {std:.1g}" if std > 0 else f"{mean:.{digits}g}"


def markdown_table(methods: dict[str, dict[str, Any]]) -> str:
    """One row per method: before, after, after/before, tasks improved, one-step baselines, Adam steps, s/it."""
    adam = sorted({k for m in methods.values() for k in m["summary"] if k.startswith("adam_")},
                  key=lambda k: int(k.split("_")[1]))
    cosine = any("cosine_bptt" in m["summary"] for m in methods.values())
    header = ["method", "seeds", "before", "after one update", "after/before", "tasks improved",
              "one BPTT step", "one e-prop 1 step", *(f"{k.split('_')[1]} Adam steps" for k in adam),
              *(["cosine with BPTT"] if cosine else []), "s / iteration"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, method in methods.items():
        s, n = method["summary"], method["n_tasks"]
        improved = f"{s['improved']['mean']:.1f} / {n}" if "improved" in s else "—"
        lines.append("| " + " | ".join([label, str(len(method["runs"])), _cell(s, "before"), _cell(s, "after"),
                                         _cell(s, "after_over_before", 2), improved, _cell(s, "one_bptt_step"),
                                         _cell(s, "one_eprop1_step"), *(_cell(s, k) for k in adam),
                                         *([_cell(s, "cosine_bptt", 2)] if cosine else []),
                                         _cell(s, "seconds_per_iteration", 2)]) + " |")
    return "\n".join(lines)


def checkpoint_table(methods: dict[str, dict[str, Any]]) -> str:
    """One row per method: the held-out metric after the update, mean ± std over seeds (after/before in
    brackets), at each checkpoint label every run has (ordered by iteration), ``end`` last; columns name the
    iteration when all runs agree on it."""
    runs = [r for m in methods.values() for r in m["runs"]]
    labels = [label for label in runs[0]["checkpoints"] if all(label in r["checkpoints"] for r in runs)]
    labels.sort(key=lambda label: (label == "end", runs[0]["checkpoints"][label]["iteration"] or 0))
    header = ["method"]
    for label in labels:
        iterations = {r["checkpoints"][label]["iteration"] for r in runs}
        header.append(f"{label} ({iterations.pop()} it.)" if len(iterations) == 1 and None not in iterations
                      else label)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, method in methods.items():
        cells = [name]
        for label in labels:
            points = [r["checkpoints"][label] for r in method["runs"]]
            after = summarize([{"scores": {"after": p["after"], "ratio": p["after"] / p["before"]}} for p in points])
            cells.append(f"{_cell(after, 'after')} ({_cell(after, 'ratio', 2)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves_figure(methods: dict[str, dict[str, Any]]) -> Any:
    """The training batches' metric after the update (solid) and before it (dotted) against the iteration,
    running mean over WINDOW logged records, mean over seeds, one colour per method."""
    from matplotlib.figure import Figure

    scaled = {label: m for label, m in methods.items() if all(r["step_scale"] for r in m["runs"])}
    figure = Figure(figsize=(12.0 if scaled else 7.5, 4.2), layout="constrained")
    ax = figure.add_subplot(1, 2 if scaled else 1, 1)
    for index, (label, method) in enumerate(methods.items()):
        colour = f"C{index}"
        length = min(len(r["curve"]) for r in method["runs"])
        for column, style in ((1, "-"), (2, ":")):
            series = [statistics.fmean(r["curve"][i][column] for r in method["runs"]) for i in range(length)]
            smooth = [statistics.fmean(series[max(0, i - WINDOW + 1):i + 1]) for i in range(length)]
            iterations = [method["runs"][0]["curve"][i][0] for i in range(length)]
            ax.plot(iterations, smooth, style, color=colour, lw=1.4,
                    label=f"{label}: after" if column == 1 else f"{label}: before")
    ax.set(xlabel="outer iteration", ylabel="training-batch metric (Cartesian MSE, m²)", yscale="log")
    ax.legend(fontsize=7, ncol=2)
    if scaled:
        along = figure.add_subplot(1, 2, 2)
        for index, (label, method) in enumerate(methods.items()):
            if label not in scaled:
                continue
            scales = sorted(method["runs"][0]["step_scale"], key=float)
            means = [statistics.fmean(r["step_scale"][s] for r in method["runs"]) for s in scales]
            along.plot([float(s) for s in scales], means, "o-", color=f"C{index}", label=label)
        along.axvline(1.0, color="gray", lw=0.6, ls=":")
        along.set(xlabel="step scale s (W − s·(W − W_task); 1 = the update)", yscale="log",
                  ylabel="held-out metric after the scaled step", title="error along each learned update")
        along.legend(fontsize=7)
    return figure


def report(groups: dict[str, list[Path]], out: Path, name: str) -> dict[str, Any]:
    """Read every run, write ``<out>/data/<name>.json`` and ``<out>/figures/<name>.png``; returns the data."""
    methods = {}
    for label, dirs in groups.items():
        runs = [read_run(d) for d in dirs]
        if len({r["eval_seed"] for r in runs}) != 1 or len({r["n_tasks"] for r in runs}) != 1:
            raise ValueError(f"{label}: the runs were evaluated on different held-out tasks (eval seed, count)")
        methods[label] = {"runs": runs, "summary": summarize(runs), "n_tasks": runs[0]["n_tasks"],
                          "eval_seed": runs[0]["eval_seed"]}
    seeds = {m["eval_seed"] for m in methods.values()}
    if len(seeds) != 1:
        raise ValueError(f"the methods were evaluated on different held-out tasks (eval seeds {sorted(seeds)})")
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    data = {label: {"summary": m["summary"], "n_tasks": m["n_tasks"], "eval_seed": m["eval_seed"],
                    "runs": [{k: v for k, v in r.items() if k != "curve"} for r in m["runs"]]}
            for label, m in methods.items()}
    (out / "data" / f"{name}.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    curves_figure(methods).savefig(out / "figures" / f"{name}.png", dpi=110)
    return {"methods": methods, "table": markdown_table(methods), "checkpoint_table": checkpoint_table(methods)}


def parse_group(text: str, parser: CommandParser) -> tuple[str, list[Path]]:
    """``LABEL=DIR[,DIR...]`` -> (label, run dirs); one-line usage error otherwise."""
    label, sep, dirs = text.partition("=")
    paths = [Path(d) for d in dirs.split(",") if d]
    if not sep or not label or not paths:
        parser.error(f"{text!r} is not allowed: give LABEL=RUN_DIR[,RUN_DIR...]")
    missing = [str(p) for p in paths if not (p / "eval.json").is_file() or not (p / "metrics.jsonl").is_file()]
    if missing:
        parser.error(f"{missing[0]}: no eval.json or metrics.jsonl (run l2l-eval on it first)")
    return label, paths


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the markdown table; writes the JSON and the figure."""
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.meta_controls",
                           description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="+", metavar="LABEL=RUN_DIR[,RUN_DIR...]")
    parser.add_argument("--out", default="docs", help="folder of data/<name>.json and figures/<name>.png")
    parser.add_argument("--name", default="meta_controls")
    args = parser.parse_args(argv)
    groups = dict(parse_group(text, parser) for text in args.groups)
    try:
        result = report(groups, Path(args.out), args.name)
    except (ValueError, KeyError, OSError) as error:
        parser.exit(2, f"meta_controls: error: {error}\n")
    print(result["table"])
    print()
    print(result["checkpoint_table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
