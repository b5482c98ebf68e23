"""``l2l-eval``: score a meta-trained e-prop 2 model on held-out tasks and draw them.

    l2l-eval outputs/arm_one_shot/2026-11-22_10-00-00            # a run dir (uses checkpoints/last.pt)
    l2l-eval path/to/last.pt --tasks 128 --seed 7 --out results/

Writes ``eval.json`` (``demo_mse``: Cartesian MSE of the demonstration, before the update; ``test_mse``:
of the test trial after one update; ``bptt_step_mse`` and ``eprop1_step_mse``: one BPTT step and one
e-prop step with symmetric feedback and the true error on the demonstration, best learning rate of a
grid; per-task values and standard deviations; ``iteration``: the outer iterations the checkpoint had trained)
and ``eval.png`` (target vs before vs after) into the
run dir or ``--out``. The held-out tasks come from ``eval.seed``, independent of the training seed. A run
trained with ``eval.enabled=false`` gets these scores in its ``summary.json`` too (``"by": "l2l-eval"``); a summary
that holds scores is left as it is.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from l2l import __version__
from l2l.allocator import keep_freed_memory
from l2l.command_line import CommandParser
from l2l.outer_loop.algorithm.difficulty import ADAM_LRS, adam_steps_mse
from l2l.outer_loop.algorithm.evaluation import evaluate_one_shot, one_shot_figure, one_shot_step
from l2l.outer_loop.algorithm.meta import MetaLearner
from l2l.outer_loop.algorithm.update_alignment import update_alignment
from l2l.outer_loop.app.checks import check_held_out_memory
from l2l.outer_loop.checkpoint import CheckpointError
from l2l.outer_loop.reports.demo_figures import demo_figure

log = logging.getLogger(__name__)

EVAL_KEYS = ("demo_mse", "test_mse", "bptt_step_mse", "eprop1_step_mse")


def held_out_tasks(meta: MetaLearner, cfg: DictConfig) -> tuple[Any, torch.Tensor]:
    """``eval.tasks`` episodes and their coded targets from ``eval.seed`` (the same for every run and model)."""
    if cfg.eval.tasks < 1:
        raise ValueError(f"eval.tasks={cfg.eval.tasks!r} is not allowed: it must be >= 1")
    generator = torch.Generator().manual_seed(int(cfg.eval.seed))
    episode = meta.family.sample(cfg.eval.tasks, generator)
    return episode, meta.encode(episode, generator)


def evaluate_run(meta: MetaLearner, cfg: DictConfig, out_dir: str | Path,
                 on_figure: Any = None, iteration: int | None = None,
                 adam_steps: Sequence[int] = (), adam_lrs: Sequence[float] = ADAM_LRS,
                 alignment: bool = False) -> dict[str, Any]:
    """Evaluate ``meta`` on held-out tasks; writes eval.json and eval.png into ``out_dir``; returns eval.json's dict.
    ``on_figure(name, figure)`` also receives the figure (the app logs it to W&B); ``iteration`` (the outer
    iterations behind ``meta``) goes into eval.json when given. ``adam_steps`` (e.g. (10, 100)): also the
    difficulty reference, k Adam steps of BPTT per task from the learned initialization
    (:mod:`l2l.outer_loop.algorithm.difficulty`), as ``adam_steps`` in eval.json. ``alignment``: also the
    update's cosine with the BPTT gradient and the error along it (:mod:`l2l.outer_loop.algorithm.update_alignment`),
    as ``alignment``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(meta.parameters()).device
    episode, code = held_out_tasks(meta, cfg)
    episode, code = episode.to(device), code.to(device)
    step = one_shot_step(meta, episode, code)
    result = evaluate_one_shot(meta, episode, code, list(cfg.eval.bptt_lrs), list(cfg.eval.eprop1_lrs), step)
    result["eval_seed"] = int(cfg.eval.seed)
    if adam_steps:
        result["adam_steps"] = adam_steps_mse(meta, episode, adam_steps, adam_lrs)
    if alignment:
        result["alignment"] = update_alignment(meta, episode, code)
    if iteration is not None:
        result["iteration"] = int(iteration)
    (out_dir / "eval.json").write_text(json.dumps(_finite(result), indent=2) + "\n", encoding="utf-8")
    shown = representative_tasks(result["per_task"]["demo_mse"], result["per_task"]["test_mse"], cfg.eval.figure_tasks)
    if shown:
        figure = one_shot_figure(meta, episode, step.adaptation.demo.output, step.test_output, tuple(shown))
        figure.suptitle(f"held-out tasks at quantiles of after/before MSE (of {result['n_tasks']} tasks)", fontsize=9)
        figure.savefig(out_dir / "eval.png", dpi=110)
        if on_figure is not None:
            on_figure("eval", figure)
            on_figure("demo", demo_figure(meta, episode, step, shown[:2], "held-out tasks: demo, update, test"))
    return result


def representative_tasks(before: list[float], after: list[float], count: int) -> list[int]:
    """Indices of ``count`` tasks at evenly spaced quantiles (from 1/(count+1) to count/(count+1)) of after/before:
    the figure shows typical tasks, neither the best nor the worst."""
    if count <= 0:
        return []
    ratios = sorted(range(len(before)), key=lambda i: after[i] / before[i] if before[i] > 0 else math.inf)
    picks = [ratios[min(len(ratios) - 1, round((k + 1) * len(ratios) / (count + 1)))] for k in range(count)]
    return list(dict.fromkeys(picks))


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats (a diverged baseline learning rate) as None: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def load_meta(path: str | Path, overrides: list[str] | None = None) -> tuple[MetaLearner, DictConfig, int | None]:
    """The meta-learner of a checkpoint, run dir or shipped model name, its config (with ``overrides``, e.g.
    ``eval.tasks=8``) and the outer iterations it had trained (None where the file does not say). Raises
    :class:`l2l.outer_loop.reports.pretrained.CheckpointError` naming the file and the problem for anything unusable."""
    from l2l.outer_loop.reports.pretrained import build_from_state, read_state, resolve

    file = resolve(path)
    state = read_state(file)
    if overrides:
        config = OmegaConf.merge(OmegaConf.create(state["config"]), OmegaConf.from_dotlist(list(overrides)))
        state = {**state, "config": OmegaConf.to_container(config)}
    iteration = state.get("iteration")
    return (*build_from_state(state, file), None if iteration is None else int(iteration))


def default_out(run: Path) -> Path:
    """Where ``l2l-eval RUN`` writes without ``--out``: a run dir itself, the run dir of its
    ``checkpoints/<file>.pt``, else (a shipped name, any other file) the current directory."""
    if run.is_dir():
        return run
    if run.is_file() and run.parent.name == "checkpoints":
        return run.parent.parent
    return Path(".")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``l2l-eval``."""
    keep_freed_memory()
    parser = CommandParser(prog="l2l-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s (l2l) {__version__}")
    parser.add_argument("run", help="a meta-training run dir or a checkpoint file (checkpoints/last.pt)")
    parser.add_argument("--tasks", type=int, default=None, help="number of held-out tasks (default: eval.tasks)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the held-out tasks (default: eval.seed)")
    parser.add_argument("--out", default=None, help="where eval.json and eval.png go (default: the run dir of a "
                        "run dir or its checkpoints/last.pt, else the current directory)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--adam-steps", default="", metavar="K[,K...]",
                        help="also k Adam steps of BPTT per task from the learned initialization (the difficulty "
                             "reference; e.g. 10,100), best of --adam-lrs")
    parser.add_argument("--adam-lrs", default=",".join(map(str, ADAM_LRS)), metavar="LR[,LR...]",
                        help=f"learning rates of --adam-steps (default {','.join(map(str, ADAM_LRS))})")
    parser.add_argument("--alignment", action="store_true",
                        help="also the update's cosine with the BPTT gradient per task and the error after "
                             "W − s·(W − W_task) for s in 0..4 (eval.json: alignment)")
    args = parser.parse_args(argv)
    adam_steps = numbers(parser, "--adam-steps", args.adam_steps, int, lambda k: k >= 1, "integers >= 1")
    adam_lrs = numbers(parser, "--adam-lrs", args.adam_lrs, float, lambda v: v > 0 and math.isfinite(v),
                       "finite numbers > 0")
    parser.require_at_least("--tasks", args.tasks, 1)
    parser.require_at_least("--threads", args.threads, 0)
    parser.require_seed("--seed", args.seed)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    overrides = [f"eval.tasks={args.tasks}"] if args.tasks is not None else []
    overrides += [f"eval.seed={args.seed}"] if args.seed is not None else []
    try:
        meta, cfg, iteration = load_meta(args.run, overrides)
    except CheckpointError as error:
        parser.exit(2, f"l2l-eval: error: {error}\n")
    try:
        check_held_out_memory(cfg, meta.family, int(cfg.eval.tasks), "--tasks" if args.tasks else "eval.tasks")
    except ValueError as error:
        parser.error(str(error))
    out = Path(args.out) if args.out else default_out(Path(args.run))
    try:
        out.mkdir(parents=True, exist_ok=True)
        result = evaluate_run(meta, cfg, out, iteration=iteration, adam_steps=adam_steps, adam_lrs=adam_lrs,
                              alignment=args.alignment)
    except OSError as error:
        parser.exit(2, f"l2l-eval: error: --out {str(out)!r}: cannot write there ({error.strerror or error})\n")
    print(json.dumps({k: result[k] for k in EVAL_KEYS}, indent=2))
    for k, reached in result.get("adam_steps", {}).items():
        print(f"{k} Adam steps of BPTT per task: {reached['mse']:.4g} (lr {reached['lr']:g})")
    if "alignment" in result:
        cosine = result["alignment"]["cosine"]["all"]
        print(f"the update's cosine with the BPTT gradient: {cosine['mean']:.3f} ± {cosine['std']:.3f} over tasks; "
              "error at step scale " + ", ".join(f"{s}: {v:.4g}" for s, v in result["alignment"]["step_scale"].items()))
    print(f"wrote {out / 'eval.json'} and {out / 'eval.png'}")
    if fill_summary(out, result):
        print(f"filled the held-out scores of {out / 'summary.json'} (its run had eval.enabled=false)")
    return 0


def numbers(parser: CommandParser, flag: str, text: str, kind: type, valid: Any, allowed: str) -> list:
    """``text`` ("10,100") as a list of ``kind``; one-line usage error naming ``flag`` unless each is ``valid``."""
    if not text.strip():
        return []
    try:
        values = [kind(part) for part in text.split(",")]
    except ValueError:
        values = None
    if values is None or not all(valid(v) for v in values):
        parser.error(f"{flag}={text!r} is not allowed: give comma-separated {allowed}")
    return values


def fill_summary(run_dir: Path, result: dict[str, Any]) -> bool:
    """Put ``result``'s scores into ``run_dir/summary.json`` when that run was trained without its held-out
    evaluation (``"eval": null``); a summary that holds scores is left as it is. True when it was filled."""
    from l2l.outer_loop.app.loggers import write_json

    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(summary, dict) or summary.get("mode") != "meta" or summary.get("eval") is not None:
        return False
    scores = {k: result[k] for k in EVAL_KEYS}
    scores.update(n_tasks=result["n_tasks"], eval_seed=result["eval_seed"], by="l2l-eval")
    write_json(path, {**summary, "eval": scores})
    return True


if __name__ == "__main__":
    raise SystemExit(main())
