"""Parameter checks that raise :class:`InvalidValueError` naming the field, the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any


class InvalidValueError(ValueError):
    """A value that is not allowed, as data: ``key`` (the field, or the config key once renamed), ``value``,
    and ``allowed`` (what follows "is not allowed": ``": it must be ..."``, ``" with dt=1.0: ..."``).

    The message is ``f"{key}={shown} is not allowed{allowed}"`` (``shown``: ``repr(value)`` unless given).
    Code that knows where a field comes from renames it with :meth:`renamed` (e.g. ``tau_out`` ->
    ``error_module.tau_filter``), never by parsing the message."""

    def __init__(self, key: str, value: Any, allowed: str, shown: str | None = None) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        self.shown = repr(value) if shown is None else shown
        super().__init__(f"{key}={self.shown} is not allowed{allowed}")

    def renamed(self, key: str) -> InvalidValueError:
        """The same error naming ``key`` instead."""
        return InvalidValueError(key, self.value, self.allowed, self.shown)


def require_positive(name: str, value: float) -> None:
    """Raise unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidValueError(name, value, ": it must be a finite number > 0")


def require_nonnegative_int(name: str, value: int) -> None:
    """Raise unless ``value`` is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValueError(name, value, ": it must be an integer >= 0")


def require_size(name: str, value: int) -> None:
    """Raise unless ``value`` is an integer >= 1 (a layer or input size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidValueError(name, value, ": it must be an integer >= 1")


def require_bool(name: str, value: bool) -> None:
    """Raise unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise InvalidValueError(name, value, ": it must be true or false")


def require_nonnegative(name: str, value: float) -> None:
    """Raise unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidValueError(name, value, ": it must be a finite number >= 0")


def require_choice(name: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise InvalidValueError(name, value, f": choose one of {sorted(allowed)}")


SEED_LIMIT = 2**63
"""Seeds a torch generator takes: integers in [0, 2**63)."""


def require_seed(name: str, value: int) -> None:
    """Raise unless ``value`` is an integer in [0, 2**63) (what ``torch.Generator.manual_seed`` takes)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise InvalidValueError(name, value, f": a seed must be an integer in [0, 2**63), {SEED_LIMIT - 1} at most")
