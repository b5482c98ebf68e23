"""One registry shape for everything chosen by name: cells, learning rules, task families, inner backends,
loggers. A :class:`Registry` maps a name to its entry (a class, or a record holding the class and what else
the rest of l2l needs of it); ``register`` adds one, ``entry(name)`` finds one or raises
:class:`l2l.validation.InvalidValueError` naming the config key and the registered names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from l2l.validation import InvalidValueError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """``Registry(key)``: ``key`` is the config key that selects an entry (``network.cell``, ``rule.name``).
    Entries are named by their ``name`` attribute (or ``name_of(entry)``)."""

    def __init__(self, key: str, name_of: Callable[[Any], str] = lambda entry: entry.name) -> None:
        super().__init__()
        self.key, self.name_of = key, name_of

    def register(self, entry: T) -> T:
        """Make ``entry`` available by its name (a later entry of the same name replaces it); returns it."""
        self[self.name_of(entry)] = entry
        return entry

    def entry(self, name: str, key: str | None = None) -> T:
        """The entry ``name``; InvalidValueError naming ``key`` (default: the registry's) otherwise."""
        if name not in self:
            raise InvalidValueError(key or self.key, name, f": choose one of {sorted(self)}")
        return self[name]

    def copy(self) -> Registry[T]:
        """A registry with the same key and entries (for tests that register a toy and undo it)."""
        other: Registry[T] = Registry(self.key, self.name_of)
        other.update(self)
        return other

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self)
