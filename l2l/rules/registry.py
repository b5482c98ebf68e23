"""The registry of learning rules: one entry per rule, with its options read off its constructor and what
networks it can train.

A new rule is its file (a :class:`LearningRule` subclass with a ``name``, whose constructor takes its options
as keyword parameters with simple types and defaults) and one :func:`register_rule` call; then
``make_rule(name, ...)``, ``rule=<name>`` in ``l2l-train`` (the app reads the config schema off the
constructor, as for task families) and the compatibility checks know it.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any

from l2l.cells import cells_with_border_state, get_cell
from l2l.registry import Registry
from l2l.rules.base import LearningRule
from l2l.validation import InvalidValueError

NOT_OPTIONS = ("self", "rate_regularization", "per_task")
"""Constructor parameters that are not config options: the rate regularization is built from the common
``rate_target_hz``/``rate_weight`` keys; ``per_task`` is for the meta-learner's evaluation."""


@dataclass(frozen=True)
class Option:
    """One constructor option: its name, annotation (as written) and default."""

    name: str
    annotation: Any
    default: Any


@dataclass(frozen=True)
class RuleEntry:
    """``rule``: the class. ``one_layer``: it trains one recurrent layer only. ``truncated``: it carries the
    cell's state across window borders (the cell's ``border_state``, :class:`l2l.cells.CellEntry`)."""

    rule: type[LearningRule]
    one_layer: bool = False
    truncated: bool = False

    @property
    def name(self) -> str:
        return self.rule.name

    def options(self) -> list[Option]:
        """The constructor's keyword options, read off its signature (through ``*args``/``**kwargs`` to the
        base class's), without :data:`NOT_OPTIONS`."""
        found: dict[str, Option] = {}
        for klass in self.rule.__mro__:
            if "__init__" not in vars(klass) or klass is LearningRule:
                continue
            init = vars(klass)["__init__"]
            hints = typing.get_type_hints(init)
            passes_on = False
            for parameter in inspect.signature(init).parameters.values():
                if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                    passes_on = True
                elif parameter.name not in NOT_OPTIONS and parameter.name not in found:
                    if parameter.default is inspect.Parameter.empty:
                        raise TypeError(f"{self.rule.__name__}.__init__ parameter {parameter.name!r} has no "
                                        "default: a rule's options all need defaults (they are its config)")
                    found[parameter.name] = Option(parameter.name, hints.get(parameter.name, Any),
                                                   parameter.default)
            if not passes_on:
                break
        return list(found.values())

    def check_network(self, layers: int, cell: str) -> None:
        """InvalidValueError naming ``network.layers`` or ``network.cell`` when the rule cannot train it."""
        if self.one_layer and layers != 1:
            raise InvalidValueError("network.layers", layers, f" with rule={self.name}, which trains one recurrent "
                                    "layer: use network.layers=1, or a rule for a stack (bptt, rtrl, deep_eprop)")
        if self.truncated and not get_cell(cell, "network.cell").border_state:
            raise InvalidValueError("network.cell", cell,
                                    f" with rule={self.name}: choose one of {sorted(cells_with_border_state())}")


RULES: Registry[RuleEntry] = Registry("rule.name")
"""Every learning rule by name."""


def register_rule(entry: RuleEntry) -> RuleEntry:
    """Make a learning rule known by its name (``entry.rule.name``); returns the entry."""
    return RULES.register(entry)


def make_rule(name: str, **options: Any) -> LearningRule:
    """The learning rule ``name`` with its options (InvalidValueError naming ``rule`` for an unknown name)."""
    return RULES.entry(name, "rule").rule(**options)
