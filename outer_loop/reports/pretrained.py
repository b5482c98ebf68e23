"""Pretrained e-prop 2 models shipped inside the package (``l2l/pretrained/<name>.pt``), and how they are made.

A shipped model is a slim checkpoint: the meta-parameters (learner initial weights, error module,
projection, learned inner rates), the resolved config that built them, the exact ``l2l-train`` command
that trained them, the iteration, the held-out evaluation of that run, a compact learning curve and
a ``check``: the one-shot scores on fixed held-out tasks that the test suite re-measures. Beside each
``.pt`` a ``.yaml`` holds the same command, scores and config in readable form.

    python -m l2l.outer_loop.reports.pretrained export outputs/pretrained/arm_one_shot arm_one_shot \\
        --command "l2l-train ..."

:func:`load_pretrained` accepts a shipped name, a shipped-format file, or a training checkpoint
(``last.pt`` or its run dir), and fails with :class:`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from l2l.command_line import CommandParser
from l2l.outer_loop.algorithm.meta import MetaLearner
from l2l.outer_loop.checkpoint import (
    CheckpointError,
    MissingCheckpointError,
    checkpoint_file,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

FORMAT = "l2l-pretrained/1"
CHECK_SEED = 4242
CHECK_TASKS = 16
"""The fixed held-out tasks of a shipped model's ``check`` (seed and count)."""


def pretrained_dir() -> Path:
    """The folder of the shipped models inside the installed ``l2l`` package."""
    return Path(str(resources.files("l2l") / "pretrained"))


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in pretrained_dir().glob("*.pt"))


def resolve(checkpoint: str | Path) -> Path:
    """A shipped name or a path -> the file to load; CheckpointError if there is none."""
    text = str(checkpoint)
    if text in available():
        return pretrained_dir() / f"{text}.pt"
    if not Path(text).expanduser().exists():
        raise MissingCheckpointError(f"checkpoint {text!r}: no such file, and not a shipped model "
                                     f"(shipped: {', '.join(available()) or 'none'})")
    return checkpoint_file(text)


def read_state(path: Path) -> dict[str, Any]:
    """The dict stored in ``path``; CheckpointError for unreadable, corrupted or foreign files."""
    return read_checkpoint(path, ("meta", "config"), "an l2l e-prop 2 model")


def build_from_state(state: dict[str, Any], path: Path) -> tuple[MetaLearner, DictConfig]:
    """The meta-learner the stored config describes, with the stored weights; CheckpointError if they disagree."""
    from l2l.outer_loop.app.build import build_meta, build_task
    from l2l.outer_loop.app.config import saved_config

    try:
        cfg = saved_config(state["config"])
    except Exception as error:
        raise CheckpointError(f"checkpoint {str(path)!r} has a config this version cannot read ({error})") from None
    if cfg.mode != "meta":
        raise CheckpointError(f"checkpoint {str(path)!r} comes from a mode={cfg.mode!r} run, not e-prop 2 "
                              "meta-training (mode=meta)")
    try:
        torch.manual_seed(int(cfg.seed))
        meta = build_meta(cfg, build_task(cfg.task))
    except Exception as error:
        raise CheckpointError(f"checkpoint {str(path)!r}: its config does not build a model ({error})") from None
    weights = state["meta"]
    own = meta.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [f"{k} {tuple(weights[k].shape)} (model {tuple(own[k].shape)})" for k in sorted(set(own) & set(weights))
             if tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:4]}" if missing else "", f"unexpected {unexpected[:4]}" if unexpected else "",
                 f"wrong shapes {wrong[:3]}" if wrong else ""]
        raise CheckpointError(f"checkpoint {str(path)!r} does not match the model its config describes: "
                              + "; ".join(p for p in parts if p))
    bad = [k for k, v in weights.items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r} holds non-finite weights in {bad[:4]}")
    meta.load_state_dict(weights)
    return meta.eval(), cfg


def load_pretrained(checkpoint: str | Path) -> tuple[MetaLearner, DictConfig, dict[str, Any]]:
    """(meta-learner, its config, info) from a shipped name or a path. info: name, path, command, iteration,
    eval, check, curve (those a training checkpoint lacks are None)."""
    path = resolve(checkpoint)
    state = read_state(path)
    meta, cfg = build_from_state(state, path)
    in_run_dir = path.name == "last.pt" and path.parent.name == "checkpoints"
    default_name = path.parent.parent.name if in_run_dir else path.stem
    info = {"name": state.get("name", default_name), "path": str(path), "command": state.get("command"),
            "iteration": state.get("iteration"), "eval": state.get("eval"), "check": state.get("check"),
            "curve": state.get("curve")}
    return meta, cfg, info


def check_scores(meta: MetaLearner, seed: int = CHECK_SEED, tasks: int = CHECK_TASKS) -> dict[str, float]:
    """Mean Cartesian MSE before and after the one-shot update on ``tasks`` fixed held-out tasks from ``seed``."""
    from l2l.outer_loop.algorithm.evaluation import one_shot_step

    generator = torch.Generator().manual_seed(seed)
    episode = meta.family.sample(tasks, generator)
    step = one_shot_step(meta, episode, meta.encode(episode, generator))
    demo, test = float(step.per_task["demo_mse"].mean()), float(step.per_task["test_mse"].mean())
    return {"seed": seed, "tasks": tasks, "demo_mse": demo, "test_mse": test, "ratio": test / demo}


def export_pretrained(run_dir: str | Path, name: str, command: str, out_dir: str | Path | None = None,
                      selection: dict[str, Any] | None = None) -> Path:
    """Write ``<name>.pt`` and ``<name>.yaml`` (see the module docstring) from a finished meta-training run.
    ``selection``: how the run was chosen among candidates (``model_selection``'s result), kept beside the eval."""
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir)
    meta, cfg = build_from_state(state, run_dir)
    evaluation = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").is_file() else None
    keys = ("demo_mse", "test_mse", "bptt_step_mse", "eprop1_step_mse", "bptt_lr", "eprop1_lr", "n_tasks",
            "ratio_test_over_demo", "eval_seed")
    summary = {k: evaluation[k] for k in keys if k in evaluation} if evaluation else None
    if summary is not None:
        summary["std"] = evaluation.get("std")
    curve = [{k: r[k] for k in ("iteration", "seconds", "demo_mse", "test_mse", "loss") if k in r}
             for r in state.get("history", []) if "test_mse" in r]
    payload = {
        "format": FORMAT, "name": name, "command": command, "iteration": int(state["iteration"]),
        "meta": {k: v.detach().clone() for k, v in meta.state_dict().items()},
        "config": OmegaConf.to_container(cfg, resolve=True), "eval": summary,
        "check": check_scores(meta), "curve": curve,
        "torch": str(torch.__version__), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if selection is not None:
        payload["selection"] = selection
    out = Path(out_dir) if out_dir is not None else pretrained_dir()
    path = save_checkpoint(out / f"{name}.pt", payload)
    readable = {k: payload[k] for k in ("name", "format", "command", "iteration", "eval", "selection", "check",
                                        "torch", "created") if k in payload}
    readable["config"] = payload["config"]
    (out / f"{name}.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(_finite(readable))), encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    """inf/nan -> strings (YAML and JSON keep them readable)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m l2l.outer_loop.reports.pretrained export RUN_DIR NAME --command CMD [--out DIR]``."""
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.pretrained",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser("export", help="write <name>.pt and <name>.yaml from a finished meta-training run")
    export.add_argument("run_dir")
    export.add_argument("name")
    export.add_argument("--command", required=True, help="the exact l2l-train command that produced the run")
    export.add_argument("--out", default=None, help="target folder (default: the package's l2l/pretrained)")
    export.add_argument("--selection", default=None, help="the JSON of model_selection that chose this run (kept "
                        "in the model: validation and test seeds, every candidate's scores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        selection = json.loads(Path(args.selection).read_text(encoding="utf-8")) if args.selection else None
        path = export_pretrained(args.run_dir, args.name, args.command, args.out, selection)
    except (CheckpointError, OSError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    state = read_state(path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) and {path.with_suffix('.yaml')}; "
          f"check: {json.dumps(state['check'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
