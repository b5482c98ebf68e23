"""Figures from finished runs, pyplot-free: learning curves (``metrics.jsonl``) and episodes (checkpoints).

``python -m l2l.outer_loop.reports.plots curves OUT.png LABEL=RUN_DIR ...`` overlays the learning curves of several
runs; ``python -m l2l.outer_loop.reports.plots episode OUT.png RUN_DIR`` redraws the evaluation episode of a run from
its ``checkpoints/last.pt``. This is how the figures in ``docs/figures`` are made.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from l2l.command_line import CommandParser

LOG_SCALE = ("loss", "task_loss", "mse", "nmse", "mse_xy", "mse_omega", "ce", "bce")
LABELS = {"loss": "loss (task + regularization)", "task_loss": "task loss", "mse_xy": "Cartesian MSE (m²)",
          "mse_omega": "joint-velocity MSE ((rad/s)²)", "mse": "MSE", "nmse": "normalized MSE",
          "accuracy": "accuracy", "bit_error": "bit error rate", "rate_hz": "firing rate (Hz)"}
"""Axis labels with units for the metrics l2l logs (a key without an entry is shown as it is)."""


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of the one in a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def learning_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str] = ("task_loss",),
                    title: str | None = None) -> Figure:
    """One panel per key (e.g. ``task_loss``, ``accuracy``), one line per run, against the iteration."""
    fig = Figure(figsize=(4.2 * len(keys), 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        for label, history in runs.items():
            points = [(r["iteration"], r[key]) for r in history
                      if r.get(key) is not None and math.isfinite(r[key])]
            if points:
                ax.plot(*zip(*points, strict=True), label=label, lw=1.2)
        if key.removeprefix("eval_") in LOG_SCALE:
            ax.set_yscale("log")
        ax.set(xlabel="iteration", ylabel=LABELS.get(key.removeprefix("eval_"), key))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def episode_figure(run_dir: str | Path, index: int = 0) -> Figure:
    """Target vs produced on evaluation episode ``index`` of a finished run (network from checkpoints/last.pt)."""
    import torch
    from omegaconf import OmegaConf

    from l2l.outer_loop.app.build import build_network, build_task
    from l2l.outer_loop.app.train import build_curriculum
    from l2l.outer_loop.checkpoint import checkpoint_file, read_checkpoint

    checkpoint = read_checkpoint(checkpoint_file(run_dir), ("network", "config"), "a direct-training checkpoint")
    cfg = OmegaConf.create(checkpoint["config"])
    curriculum = build_curriculum(cfg)
    family = build_task(cfg.task) if curriculum is None else curriculum.largest     # what training built
    network = build_network(cfg.network, family)
    if curriculum is not None:        # the episode of the stage the run had reached
        stages = [r["stage"] for r in checkpoint.get("history", []) if isinstance(r, dict) and "stage" in r]
        curriculum.stage = min(int(stages[-1]) if stages else 0, len(curriculum.stages) - 1)
        family = curriculum.family
    network.load_state_dict(checkpoint["network"])
    episode = family.sample(cfg.train.eval_batch_size, torch.Generator().manual_seed(cfg.seed + 2)).select(index)
    inputs = episode.inputs if curriculum is None else curriculum.pad(episode).inputs   # zero channels appended
    with torch.no_grad():
        output = network(inputs)
    return family.plot(episode, output)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``curves OUT.png LABEL=RUN_DIR ...`` or ``episode OUT.png RUN_DIR``."""
    parser = CommandParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    curves = commands.add_parser("curves", help="overlay learning curves of runs")
    curves.add_argument("out", help="output PNG")
    curves.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (a directory with metrics.jsonl)")
    curves.add_argument("--keys", default="task_loss", help="comma-separated keys to plot (default task_loss)")
    curves.add_argument("--title", default=None)
    episode = commands.add_parser("episode", help="redraw a run's evaluation episode from its checkpoint")
    episode.add_argument("out", help="output PNG")
    episode.add_argument("run_dir")
    episode.add_argument("--index", type=int, default=0, help="which evaluation episode (default 0)")
    args = parser.parse_args(argv)
    if args.command == "episode":
        from l2l.outer_loop.checkpoint import CheckpointError

        try:
            figure = episode_figure(args.run_dir, args.index)
        except CheckpointError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        figure.savefig(args.out, dpi=110)
        return
    runs = {}
    for spec in args.runs:
        label, _, run_dir = spec.partition("=")
        if not run_dir:
            parser.error(f"run {spec!r} is not allowed: write LABEL=RUN_DIR")
        runs[label] = read_history(run_dir)
    learning_curves(runs, args.keys.split(","), args.title).savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
