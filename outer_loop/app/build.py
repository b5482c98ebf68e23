"""Build the objects of a run from its config nodes: task family, network, learning rule.

Each builder takes the plain config node (an OmegaConf DictConfig or any object with the fields of
the matching schema in :mod:`outer_loop.app.config`) and raises ``ValueError`` naming the bad field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from inner_loop.learning_rates import InnerLearningRates
from inner_loop.one_shot import adapted_names
from l2l.cells import get_cell
from l2l.error_module import ErrorModule
from l2l.network import RecurrentNetwork
from l2l.regularization import RateRegularization
from l2l.rules import LearningRule, make_rule
from l2l.validation import require_choice, require_nonnegative_int, require_positive, require_size
from outer_loop.algorithm.meta import InnerSettings, MetaLearner, RateTargets
from tasks import TaskFamily, make_family
from tasks.encoders import PopulationCode


def _plain(node: Any) -> dict[str, Any]:
    """A config node as a plain dict (lists stay lists)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return dict(node)
    return dict(vars(node))


def build_task(cfg: Any) -> TaskFamily:
    """The task family named ``cfg.name`` with the other fields as its parameters (lists become tuples).

    A ValueError of the family that names one of its parameters is reported as ``task.<parameter>``."""
    params = _plain(cfg)
    name = params.pop("name")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    try:
        return make_family(name, **params)
    except ValueError as error:
        message = str(error)
        first = message.split("=", 1)[0].split("[", 1)[0]
        raise ValueError(f"task.{message}" if first in params else message) from None


def cell_parameters(cfg: Any, node: str = "network") -> Any:
    """The parameter record of the registered cell ``cfg.cell`` from a CellConfig node named ``node``
    (its ``options`` may set any further field of the record). ValueError naming ``<node>.<key>``."""
    entry = get_cell(cfg.cell, f"{node}.cell")
    plain = _plain(cfg)
    return entry.parameters_from(plain, plain.get("options") or {}, prefix=f"{node}.")


def build_network(cfg: Any, family: TaskFamily) -> RecurrentNetwork:
    """``cfg.layers`` recurrent layers of ``cfg.n_hidden`` cells sized for ``family`` (n_in, n_out).

    Uses torch's global RNG."""
    require_size("network.layers", cfg.layers)
    require_size("network.n_hidden", cfg.n_hidden)
    return RecurrentNetwork(
        family.n_inputs, [cfg.n_hidden] * cfg.layers, family.n_outputs, cell=cfg.cell, cell_params=cell_parameters(cfg),
        tau_out=cfg.tau_out, dt=cfg.dt, readout_bias=cfg.readout_bias, readout_init_scale=cfg.readout_init_scale,
    )


RULE_NAMES = ("bptt", "rtrl", "eprop", "deep_eprop", "eprop_online", "morder", "tbptt", "tbptt_sg", "eprop3")


def build_rule(cfg: Any, seed: int = 0, dt: float = 1.0) -> LearningRule:
    """The learning rule ``cfg.name`` with its options and rate regularization if ``cfg.rate_weight`` > 0."""
    require_choice("rule.name", cfg.name, RULE_NAMES)
    options: dict[str, Any] = {}
    if cfg.rate_weight > 0:
        options["rate_regularization"] = RateRegularization(target_hz=cfg.rate_target_hz, weight=cfg.rate_weight,
                                                            dt=dt)
    elif cfg.rate_weight < 0:
        raise ValueError(f"rule.rate_weight={cfg.rate_weight!r} is not allowed: it must be >= 0")
    if cfg.name in ("rtrl", "deep_eprop", "morder"):
        require_positive("rule.memory_budget_gib", cfg.memory_budget_gib)
        options["memory_budget_gib"] = cfg.memory_budget_gib
    if cfg.name in ("eprop", "deep_eprop", "eprop_online"):
        require_choice("rule.feedback", cfg.feedback, ("symmetric", "random", "adaptive"))
        options["feedback"] = cfg.feedback
        if cfg.feedback != "symmetric":
            options["seed"] = cfg.feedback_seed if cfg.feedback_seed is not None else seed
    if cfg.name == "deep_eprop":
        require_choice("rule.mode", cfg.mode, ("factorized", "online", "exact"))
        options.update(mode=cfg.mode, across_layers=bool(cfg.across_layers))
    if cfg.name == "eprop_online":
        require_size("rule.chunk", cfg.chunk)
        options["chunk"] = cfg.chunk
    if cfg.name == "morder":
        require_nonnegative_int("rule.order", cfg.order)
        options["order"] = cfg.order
    if cfg.name in ("tbptt", "tbptt_sg", "eprop3"):
        require_size("rule.window", cfg.window)
        options["window"] = cfg.window
    if cfg.name in ("tbptt_sg", "eprop3"):
        require_choice("rule.synthetic_gradient", cfg.synthetic_gradient, ("learned", "zero"))
        require_positive("rule.sg_lr", cfg.sg_lr)
        require_nonnegative_int("rule.sg_hidden", cfg.sg_hidden)
        sg_seed = cfg.sg_seed if cfg.sg_seed is not None else seed
        require_nonnegative_int("rule.sg_seed", sg_seed)
        options.update(synthetic_gradient=cfg.synthetic_gradient, sg_lr=cfg.sg_lr, sg_hidden=cfg.sg_hidden,
                       sg_seed=sg_seed, train_sg=bool(cfg.train_sg))
    try:
        return make_rule(cfg.name, **options)
    except ValueError as error:  # the rule's own option errors, named as config keys
        message = str(error)
        name = message.split("=", 1)[0]
        raise ValueError(f"rule.{message}" if name in options else message) from None


def build_meta(cfg: Any, family: TaskFamily) -> MetaLearner:
    """The e-prop 2 meta-learner of a ``mode=meta`` config (nodes network, error_module, inner, outer).

    Uses torch's global RNG for every initial weight (seed it first)."""
    learner = build_network(cfg.network, family)
    em = cfg.error_module
    require_size("error_module.n_hidden", em.n_hidden)
    require_choice("error_module.signal_layers", em.signal_layers, ("top", "all"))
    require_size("error_module.code_neurons", em.code_neurons)
    if len(em.code_range) != 2:
        raise ValueError(f"error_module.code_range={list(em.code_range)!r} is not allowed: give [low, high]")
    require_positive("error_module.code_sigma", em.code_sigma)
    require_positive("error_module.code_peak_hz", em.code_peak_hz)
    if not em.code_range[0] < em.code_range[1]:
        raise ValueError(f"error_module.code_range={list(em.code_range)!r} is not allowed: low must be < high")
    code = PopulationCode(n_neurons=em.code_neurons, sigma=em.code_sigma, low=em.code_range[0], high=em.code_range[1],
                          peak_rate_hz=em.code_peak_hz, dt=cfg.network.dt)
    error_module = ErrorModule(
        family.n_outputs * em.code_neurons, learner.sizes, family.n_inputs, hidden=em.n_hidden, cell=em.cell,
        cell_params=cell_parameters(em, "error_module"), signal_layers=em.signal_layers, tau_filter=em.tau_filter,
        dt=cfg.network.dt,
    )
    inner = InnerSettings(backend=cfg.inner.backend, optimizer=cfg.inner.optimizer,
                          adapt_weights=tuple(cfg.inner.adapt_weights), n_demos=cfg.inner.n_demos,
                          first_order=cfg.inner.first_order)
    shapes = {name: p.shape for name, p in learner.named_parameters()
              if name in adapted_names(learner, inner.adapt_weights)}
    rates = InnerLearningRates(shapes, cfg.inner.lr_mode, cfg.inner.lr)
    targets = RateTargets(cfg.outer.rate_weight, cfg.outer.learner_rate_hz, cfg.outer.error_module_rate_hz)
    return MetaLearner(family, learner, error_module, rates, code, inner, targets,
                       error_module_in_test=bool(em.in_test_trial))
