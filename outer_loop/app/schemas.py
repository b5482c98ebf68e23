"""Config schemas read off constructors: task families and learning rules.

``task_schema(name, family)`` is a dataclass with a ``name`` field and one field per constructor parameter
(its annotation, sequences as lists, and its default); ``rule_schema(entry)`` the same for a registered
learning rule (its options, :meth:`l2l.rules.RuleEntry.options`) plus the rate regularization every rule
takes (``rate_target_hz``, ``rate_weight``). So ``task.<field>=...`` and ``rule.<option>=...`` overrides are
typed and checked like every other config entry, and a new family or rule needs no schema here.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from dataclasses import field, make_dataclass
from typing import Any

from l2l.rules import RuleEntry
from l2l.tasks.base import TaskFamily

SIMPLE = (str, int, float, bool, type(None))


def _config_type(annotation: Any) -> Any:
    """The annotation OmegaConf can type-check: Sequence[X] / tuple[X, ...] -> list[X], unions member-wise
    without the members a config cannot hold (``str | Feedback`` -> ``str``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (collections.abc.Sequence, list, tuple):
        return list[args[0]] if args else list
    if origin in (typing.Union, types.UnionType):
        members = [_config_type(a) for a in args]
        members = [m for m in members if m in SIMPLE or typing.get_origin(m) is list] or members
        union = members[0]
        for member in members[1:]:
            union = union | member
        return union
    return annotation


def rule_schema(entry: RuleEntry) -> type:
    """The dataclass ``<Rule>Config``: ``name``, ``rate_target_hz`` and ``rate_weight`` (rate regularization
    weight·Σ_j (f̄_j − target)², on when the weight > 0) and the rule's constructor options with their defaults."""
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=entry.name)),
                                          ("rate_target_hz", float, field(default=10.0)),
                                          ("rate_weight", float, field(default=0.0))]
    for option in entry.options():
        fields.append((option.name, _config_type(option.annotation), field(default=option.default)))
    schema = make_dataclass(f"{entry.rule.__name__}Config", fields)
    schema.__doc__ = f"l2l.rules.{entry.rule.__name__}: {(entry.rule.__doc__ or '').strip().splitlines()[0]}"
    return schema


def task_schema(name: str, family: type[TaskFamily]) -> type:
    """The dataclass ``<Family>Config``: ``name`` plus the family's constructor parameters with their defaults."""
    hints = typing.get_type_hints(family.__init__)
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=name))]
    for parameter in list(inspect.signature(family.__init__).parameters.values())[1:]:
        default = parameter.default
        if default is inspect.Parameter.empty:
            raise TypeError(f"{family.__name__}.__init__ parameter {parameter.name!r} has no default: a task "
                            "family's parameters all need defaults (they are its config)")
        kind = _config_type(hints.get(parameter.name, Any))
        if isinstance(default, (list, tuple)):
            fields.append((parameter.name, kind, field(default_factory=lambda d=tuple(default): list(d))))
        else:
            fields.append((parameter.name, kind, field(default=default)))
    schema = make_dataclass(f"{family.__name__}Config", fields)
    schema.__doc__ = f"tasks.{family.__name__}: {(family.__doc__ or '').strip().splitlines()[0]}"
    return schema
