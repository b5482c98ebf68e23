"""Build the objects of a run from its config nodes: task family, network, learning rule.

Each builder takes the plain config node (an OmegaConf DictConfig or any object with the fields of
the matching schema in :mod:`l2l.outer_loop.app.config`) and raises ``ValueError`` naming the bad field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf

from l2l.cells import get_cell
from l2l.error_module import ErrorModule
from l2l.inner_loop.learning_rates import InnerLearningRates
from l2l.inner_loop.one_shot import adapted_names
from l2l.network import RecurrentNetwork
from l2l.outer_loop.algorithm.meta import InnerSettings, MetaLearner, RateTargets
from l2l.regularization import RateRegularization
from l2l.rules import RULES, LearningRule
from l2l.tasks import TaskFamily, make_family
from l2l.tasks.encoders import PopulationCode
from l2l.validation import InvalidValueError, require_choice, require_nonnegative, require_positive, require_size


def _plain(node: Any) -> dict[str, Any]:
    """A config node as a plain dict (lists stay lists)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return dict(node)
    return dict(vars(node))


def build_task(cfg: Any) -> TaskFamily:
    """The task family named ``cfg.name`` with the other fields as its parameters (lists become tuples).

    An InvalidValueError of the family that names one of its parameters is reported as ``task.<parameter>``."""
    params = _plain(cfg)
    name = params.pop("name")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    with config_keys({**{k: f"task.{k}" for k in params}, "task": "task.name"}):   # "task": the family registry
        return make_family(name, **params)


@contextmanager
def config_keys(keys: Mapping[str, str]) -> Iterator[None]:
    """Inside the block, an :class:`InvalidValueError` naming a field of ``keys`` is re-raised naming its config
    key (``keys[field]``): the mapping is the schema's, never read out of a message."""
    try:
        yield
    except InvalidValueError as error:
        if error.key in keys:
            raise error.renamed(keys[error.key]) from None
        raise


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


def build_rule(cfg: Any, seed: int = 0, dt: float = 1.0, network: Any = None) -> LearningRule:
    """The registered learning rule ``cfg.name`` (:data:`l2l.rules.RULES`) with the options of its schema
    (an option ``*_seed`` left at None takes the run's ``seed``), rate regularization if ``cfg.rate_weight`` > 0,
    and, given the network config, its compatibility checks (``network.layers``, ``network.cell``).
    InvalidValueError naming the ``rule.``/``network.`` key."""
    plain = _plain(cfg)
    entry = RULES.entry(plain.pop("name"), "rule.name")
    if network is not None:
        entry.check_network(int(network.layers), str(network.cell))
    target, weight = plain.pop("rate_target_hz", 10.0), plain.pop("rate_weight", 0.0)
    options = {k: (seed if v is None and k.endswith("_seed") else v) for k, v in plain.items()}
    known = sorted(option.name for option in entry.options())
    foreign = sorted(set(options) - set(known))
    if foreign:   # rule.name=X on another rule's config node: its options are not X's
        raise InvalidValueError(f"rule.{foreign[0]}", options[foreign[0]], f" with rule.name={entry.name!r}: "
                                f"{entry.name}'s options are {known}; select the rule with rule={entry.name} "
                                "(its config group) rather than rule.name")
    require_nonnegative("rule.rate_weight", weight)
    if weight > 0:
        with config_keys({"target_hz": "rule.rate_target_hz", "weight": "rule.rate_weight"}):
            options["rate_regularization"] = RateRegularization(target_hz=target, weight=weight, dt=dt)
    with config_keys({name: f"rule.{name}" for name in options}):
        return entry.rule(**options)


def build_meta(cfg: Any, family: TaskFamily) -> MetaLearner:
    """The e-prop 2 meta-learner of a ``mode=meta`` config (nodes network, error_module, inner, outer).

    Uses torch's global RNG for every initial weight (seed it first)."""
    learner = build_network(cfg.network, family)
    em = cfg.error_module
    require_size("error_module.n_hidden", em.n_hidden)
    require_choice("error_module.signal_layers", em.signal_layers, ("top", "all"))
    require_size("error_module.code_neurons", em.code_neurons)
    if len(em.code_range) != 2 or not all(math.isfinite(v) for v in em.code_range):
        raise InvalidValueError("error_module.code_range", list(em.code_range),
                                ": give [low, high], two finite numbers")
    require_positive("error_module.code_sigma", em.code_sigma)
    require_positive("error_module.code_peak_hz", em.code_peak_hz)
    if not em.code_range[0] < em.code_range[1]:
        raise InvalidValueError("error_module.code_range", list(em.code_range), ": low must be < high")
    with config_keys({"n_neurons": "error_module.code_neurons", "sigma": "error_module.code_sigma",
                      "low": "error_module.code_range", "high": "error_module.code_range",
                      "peak_rate_hz": "error_module.code_peak_hz", "dt": "network.dt"}):
        code = PopulationCode(n_neurons=em.code_neurons, sigma=em.code_sigma, low=em.code_range[0],
                              high=em.code_range[1], peak_rate_hz=em.code_peak_hz, dt=cfg.network.dt)
    with config_keys({"tau_out": "error_module.tau_filter", "signal_layers": "error_module.signal_layers",
                      "dt": "network.dt"}):
        error_module = ErrorModule(
            family.n_outputs * em.code_neurons, learner.sizes, family.n_inputs, hidden=em.n_hidden, cell=em.cell,
            cell_params=cell_parameters(em, "error_module"), signal_layers=em.signal_layers,
            tau_filter=em.tau_filter, dt=cfg.network.dt,
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
