"""Checks of a composed ``l2l-train`` config before any work: unknown keys, values the builders do not see,
and whether one iteration fits in memory. Each failure is one ValueError naming the key, the value and what
is allowed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from l2l.outer_loop.app.config import Config
from l2l.outer_loop.app.loggers import chosen_backends
from l2l.outer_loop.app.records import loop_node
from l2l.outer_loop.app.schemas import rule_schema, task_schema
from l2l.rules import RULES
from l2l.tasks import FAMILIES, TaskFamily
from l2l.validation import (
    InvalidValueError,
    require_nonnegative,
    require_nonnegative_int,
    require_positive,
    require_seed,
    require_size,
)

OPEN_NODES = ("options", "backends")
"""Config nodes whose keys are free (a cell's extra parameters; the logger's backends, checked by name)."""

FLOAT_BYTES = 4
PER_NEURON_STEP = 12   # floats autograd and the traces keep per neuron, step and task (the estimate is 0.7-0.9× a
                       # measured iteration of the arm at 120 and 200 neurons: it errs on the side of running)
PER_WEIGHT = 4         # per-task weights: W_task, its gradient, ΔW, the update's intermediate
GRAPH_BYTES = 6144     # autograd's own bytes per trial, layer and step, whatever the batch (measured 2-5 KB on tiny
                       # networks, where it dominates: 0.27 MB per extra demonstration of a 30-step, 8-neuron task)


def unknown_keys(cfg: DictConfig) -> list[str]:
    """'key=value (did you mean ...?)' for every key of ``cfg`` that no schema has (``+foo=1`` typos)."""
    found: list[str] = []
    plain = OmegaConf.to_container(cfg, resolve=False)
    reference = OmegaConf.to_container(OmegaConf.structured(Config), resolve=False)
    task_name = plain.get("task", {}).get("name") if isinstance(plain.get("task"), Mapping) else None
    if task_name in FAMILIES:
        reference["task"] = OmegaConf.to_container(OmegaConf.structured(task_schema(task_name, FAMILIES[task_name])))
    rule_name = plain.get("rule", {}).get("name") if isinstance(plain.get("rule"), Mapping) else None
    if rule_name in RULES:
        reference["rule"] = OmegaConf.to_container(OmegaConf.structured(rule_schema(RULES[rule_name])))

    def walk(node: Mapping[str, Any], ref: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if key not in ref:
                close = difflib.get_close_matches(str(key), [str(k) for k in ref], n=1)
                hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
                found.append(f"{path}={value!r}{hint}")
            elif isinstance(value, Mapping) and isinstance(ref[key], Mapping) and key not in OPEN_NODES:
                walk(value, ref[key], path + ".")

    walk(plain, reference, "")
    return found


INT_LIMIT = 2**63
"""Integers a torch generator or tensor takes: |value| < 2**63."""


def check_numbers(node: Any, prefix: str = "") -> None:
    """InvalidValueError for the first non-finite float, integer beyond 64 bits or negative seed in ``node``
    (a plain config: dicts and lists). No l2l setting takes NaN or inf, so this is one check for every float."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            check_numbers(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, (list, tuple)):
        for k, value in enumerate(node):
            check_numbers(value, f"{prefix}[{k}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise InvalidValueError(prefix, node, ": it must be a finite number")
    elif isinstance(node, int) and not isinstance(node, bool):
        if prefix.split(".")[-1].endswith("seed"):
            require_seed(prefix, node)
        if not -INT_LIMIT < node < INT_LIMIT:
            raise InvalidValueError(prefix, node, ": it must be an integer of at most 64 bits (|value| < 2**63)")


def check_config(cfg: DictConfig) -> None:
    """Raise ValueError for the first impossible entry the builders and loops do not check themselves."""
    unknown = unknown_keys(cfg)
    if unknown:
        raise ValueError(f"{unknown[0]} is not an l2l-train key: check the spelling (l2l-train --cfg job prints "
                         f"every key)" + (f"; also unknown: {', '.join(unknown[1:])}" if len(unknown) > 1 else ""))
    require_nonnegative_int("train.threads", cfg.train.threads)
    require_nonnegative_int("outer.threads", cfg.outer.threads)
    require_positive("train.lr", cfg.train.lr)
    require_positive("outer.lr", cfg.outer.lr)
    require_size("train.eval_batch_size", cfg.train.eval_batch_size)
    require_nonnegative("train.memory_budget_gib", cfg.train.memory_budget_gib)
    require_nonnegative("outer.memory_budget_gib", cfg.outer.memory_budget_gib)
    require_positive("logger.init_timeout", cfg.logger.init_timeout)
    chosen_backends(cfg.logger)
    if cfg.mode == "meta":
        require_size("eval.tasks", cfg.eval.tasks)
        require_nonnegative_int("eval.figure_tasks", cfg.eval.figure_tasks)
        for key in ("bptt_lrs", "eprop1_lrs"):
            rates = list(cfg.eval[key])
            if not rates or not all(isinstance(r, (int, float)) and math.isfinite(r) and r > 0 for r in rates):
                raise ValueError(f"eval.{key}={rates!r} is not allowed: give a non-empty list of finite learning "
                                 "rates > 0")
    check_numbers(OmegaConf.to_container(cfg, resolve=True))   # every other number: finite, 64-bit, seeds >= 0


def available_bytes() -> int | None:
    """MemAvailable of this machine (Linux), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def meta_iteration_bytes(cfg: DictConfig, family: TaskFamily, evaluation: bool = False) -> tuple[float, str]:
    """Estimated peak bytes of one meta-training iteration and the settings that drive it; ``evaluation``: of
    the held-out evaluation instead (eval.tasks tasks at once, with a backward for its baselines)."""
    batch, steps = int(cfg.eval.tasks if evaluation else cfg.outer.batch_size), int(family.n_steps)
    learner = int(cfg.network.n_hidden) * int(cfg.network.layers)
    em = int(cfg.error_module.n_hidden)
    demos = int(cfg.inner.n_demos)
    em_trials = demos + int(bool(cfg.error_module.in_test_trial))
    em_inputs = family.n_outputs * int(cfg.error_module.code_neurons) + learner + family.n_inputs
    per_step = PER_NEURON_STEP * ((demos + 1) * learner + em_trials * em) + em_trials * em_inputs
    weights = PER_WEIGHT * learner * (family.n_inputs + int(cfg.network.n_hidden)) * (demos + 1)
    graph = GRAPH_BYTES * steps * ((demos + 1) * int(cfg.network.layers) + em_trials)
    need = FLOAT_BYTES * batch * (steps * per_step + weights) + graph
    tasks = f"eval.tasks={cfg.eval.tasks}" if evaluation else f"outer.batch_size={cfg.outer.batch_size}"
    drivers = (f"{tasks}, task.n_steps={steps}, network.n_hidden={cfg.network.n_hidden}"
               f", network.layers={cfg.network.layers}, error_module.n_hidden={em}, inner.n_demos={demos}")
    return need, drivers


def direct_iteration_bytes(cfg: DictConfig, family: TaskFamily) -> tuple[float, str]:
    """Estimated peak bytes of one direct-training iteration and the settings that drive it."""
    batch, steps = int(cfg.train.batch_size), int(family.n_steps)
    hidden = int(cfg.network.n_hidden) * int(cfg.network.layers)
    evaluation = int(cfg.train.eval_batch_size) * steps * (PER_NEURON_STEP * hidden + family.n_inputs)
    need = (trial_bytes(batch, steps, int(cfg.network.n_hidden), family.n_inputs, int(cfg.network.layers))
            + FLOAT_BYTES * evaluation)
    drivers = (f"train.batch_size={batch}, train.eval_batch_size={cfg.train.eval_batch_size}, task.n_steps={steps}, "
               f"network.n_hidden={cfg.network.n_hidden}, network.layers={cfg.network.layers}")
    return need, drivers


class _Sizes:
    """What the estimates read of a family, from its config alone (before building it: a family with 1e8
    steps takes long to build); its inputs and outputs count as 1."""

    def __init__(self, task: Any) -> None:
        self.n_steps = int(task.get("n_steps") or 1)
        self.n_inputs = self.n_outputs = 1


def check_memory(cfg: DictConfig, family: TaskFamily | None = None) -> None:
    """ValueError naming the driving keys when one iteration would need more than the budget or the RAM.

    Without ``family``, from the config's sizes alone (a lower bound; called before the family is built)."""
    node = loop_node(cfg)
    sizes = family if family is not None else _Sizes(cfg.task)
    need, drivers = (meta_iteration_bytes if cfg.mode == "meta" else direct_iteration_bytes)(cfg, sizes)
    if cfg.mode == "meta" and cfg.eval.enabled:   # the evaluation after training, checked before it starts
        need, drivers = max((need, drivers), meta_iteration_bytes(cfg, sizes, evaluation=True))
    budget = float(cfg[node].memory_budget_gib) * 2**30
    limit = budget if budget > 0 else available_bytes()
    if limit is not None and need > limit:
        where = f"{node}.memory_budget_gib={cfg[node].memory_budget_gib:g}" if budget > 0 else \
            f"the {limit / 2**30:.1f} GiB of memory available"
        raise ValueError(f"{drivers}: one iteration needs about {need / 2**30:.3g} GiB, more than {where}; make one "
                         f"of these smaller (or set {node}.memory_budget_gib if the estimate is too cautious)")


def exceeded_memory(need: float) -> int | None:
    """The bytes of memory available when ``need`` exceeds them, else None (also where they are unknown)."""
    limit = available_bytes()
    return limit if limit is not None and need > limit else None


def check_held_out_memory(cfg: DictConfig, family: TaskFamily, tasks: int, key: str) -> None:
    """ValueError naming ``key`` (``--tasks``, ``tasks``) when scoring ``tasks`` held-out tasks of the model
    ``cfg`` describes at once (one update and the baselines' backward) would not fit in the memory available."""
    need, _ = meta_iteration_bytes(OmegaConf.merge(cfg, {"eval": {"tasks": int(tasks)}}), family, evaluation=True)
    limit = exceeded_memory(need)
    if limit is not None:
        raise ValueError(f"{key}={tasks} is not allowed for this model (task.n_steps={family.n_steps}, network."
                         f"n_hidden={cfg.network.n_hidden}): scoring them at once needs about {need / 2**30:.3g} GiB, "
                         f"more than the {limit / 2**30:.1f} GiB of memory available; use fewer")


def trial_bytes(batch: int, steps: int, neurons: int, n_inputs: int, layers: int = 1) -> float:
    """Estimated peak bytes of one gradient (BPTT's stored trial, the heaviest) of ``layers`` layers of ``neurons``."""
    weights = PER_WEIGHT * layers * neurons * (n_inputs + neurons)
    return (FLOAT_BYTES * (batch * steps * (PER_NEURON_STEP * neurons * layers + n_inputs) + weights)
            + GRAPH_BYTES * steps * layers)


def check_trial_memory(drivers: str, need: float) -> None:
    """ValueError naming ``drivers`` (the flags that set the sizes) when ``need`` bytes exceed the memory available."""
    limit = exceeded_memory(need)
    if limit is not None:
        raise ValueError(f"{drivers}: one trial's gradient needs about {need / 2**30:.3g} GiB, more than the "
                         f"{limit / 2**30:.1f} GiB of memory available; make one of these smaller")
