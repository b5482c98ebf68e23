"""Structured config schemas of the ``l2l-train`` Hydra app, registered with Hydra's ConfigStore.

Every config node is typed by a dataclass, so an override with a typo (``train.iteratons=5``) or the
wrong type (``train.iterations=abc``) fails at start naming the key. The defaults here are the
reference values; the YAML files in ``conf/`` select a schema and set what an experiment changes.

Groups: ``task/`` (one schema per family: ``arm``, ``pattern``, ``evidence``, ``copy_repeat``), ``rule/`` (one
schema per learning rule, read off its constructor: ``l2l.rules.RULES``),
``network/``, ``rule/``, ``error_module/``, ``inner/``, ``outer/``, ``logger/`` and ``experiment/``
(``# @package _global_`` overrides); ``mode: meta`` reads error_module/inner/outer/eval, ``mode: direct``
rule/train.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from l2l.outer_loop.app.help_groups import register_config_groups
from l2l.outer_loop.app.run_stamp import register_run_stamp
from l2l.outer_loop.app.schemas import rule_schema, task_schema
from l2l.rules import RULES
from l2l.tasks import FAMILIES


@dataclass
class CellConfig:
    """The neurons of a recurrent layer. ``cell``: lif | alif | rnn | lstm. ``tau_m`` is the membrane
    (LIF/ALIF) or leak (RNN) time constant; ``tau_a``, ``beta``, ``adaptive_fraction`` are read for ALIF only.
    LIF/ALIF: ``n_ref`` steps are blocked after a spike (the e-prop 2 code's n_refractory=5 is n_ref=4);
    ``psi_refractory``: zero (e-prop papers) | keep (e-prop 2 code) is ψ on refractory steps in e-prop's traces.
    ``cell`` may be any registered cell (``l2l.cells.register_cell``); ``options`` sets further fields of its
    parameter record by name (e.g. a new cell's own parameters)."""

    cell: str = "lif"
    n_hidden: int = 100
    tau_m: float = 20.0
    v_th: float = 0.4
    n_ref: int = 5
    gamma: float = 0.3
    surrogate: str = "piecewise_linear"
    psi_refractory: str = "zero"
    tau_a: float = 2000.0
    beta: float = 1.8
    adaptive_fraction: float = 1.0
    dt: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetworkConfig(CellConfig):
    """``layers`` recurrent layers of ``n_hidden`` cells and a leaky readout (l2l.network.RecurrentNetwork);
    n_in/n_out come from the task. Weights start as N(0, 1)/√fan_in, W_out scaled by ``readout_init_scale``."""

    layers: int = 1
    tau_out: float = 20.0
    readout_bias: bool = True
    readout_init_scale: float = 1.0


@dataclass
class ErrorModuleConfig(CellConfig):
    """The e-prop 2 error module (l2l.error_module.ErrorModule): ``n_hidden`` cells fed the population-coded
    target, the learner's spikes and the task input; its spikes filtered with ``tau_filter`` and projected
    by a learned P to one signal per learner neuron of the top layer (``signal_layers: top``) or of every
    layer (``all``). The target code: ``code_neurons`` Gaussian-tuned neurons per target coordinate
    (width ``code_sigma``, peak ``code_peak_hz``, values clipped to ``code_range``), drawn afresh for every
    trial the module sees. ``in_test_trial``: the module also runs during the test trial and its spikes
    there enter the rate regularization, as in the published e-prop 2 code (false: demonstrations only)."""

    n_hidden: int = 300
    signal_layers: str = "top"
    tau_filter: float = 20.0
    code_neurons: int = 100
    code_sigma: float = 0.2
    code_peak_hz: float = 200.0
    code_range: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    in_test_trial: bool = False


@dataclass
class InnerConfig:
    """The one-shot inner loop (inner_loop/). ``backend``: explicit (W − η·ΔW, default) | higher (its
    differentiable ``optimizer`` sgd | adam). ``lr``: η (the initial value when learned); ``lr_mode``:
    fixed | per_layer | per_synapse (learned, meta-parameters). ``adapt_weights``: which of w_in, w_rec,
    bias adapt. ``n_demos`` demonstrations, one update after each. ``first_order``: no second-order terms."""

    backend: str = "explicit"
    optimizer: str = "sgd"
    lr: float = 4e-5
    lr_mode: str = "fixed"
    adapt_weights: list[str] = field(default_factory=lambda: ["w_in", "w_rec"])
    n_demos: int = 1
    first_order: bool = False


@dataclass
class OuterConfig:
    """The outer (meta-training) loop (outer_loop/algorithm/meta_train.py, in the loop of run_loop.py).

    Adam (or sgd) with ``lr`` on batches of ``batch_size`` tasks for ``iterations``; ``grad_clip`` > 0 clips
    the global gradient norm. Outer loss: test-trial task loss + ``rate_weight``·Σ (f̄ − f_target)² for the
    learner (``learner_rate_hz``) and the error module (``error_module_rate_hz``), rates in spikes/ms.
    A record goes to metrics.jsonl every ``log_every`` iterations; ``checkpoints/last.pt`` is rewritten every
    ``checkpoint_every`` iterations (and a numbered copy kept when ``keep_checkpoints``); ``figure_every`` > 0
    saves (and logs) an arm figure. ``resume``: a checkpoint path (or run dir) to continue from; ``auto``: this
    run dir's last checkpoint if there is one (a requeued job). ``threads`` > 0 sets torch's CPU threads.
    ``train_error_module=false`` keeps the error module (and its projection) at its random initialization
    while the rest is meta-trained: the ablation of docs/results.md. The run stops (keeping the
    last good checkpoint) on a non-finite loss, gradient or weight, or when the loss exceeds
    ``divergence_factor`` × its running median (0: off). ``memory_budget_gib`` > 0: the most one iteration may
    need (estimated before training; 0: the memory available). Ctrl-C, SIGTERM or SIGUSR1: a checkpoint, then a
    stop (after SIGUSR1 in a SLURM job, also a requeue)."""

    iterations: int = 20000
    batch_size: int = 100
    optimizer: str = "adam"
    train_error_module: bool = True
    lr: float = 1e-3
    grad_clip: float = 0.0
    rate_weight: float = 100.0
    learner_rate_hz: float = 20.0
    error_module_rate_hz: float = 10.0
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: bool = False
    figure_every: int = 0
    resume: str | None = None
    progress: bool = True
    threads: int = 0
    device: str = "${device}"
    divergence_factor: float = 1000.0
    memory_budget_gib: float = 0.0


@dataclass
class EvalConfig:
    """Held-out evaluation of a meta-trained model (``l2l-eval`` and the end of ``mode=meta``): ``tasks`` tasks
    drawn from ``seed`` (independent of the training seed); baselines one BPTT step and one e-prop step
    (symmetric feedback, true error) on the demonstration, each with the best learning rate of its grid."""

    tasks: int = 64
    seed: int = 20261122
    bptt_lrs: list[float] = field(default_factory=lambda: [10.0 ** (k / 2) for k in range(-10, 3)])
    eprop1_lrs: list[float] = field(default_factory=lambda: [10.0 ** (k / 2) for k in range(-10, 3)])
    figure_tasks: int = 3
    enabled: bool = True


@dataclass
class CurriculumConfig:
    """Stages of task-parameter overrides (outer_loop/algorithm/curriculum.py; empty: no curriculum). The next stage
    starts after ``patience`` consecutive training batches with ``metric`` (default the family's) at or below
    ``threshold``. ``probe_stages``: stages whose held-out batches are also scored at every evaluation, whatever
    the current stage (``probe<k>_<metric>`` in metrics.jsonl): a continuous measure that every rule shares."""

    stages: list[dict[str, Any]] = field(default_factory=list)
    metric: str | None = None
    threshold: float = 0.05
    patience: int = 1
    probe_stages: list[int] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Direct (non-meta) training (outer_loop/algorithm/direct_train.py, in the loop of run_loop.py).

    ``optimizer``: adam | sgd. Metrics are logged every ``log_every`` iterations (and at the last);
    the held-out evaluation batch (``eval_batch_size`` episodes from ``seed`` + 2) is scored every
    ``eval_every`` iterations (0: only at the end). ``threads`` > 0 sets torch's CPU threads. Stops on a
    non-finite loss, gradient or weight and on a loss above ``divergence_factor`` × its running median (0: off),
    before the optimizer steps; ``memory_budget_gib`` as in ``outer``; Ctrl-C, SIGTERM or SIGUSR1: checkpoint,
    stop. ``checkpoints/last.pt`` is rewritten every ``checkpoint_every`` iterations (0: only at the end and on a
    stop; a numbered copy kept when ``keep_checkpoints``); ``checkpoint=false``: none at all.
    ``curriculum``: stages of the task (:class:`CurriculumConfig`). ``resume``: a direct run's checkpoint (or run
    dir) to continue from: network, optimizer, the rule's own state (a synthetic gradient), the episode generator
    and the curriculum stage; ``auto``: this run dir's last checkpoint if there is one.
    """

    iterations: int = 200
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-3
    log_every: int = 10
    eval_every: int = 0
    eval_batch_size: int = 64
    progress: bool = True
    threads: int = 0
    device: str = "${device}"
    plots: bool = True
    checkpoint: bool = True
    checkpoint_every: int = 100
    keep_checkpoints: bool = False
    divergence_factor: float = 1000.0
    memory_budget_gib: float = 0.0
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    resume: str | None = None


@dataclass
class LoggerConfig:
    """Where metrics go besides ``metrics.jsonl`` (every run writes it). ``backends``: each chosen dashboard as
    ``name: true`` — ``logger=csv`` chooses one, ``logger=[csv,tensorboard]`` several, ``logger=none`` none; the
    registered ones are wandb, tensorboard, csv and mlflow (``l2l.outer_loop.app.loggers.LOGGERS``).

    Every W&B setting left unset here follows W&B's environment (``WANDB_MODE``, ``WANDB_PROJECT``,
    ``WANDB_ENTITY``, ``WANDB_RUN_GROUP``, ``WANDB_TAGS``, ``WANDB_NAME``, ``WANDB_DIR``), then l2l's default:
    ``mode`` offline (online only if asked), project l2l, group the experiment (or sweep), tags the overrides, run
    name the experiment, seed and sweep job, the run dir. Online, W&B gets ``init_timeout`` seconds to start the
    run, else it is logged offline with a warning. MLflow takes the same project (its experiment), group, tags
    and run name; ``tracking_uri`` (else ``MLFLOW_TRACKING_URI``, else a file store in ``<run dir>/mlruns``)."""

    backends: dict[str, bool] = field(default_factory=dict)
    project: str | None = None
    mode: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    run_name: str | None = None
    dir: str | None = None
    init_timeout: float = 30.0
    tracking_uri: str | None = None


@dataclass
class Config:
    """The whole ``l2l-train`` config. ``mode``: direct (task/network/rule/train) | meta (e-prop 2:
    task/network/error_module/inner/outer/eval). ``overwrite``: a run into a run dir that holds an earlier run
    replaces it (false: refused at start, docs/reliability.md)."""

    task: Any = MISSING
    network: NetworkConfig = field(default_factory=NetworkConfig)
    rule: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    error_module: ErrorModuleConfig = field(default_factory=ErrorModuleConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    mode: str = "direct"
    name: str = "default"
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False


def register_configs() -> None:
    """Register the top-level schema (``config_schema``), one schema per task family (``task/<name>_schema``)
    and one per learning rule (``rule/<name>_schema``), each read off the constructor (``schemas.py``)."""
    register_run_stamp()
    register_config_groups(Path(__file__).resolve().parents[1] / "conf")
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for name, family in FAMILIES.items():
        cs.store(group="task", name=f"{name}_schema", node=task_schema(name, family))
    for name, entry in RULES.items():
        cs.store(group="rule", name=f"{name}_schema", node=rule_schema(entry))


def saved_config(config: Mapping[str, Any]) -> DictConfig:
    """A config saved by this or an earlier l2l (a checkpoint's, a shipped model's), merged into the schema.

    Earlier configs named one dashboard, ``logger: {name: X}``; that is ``logger: {backends: {X: true}}`` now
    (``none``: no dashboard). Raises OmegaConf's errors for anything else the schema does not know."""
    plain = OmegaConf.to_container(OmegaConf.create(dict(config)), resolve=False)
    logger = plain.get("logger")
    if isinstance(logger, dict) and "name" in logger and "backends" not in logger:
        name = logger.pop("name")
        logger["backends"] = {} if name in (None, "none") else {str(name): True}
    return OmegaConf.merge(OmegaConf.structured(Config), plain)
