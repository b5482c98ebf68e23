"""Config schemas of the task families, read off each registered family's constructor.

``task_schema(name, family)`` is a dataclass with a ``name`` field and one field per constructor parameter
(its annotation, sequences as lists, and its default), so that ``task.<field>=...`` overrides are typed and
checked like every other config entry, and a new family (``tasks.register_family``) needs no schema here.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from dataclasses import field, make_dataclass
from typing import Any

from tasks.base import TaskFamily


def _config_type(annotation: Any) -> Any:
    """The annotation OmegaConf can type-check: Sequence[X] / tuple[X, ...] -> list[X], unions member-wise."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (collections.abc.Sequence, list, tuple):
        return list[args[0]] if args else list
    if origin in (typing.Union, types.UnionType):
        members = [_config_type(a) for a in args]
        union = members[0]
        for member in members[1:]:
            union = union | member
        return union
    return annotation


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
