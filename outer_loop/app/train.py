"""``l2l-train``: the Hydra app. ``mode=direct`` trains a network on a task family with a learning rule;
``mode=meta`` meta-trains e-prop 2 (learner, error module, inner rates) for one-shot learning.

    l2l-train experiment=arm_one_shot              # e-prop 2 on the CPU (about 4 minutes)
    l2l-train experiment=smoke                     # e-prop 2 end to end in under a minute
    l2l-train experiment=pattern_eprop             # e-prop 1 pattern generation
    l2l-train experiment=evidence_eprop train.iterations=50 logger=wandb
    l2l-train -m rule=eprop,bptt seed=0,1          # a sweep

Writes into the Hydra run dir: ``metrics.jsonl`` (one JSON object per logged iteration),
``summary.json`` (final metrics, wall time), ``learning_curve.png``, ``checkpoints/last.pt`` and
Hydra's ``.hydra/`` config record; direct runs add ``episode.png`` (target vs produced), meta runs
``eval.json`` and ``eval.png`` (held-out tasks before/after the one-shot update, with baselines).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from l2l.device import resolve_device
from l2l.outer_loop.algorithm.curriculum import Curriculum
from l2l.outer_loop.algorithm.direct_train import DirectStepper, evaluate
from l2l.outer_loop.algorithm.distributed import Ranks, from_environment, process_group, shard
from l2l.outer_loop.algorithm.meta_train import MetaStepper
from l2l.outer_loop.algorithm.run_loop import LoopResult, TrainingLoop
from l2l.outer_loop.app.build import build_meta, build_network, build_rule, build_task
from l2l.outer_loop.app.checks import check_config, check_memory
from l2l.outer_loop.app.compose import CONFIG_DIR, with_version
from l2l.outer_loop.app.config import register_configs
from l2l.outer_loop.app.loggers import make_logger, write_json
from l2l.outer_loop.app.records import direct_settings, loop_node, loop_settings, outer_settings
from l2l.outer_loop.app.resume import check_resume_config
from l2l.outer_loop.app.run_dir import RunDirUsedError, claim, remove_earlier_run, resume_file, write_config_record
from l2l.outer_loop.app.run_lock import RunDirInUseError, RunDirLock
from l2l.outer_loop.app.sweep import in_multirun, job_prefix, label_job_output, record_failure, record_success
from l2l.outer_loop.checkpoint import CheckpointError, DiskWriteError, read_checkpoint
from l2l.outer_loop.guard import TrainingInterrupted
from l2l.outer_loop.optimizers import make_optimizer
from l2l.outer_loop.reports.eval_cli import EVAL_KEYS, evaluate_run
from l2l.outer_loop.reports.plots import learning_curves
from l2l.rules.influence import MemoryBudgetError

log = logging.getLogger(__name__)

register_configs()

MODES = ("direct", "meta")


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the job described by ``cfg`` writing into ``run_dir``; returns the summary (also in summary.json).

    The run dir is held for this process (:class:`l2l.outer_loop.app.run_lock.RunDirLock`) and is never
    overwritten (:mod:`l2l.outer_loop.app.run_dir`). Bad configs, a used run dir and an unusable checkpoint fail
    here, before anything in the run dir is written, with one line naming the key."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode={cfg.mode!r} is not allowed: choose one of {list(MODES)}")
    check_config(cfg)
    check_memory(cfg)              # from the config's sizes, before anything is built
    run_dir = Path(run_dir)
    ranks = from_environment()     # under torchrun: this process's share of the task batch
    if ranks is not None:
        if cfg.mode != "meta":
            raise ValueError(f"mode={cfg.mode!r} is not allowed with {ranks.world} processes (WORLD_SIZE): "
                             "torchrun splits the task batch of mode=meta only")
        shard(cfg.outer.batch_size, ranks)
    main = ranks is None or ranks.main
    with RunDirLock(run_dir) if main else nullcontext():
        node = loop_node(cfg)
        setting = cfg[node].resume
        resume = resume_file(setting, run_dir, f"{node}.resume")
        earlier = claim(run_dir, resume, f"{node}.resume", bool(cfg.overwrite), setting == "auto") if main else []
        if cfg.mode == "meta":
            return run_meta(cfg, run_dir, resume, earlier, ranks)
        return run_direct(cfg, run_dir, resume, earlier)


def preflight(cfg: DictConfig) -> None:
    """Everything ``l2l-train`` refuses before it writes, without training: the config's keys and numbers, the
    memory of one iteration, the device, and the task, model, rule and loop settings built from it (ValueError
    naming the key). ``l2l-tune`` checks both ends of every searched range with it."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode={cfg.mode!r} is not allowed: choose one of {list(MODES)}")
    check_config(cfg)
    check_memory(cfg)
    node = loop_node(cfg)
    _device(cfg, node)
    family = build_task(cfg.task)
    loop_settings(cfg)
    if cfg.mode == "meta":
        check_memory(cfg, family)
        outer_settings(cfg)
        build_meta(cfg, family)
        return
    curriculum = build_curriculum(cfg)
    family = curriculum.largest if curriculum is not None else family
    check_memory(cfg, family)
    direct_settings(cfg)
    build_network(cfg.network, family)
    build_rule(cfg.rule, seed=cfg.seed, dt=cfg.network.dt, network=cfg.network)


def _device(cfg: DictConfig, node: str) -> torch.device:
    """``<node>.device``, named ``device`` in errors when it is the top-level setting it follows."""
    key = "device" if OmegaConf.is_interpolation(cfg[node], "device") else f"{node}.device"
    return resolve_device(cfg[node].device, key)


def _restore(training: TrainingLoop, cfg: DictConfig, resume: Path | None) -> None:
    """Load the checkpoint ``resume`` into ``training`` after checking it against ``cfg`` (nothing written)."""
    if resume is None:
        return
    node = loop_node(cfg)
    setting = cfg[node].resume
    source = f"{node}.resume={setting!r}" + ("" if Path(setting) == resume else f" ({resume})")
    state = read_checkpoint(resume, training.stepper.keys, f"a {cfg.mode}-mode checkpoint ({node}.resume)")
    check_resume_config(cfg, state, source)
    training.restore(state, source)
    if "history" not in state:   # a direct checkpoint from before 0.3: its records are in its run's metrics.jsonl
        training.history = records_before(resume.parent.parent / "metrics.jsonl", training.start)


def records_before(path: Path, iteration: int) -> list[dict[str, Any]]:
    """The training records of ``path`` (a metrics.jsonl) logged before ``iteration``; [] when there is none.
    Lines that do not parse are skipped (a line cut by a kill)."""
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            training = isinstance(record, dict) and not any(k.startswith("eval/") for k in record)
            if training and isinstance(record.get("iteration"), int) and record["iteration"] < iteration:
                records.append(record)
    return records


def _begin(cfg: DictConfig, run_dir: Path, training: TrainingLoop, resume: Path | None, earlier: list[str]) -> None:
    """Everything checked: clear an overwritten run, record the config, say where the run goes."""
    if earlier and cfg.overwrite and resume is None:
        remove_earlier_run(run_dir)
        log.info("overwrite=true: removed the earlier run in %s (%s)", run_dir, ", ".join(earlier[:3]))
    write_config_record(run_dir, cfg)
    log.info("run dir: %s", run_dir.resolve())
    if resume is not None:
        log.info("resuming from %s at iteration %d", resume, training.start)


def run_direct(cfg: DictConfig, run_dir: Path, resume: Path | None = None, earlier: list[str] | None = None
               ) -> dict[str, Any]:
    """``mode=direct``: train a network with a rule; returns the summary (summary.json)."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)                                       # network initialization
    family = build_task(cfg.task)
    curriculum = build_curriculum(cfg)
    if curriculum is not None:
        family = curriculum.largest                                   # the network's sizes
    check_memory(cfg, family)
    device = _device(cfg, "train")
    network = build_network(cfg.network, family).to(device)
    rule = build_rule(cfg.rule, seed=cfg.seed, dt=cfg.network.dt, network=cfg.network)
    optimizer = make_optimizer(cfg.train.optimizer, network.parameters(), cfg.train.lr, key="train.optimizer")
    settings, loop = direct_settings(cfg), loop_settings(cfg)
    eval_episode = family.sample(settings.eval_batch_size, torch.Generator().manual_seed(settings.eval_seed))
    stepper = DirectStepper(network, rule, family, optimizer, settings, loop.iterations, eval_episode.to(device),
                            curriculum, device)
    stepper.label = job_prefix() + stepper.label
    data = torch.Generator().manual_seed(cfg.seed + 1)               # training episodes
    config = OmegaConf.to_container(cfg, resolve=True)
    checkpoints = run_dir / "checkpoints" if cfg.train.checkpoint else None
    training = TrainingLoop(stepper, loop, checkpoints, config, data)
    _restore(training, cfg, resume)
    _begin(cfg, run_dir, training, resume, earlier or [])
    logger = make_logger(cfg.logger, run_dir, config, **logger_defaults(cfg))
    try:
        try:
            result = training.run(logger, stepper.final_evaluation)
        except MemoryBudgetError as error:
            raise error.renamed("rule.memory_budget_gib") from None
        summary = write_outputs(cfg, run_dir, stepper, result, logger)
    except BaseException:
        logger.finish(exit_code=1)
        raise
    logger.finish()
    return summary


def run_meta(cfg: DictConfig, run_dir: Path, resume: Path | None = None, earlier: list[str] | None = None,
             ranks: Ranks | None = None) -> dict[str, Any]:
    """``mode=meta``: meta-train, checkpoint, evaluate on held-out tasks; returns the summary (summary.json).

    ``ranks`` (under torchrun): every rank trains its slice of the batch; rank 0 alone writes metrics, figures,
    W&B, checkpoints, the evaluation and the summary; the others return ``{"mode": "meta", "rank": r}``.
    """
    with process_group(ranks, _device(cfg, "outer")) as device:
        if cfg.outer.threads > 0:
            torch.set_num_threads(cfg.outer.threads)
        torch.manual_seed(cfg.seed)                                   # initial meta-parameters
        family = build_task(cfg.task)
        check_memory(cfg, family)
        meta = build_meta(cfg, family).to(device)
        main = ranks is None or ranks.main
        if not main:
            logging.getLogger().setLevel(logging.WARNING)              # one rank's INFO lines are enough
        stepper = MetaStepper(meta, outer_settings(cfg), device, ranks)   # rank 0 gets on_figure with its logger
        stepper.label = job_prefix() + stepper.label
        config = OmegaConf.to_container(cfg, resolve=True)
        data = torch.Generator().manual_seed(int(cfg.seed) + 1)
        training = TrainingLoop(stepper, loop_settings(cfg), run_dir / "checkpoints", config, data, ranks)
        meta.ranks = ranks
        try:
            _restore(training, cfg, resume)
            if not main:
                training.run()
                return {"mode": "meta", "rank": ranks.rank, "eval": None, "final_train": {}}
            _begin(cfg, run_dir, training, resume, earlier or [])
            return _train_and_report(cfg, run_dir, meta, stepper, training, ranks, device)
        finally:
            meta.ranks = None


def _train_and_report(cfg: DictConfig, run_dir: Path, meta: Any, stepper: MetaStepper, training: TrainingLoop,
                      ranks: Ranks | None, device: torch.device) -> dict[str, Any]:
    """Rank 0 of a meta run: train with the logger, then the held-out evaluation, curves and summary."""
    logger = make_logger(cfg.logger, run_dir, training.config, **logger_defaults(cfg))

    def on_figure(name: str, figure: Any, iteration: int) -> None:
        (run_dir / "figures").mkdir(exist_ok=True)
        figure.savefig(run_dir / "figures" / f"{name}_{iteration:06d}.png", dpi=90)
        logger.image(name, figure, iteration)

    stepper.on_figure = on_figure

    def evaluate() -> dict[str, Any] | None:
        if not cfg.eval.enabled:
            return None
        meta.ranks = None   # evaluation runs on one rank, with nobody to reduce with
        evaluation = evaluate_run(meta, cfg, run_dir, lambda name, fig: logger.image(name, fig, cfg.outer.iterations),
                                  iteration=cfg.outer.iterations)
        return {k: evaluation[k] for k in EVAL_KEYS}

    try:
        result = training.run(logger, evaluate)
        history = result.history
        curves = meta_learning_curves(history, cfg.name, meta.family.metric)
        curves.savefig(run_dir / "learning_curve.png", dpi=110)
        logger.image("learning_curve", curves, cfg.outer.iterations)
        evaluation = result.final_eval or None
        last = next((r for r in reversed(history) if "loss" in r), {})
        summary = {
            "name": cfg.name, "mode": "meta", "task": cfg.task.name, "seed": cfg.seed,
            "iterations": cfg.outer.iterations, "batch_size": cfg.outer.batch_size,
            "wall_time_s": round(result.wall_time_s, 2),
            "seconds_per_iteration": round(result.wall_time_s / max(1, result.iterations - result.first), 4),
            "final_train": last, "eval": evaluation,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
            "machine": platform.machine(), "processes": ranks.world if ranks is not None else 1,
        }
        write_json(run_dir / "summary.json", summary)
    except BaseException:
        logger.finish(exit_code=1)
        raise
    logger.finish()
    if evaluation is not None:
        log.info("held-out tasks: demo (before) %.4g, test (after) %.4g, one BPTT step %.4g, one e-prop step %.4g",
                 *(evaluation[k] for k in EVAL_KEYS))
    return summary


def meta_learning_curves(history: list[dict[str, Any]], title: str, metric: str = "mse_xy") -> Any:
    """Outer loss and the training batches' ``metric`` (the family's) before (demo) and after (test) the
    update, on one axis each."""
    curves = {"before update (demo)": [{"iteration": r["iteration"], metric: r["demo_mse"]} for r in history],
              "after update (test)": [{"iteration": r["iteration"], metric: r["test_mse"]} for r in history],
              "outer loss": [{"iteration": r["iteration"], "loss": r["loss"]} for r in history]}
    return learning_curves(curves, ["loss", metric], title=title)


def logger_defaults(cfg: DictConfig) -> dict[str, Any]:
    """W&B defaults of this job: group (the experiment name, or the sweep's), tags (the command-line overrides)
    and run name (experiment, rule in direct mode, seed; in a sweep also the job number and its overrides, so
    that no two jobs of a sweep share a name)."""
    name = f"{cfg.name}-{cfg.rule.name}" if cfg.mode == "direct" and cfg.rule.name not in cfg.name else cfg.name
    run_name = f"{name}-seed{cfg.seed}"
    if not HydraConfig.initialized():
        return {"default_group": cfg.name, "default_tags": [], "run_name": run_name}
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode is None or hydra_cfg.mode.name == "RUN":   # a composed config (l2l-tune) has no mode
        return {"default_group": cfg.name, "default_tags": list(hydra_cfg.overrides.task), "run_name": run_name}
    group = f"{cfg.name}-sweep-{Path(hydra_cfg.sweep.dir).name}"
    job = f"{run_name}-job{hydra_cfg.job.num}-{hydra_cfg.job.override_dirname}"[:128]
    return {"default_group": group, "default_tags": list(hydra_cfg.overrides.task), "run_name": job}


def write_outputs(cfg: DictConfig, run_dir: Path, stepper: DirectStepper, result: LoopResult,
                  logger: Any = None) -> dict[str, Any]:
    """summary.json, learning_curve.png and episode.png of a direct run (both figures also go to ``logger``)."""
    network, family = stepper.network, stepper.family
    last = next((r for r in reversed(result.history) if "loss" in r), {})
    summary = {
        "name": cfg.name, "task": cfg.task.name, "rule": cfg.rule.name,
        "feedback": cfg.rule.get("feedback") if cfg.rule.name == "eprop" else None,
        "seed": cfg.seed, "iterations": cfg.train.iterations, "batch_size": cfg.train.batch_size,
        "wall_time_s": round(result.wall_time_s, 2), "final_train": last,
        "final_eval": result.final_eval, "eval_batch_size": cfg.train.eval_batch_size,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": str(next(network.parameters()).device), "machine": platform.machine(),
    }
    if stepper.curriculum is not None:
        summary["curriculum"] = stepper.curriculum.summary()
    write_json(run_dir / "summary.json", summary)
    if cfg.train.plots:
        keys = ["task_loss"] + ([family.metric] if family.metric != "loss" else [])
        fig = learning_curves(train_and_eval(result.history), keys, title=cfg.name)
        fig.savefig(run_dir / "learning_curve.png", dpi=110)
        eval_episode = stepper.current_eval()
        _, output = evaluate(network, family, eval_episode.select(0))
        episode_figure = family.plot(eval_episode.select(0), output)
        episode_figure.savefig(run_dir / "episode.png", dpi=110)
        if logger is not None:
            logger.image("learning_curve", fig, cfg.train.iterations)
            logger.image(family.name, episode_figure, cfg.train.iterations)
    log.info("final train %s | eval %s | %.1f s", last, result.final_eval, result.wall_time_s)
    return summary


def build_curriculum(cfg: DictConfig) -> Curriculum | None:
    """The curriculum of ``train.curriculum`` (None without stages); each stage's overrides on ``task``."""
    node = cfg.train.curriculum
    probes = list(node.get("probe_stages") or [])
    if not node.stages:
        if probes:
            raise ValueError(f"train.curriculum.probe_stages={probes!r} is not allowed without "
                             "train.curriculum.stages")
        return None
    bad = [k for k in probes if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(node.stages)]
    if bad:
        raise ValueError(f"train.curriculum.probe_stages={probes!r} is not allowed: each must be a stage index in "
                         f"[0, {len(node.stages)})")
    base = OmegaConf.to_container(cfg.task, resolve=True)
    stages = OmegaConf.to_container(node.stages, resolve=True)
    for k, stage in enumerate(stages):
        unknown = sorted(set(stage) - set(base) | ({"name"} & set(stage)))
        if unknown:
            raise ValueError(f"train.curriculum.stages[{k}]={stage!r} is not allowed: {unknown} are not parameters of "
                             f"task {base['name']!r} (allowed: {sorted(set(base) - {'name'})})")
    return Curriculum(lambda overrides: build_task({**base, **overrides}), stages, node.threshold, node.patience,
                      node.metric)


def train_and_eval(history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The history as two curves: ``train`` (training batches) and ``eval`` (held-out batch, where scored)."""
    evals = [{"iteration": r["iteration"], "task_loss": r["eval_loss"],
              **{k[len("eval_"):]: v for k, v in r.items() if k.startswith("eval_")}}
             for r in history if "eval_loss" in r]
    train = [r for r in history if "task_loss" in r]
    return {"train": train, "eval": evals} if evals else {"train": train}


USAGE_ERRORS = (ValueError, FloatingPointError, RunDirInUseError, RunDirUsedError, OSError)
"""What ``l2l-train`` reports as one line (exit 2) instead of a traceback: bad configs and inputs, unusable
checkpoints, a diverged run, a busy or used run dir, a disk problem. ``HYDRA_FULL_ERROR=1`` shows the traceback."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (its type when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Entry point of ``l2l-train``. Returns the held-out test MSE of a meta run (the Optuna sweeper's objective).

    In a sweep (``-m``) a failed job is recorded (:mod:`l2l.outer_loop.app.sweep`) and the sweep goes on; its log
    lines and progress bar start with ``job N``."""
    label_job_output()
    try:
        summary = run(cfg, HydraConfig.get().runtime.output_dir)
    except TrainingInterrupted as stop:
        requeue_after(stop.signal_number)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"l2l-train: {stop}", file=sys.stderr)
        raise SystemExit(128 + stop.signal_number) from None
    except Exception as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" and not in_multirun():
            raise
        if in_multirun():
            line = one_line(error) if isinstance(error, USAGE_ERRORS) else f"{type(error).__name__}: {one_line(error)}"
            print(f"l2l-train: error: {record_failure(error, line)}", file=sys.stderr)
            return float("nan") if cfg.get("mode") == "meta" else None
        if not isinstance(error, USAGE_ERRORS):
            raise
        line = one_line(error)
        if isinstance(error, DiskWriteError):
            line += "; " + last_good_checkpoint(Path(HydraConfig.get().runtime.output_dir), cfg)
        print(f"l2l-train: error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    if in_multirun() and summary.get("rank") is None:
        record_success(summary)
    if summary.get("mode") == "meta":
        return summary["eval"]["test_mse"] if summary["eval"] else summary["final_train"].get("test_mse")
    return None


def last_good_checkpoint(run_dir: Path, cfg: DictConfig) -> str:
    """After a failed write: which checkpoint of ``run_dir`` survived (the rename never replaced it by a part) and
    how to go on, or that there is none."""
    node = loop_node(cfg)
    last = run_dir / "checkpoints" / "last.pt"
    try:
        iteration = read_checkpoint(last).get("iteration")
    except (CheckpointError, OSError):
        return "no checkpoint of this run survived: free space and start again"
    return (f"the last good checkpoint is {str(last)!r} (iteration {iteration}): free space and rerun with "
            f"{node}.resume=auto")


def requeue_after(signal_number: int) -> None:
    """After SIGUSR1 in a SLURM job (``sbatch --signal=USR1@90`` before the time limit), put the job back in the
    queue (``scontrol requeue``, rank 0 only); run with ``outer.resume=auto`` it continues from the checkpoint
    just written. Under submitit (the Hydra SLURM launcher) submitit requeues by itself."""
    if signal_number != getattr(signal, "SIGUSR1", None) or "SLURM_JOB_ID" not in os.environ:
        return
    if os.environ.get("RANK", "0") != "0" or "SUBMITIT_EXECUTOR" in os.environ:
        return
    job = os.environ["SLURM_JOB_ID"]
    try:
        subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, text=True, timeout=60)
        print(f"l2l-train: SLURM job {job} requeued; it resumes with outer.resume=auto", file=sys.stderr)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"l2l-train: could not requeue SLURM job {job} ({error}); resubmit it with outer.resume=auto",
              file=sys.stderr)


cli = with_version("l2l-train", main)


if __name__ == "__main__":
    cli()
