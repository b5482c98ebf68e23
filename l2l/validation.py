"""Parameter checks that raise ``ValueError`` naming the field, the value and what is allowed."""

from __future__ import annotations

import math


def require_positive(name: str, value: float) -> None:
    """Raise unless ``value`` is a finite number > 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number > 0")


def require_nonnegative_int(name: str, value: int) -> None:
    """Raise unless ``value`` is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed: it must be an integer >= 0")


def require_size(name: str, value: int) -> None:
    """Raise unless ``value`` is an integer >= 1 (a layer or input size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: it must be an integer >= 1")


def require_nonnegative(name: str, value: float) -> None:
    """Raise unless ``value`` is a finite number >= 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number >= 0")


def require_choice(name: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {sorted(allowed)}")
