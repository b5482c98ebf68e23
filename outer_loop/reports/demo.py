"""``l2l-demo``: watch a meta-trained e-prop 2 learner pick up new arm movements from one demonstration.

    l2l-demo                                   # the shipped arm_one_shot model, 4 new movements
    l2l-demo checkpoint=arm_one_shot_deep      # the 2-layer learner (deep eligibility traces)
    l2l-demo checkpoint=arm_one_shot_reference # the published e-prop 2 protocol (500-step movements, 5 sines)
    l2l-demo checkpoint=outputs/my_run tasks=8 seed=3 gif=false
    l2l-demo target=circle                     # your own movement: an example's name or a .csv/.npy file
    l2l-demo target=my_path.csv target_scale=0.001   # (x, y) drawn in mm; see docs/targets.md

For each fresh held-out movement: the learner sees one demonstration trial, the error module turns
what it sees into learning signals, one e-prop update changes the learner's weights, and a test trial
shows the result. Writes into the run dir ``demo.json`` (``tasks``, ``demo_mse`` before and ``test_mse``
after the update, the baselines ``bptt_step_mse`` and ``eprop1_step_mse`` of ``l2l-eval``, per-task
values, the checkpoint), ``demo.png`` (endpoint paths, joint velocities, spike rasters of the learner and
the error module, learning signals) and ``arm.gif`` (the arm moving before and after the update).
A checkpoint that cannot be used stops the demo with one line naming the file and the problem.

With ``target=`` the demo learns that one movement instead (``l2l.tasks.arm_target``: endpoint positions or joint
velocities of any length, resampled to the model's trial; an unreachable point stops with one line naming it);
demo.json adds ``target`` (the file, kind, shift, scale, its points, largest joint displacement and |ω|).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from l2l.device import resolve_device
from l2l.outer_loop.app.checks import check_held_out_memory
from l2l.outer_loop.app.compose import CONFIG_DIR, with_version
from l2l.outer_loop.checkpoint import CheckpointError
from l2l.outer_loop.reports.pretrained import load_pretrained
from l2l.validation import require_nonnegative_int, require_seed

ANIMATION_FRAMES = 50
"""Frames of arm.gif (fewer for a task with fewer time steps)."""


@dataclass
class DemoConfig:
    """The ``l2l-demo`` settings (conf/demo.yaml documents each)."""

    checkpoint: str = "arm_one_shot"
    tasks: int = 4
    seed: int = 7
    baselines: bool = True
    gif: bool = True
    gif_task: int = 0
    threads: int = 2
    device: str = "cpu"
    target: str | None = None
    target_kind: str | None = None
    target_rate_hz: float | None = None
    target_shift: bool = True
    target_scale: float = 1.0


ConfigStore.instance().store(name="demo_schema", node=DemoConfig)


def run_demo(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Demonstration -> one update -> test on ``cfg.tasks`` new movements; writes the outputs; returns demo.json."""
    from l2l.outer_loop.algorithm.evaluation import evaluate_one_shot, one_shot_step
    from l2l.outer_loop.reports.demo_figures import arm_animation, demo_figure

    start = time.perf_counter()
    known = [f.name for f in dataclasses.fields(DemoConfig)]
    unknown = [f"{k}={cfg[k]!r}" for k in cfg if k not in known]
    if unknown:
        raise ValueError(f"{unknown[0]} is not an l2l-demo key: the keys are {known}")
    if cfg.target is not None and cfg.tasks != 1:
        cfg = OmegaConf.merge(cfg, {"tasks": 1})           # the one movement
    if cfg.tasks < 1:
        raise ValueError(f"tasks={cfg.tasks!r} is not allowed: it must be >= 1")
    if not 0 <= cfg.gif_task < cfg.tasks:
        raise ValueError(f"gif_task={cfg.gif_task!r} is not allowed: it must be in [0, tasks={cfg.tasks})")
    require_nonnegative_int("threads", cfg.threads)
    require_seed("seed", cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, "device")
    meta, model_cfg, info = load_pretrained(cfg.checkpoint)
    check_held_out_memory(model_cfg, meta.family, cfg.tasks, "tasks")
    meta = meta.to(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    target = None
    if cfg.target is not None:
        episode, target = target_episode(cfg, meta.family)
    else:
        episode = meta.family.sample(cfg.tasks, generator)
    code = meta.encode(episode, generator)
    episode, code = episode.to(device), code.to(device)
    step = one_shot_step(meta, episode, code)
    demo = step.per_task["demo_mse"].double()
    test = step.per_task["test_mse"].double()
    result: dict[str, Any] = {
        "checkpoint": info["name"], "checkpoint_path": info["path"], "trained_iterations": info["iteration"],
        "tasks": cfg.tasks, "seed": cfg.seed, "target": target,
        "demo_mse": float(demo.mean()), "test_mse": float(test.mean()),
        "bptt_step_mse": None, "eprop1_step_mse": None,
        "per_task": {"demo_mse": demo.tolist(), "test_mse": test.tolist()},
    }
    if cfg.baselines:
        scores = evaluate_one_shot(meta, episode, code, list(model_cfg.eval.bptt_lrs), list(model_cfg.eval.eprop1_lrs),
                                   step)
        for key in ("bptt_step_mse", "eprop1_step_mse"):
            result[key] = scores[key]
            result["per_task"][key] = scores["per_task"][key]
        result["bptt_lr"], result["eprop1_lr"] = scores["bptt_lr"], scores["eprop1_lr"]
    shown = list(range(min(4, cfg.tasks)))
    where, gap = (f"{info['name']}, target {Path(target['file']).stem}", "\n") if target else (info["name"], " ")
    title = (f"{where}:{gap}one demonstration, one e-prop update{gap}(Cartesian MSE {result['demo_mse']:.3f} -> "
             f"{result['test_mse']:.3f})")
    figure = demo_figure(meta, episode, step, shown, title=title)
    figure.savefig(out_dir / "demo.png", dpi=90)
    outputs = ["demo.json", "demo.png"]
    if cfg.gif:
        arm_animation(meta, episode, step, int(cfg.gif_task), out_dir / "arm.gif",
                      frames=min(ANIMATION_FRAMES, meta.family.n_steps))
        outputs.append("arm.gif")
    result["seconds"] = round(time.perf_counter() - start, 2)
    (out_dir / "demo.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(summary(result, out_dir, outputs))
    return result


def target_episode(cfg: DictConfig, family: Any) -> tuple[Any, dict[str, Any]]:
    """The one task of ``cfg.target`` for the model's ``family`` and what demo.json records of it."""
    from l2l.tasks.arm_target import movement_episode, read_movement

    movement = read_movement(str(cfg.target), cfg.target_kind)
    episode, facts = movement_episode(movement, family, cfg.target_rate_hz, bool(cfg.target_shift),
                                      float(cfg.target_scale))
    return episode, {"name": str(cfg.target), "file": movement.source, "kind": movement.kind,
                     "shift": bool(cfg.target_shift) if movement.kind == "endpoint" else None,
                     "scale": float(cfg.target_scale), "rate_hz": cfg.target_rate_hz, **facts}


def summary(result: dict[str, Any], out_dir: Path, outputs: list[str]) -> str:
    """A few lines for the terminal."""
    ratio = result["test_mse"] / result["demo_mse"] if result["demo_mse"] > 0 else float("inf")
    target = result.get("target")
    what = (f"your movement {target['name']} ({target['points']} points, {target['kind']}, largest joint "
            f"displacement {target['max_displacement_rad']:.2f} rad)" if target
            else f"{result['tasks']} new movements")
    lines = [f"l2l-demo: {result['checkpoint']} ({result['trained_iterations']} meta-training iterations), "
             f"{what}, one demonstration{'' if target else ' each'}",
             f"  Cartesian MSE before the update {result['demo_mse']:.4f}, after one e-prop update "
             f"{result['test_mse']:.4f} ({ratio:.2f}x)"]
    if result["bptt_step_mse"] is not None:
        lines.append(f"  baselines told the true error: one BPTT step {result['bptt_step_mse']:.4f}, "
                     f"one e-prop 1 step {result['eprop1_step_mse']:.4f} (best learning rate of a grid)")
    lines.append(f"  wrote {', '.join(outputs)} in {out_dir} ({result['seconds']:.1f} s)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="demo")
def main(cfg: DictConfig) -> None:
    """Entry point of ``l2l-demo``."""
    try:
        run_demo(cfg, HydraConfig.get().runtime.output_dir)
    except (CheckpointError, ValueError) as error:
        print(f"l2l-demo: error: {error}", file=sys.stderr)
        sys.exit(2)


cli = with_version("l2l-demo", main, "demo")


if __name__ == "__main__":
    cli()
