"""Argument validation with error messages that name the field, the value and the valid range."""

from __future__ import annotations

import math
from numbers import Integral, Real


def _describe(owner: str, field: str) -> str:
    return f"{owner}.{field}" if owner else field


def require_real(owner: str, field: str, value: object) -> float:
    """Return ``value`` as a finite float or raise a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(
            f"{_describe(owner, field)} must be a real number, got {value!r} of type {type(value).__name__}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{_describe(owner, field)} must be finite, got {value!r}")
    return value


def require_positive(owner: str, field: str, value: object) -> float:
    """Finite and > 0."""
    value = require_real(owner, field, value)
    if value <= 0:
        raise ValueError(f"{_describe(owner, field)} must be > 0 (valid range: (0, inf)), got {value!r}")
    return value


def require_in_range(
    owner: str, field: str, value: object, low: float, high: float, *, closed: str = "both"
) -> float:
    """Finite and inside ``[low, high]``; ``closed`` picks which ends are included ("both", "low", "high", "none")."""
    value = require_real(owner, field, value)
    low_ok = value >= low if closed in ("both", "low") else value > low
    high_ok = value <= high if closed in ("both", "high") else value < high
    if not (low_ok and high_ok):
        left = "[" if closed in ("both", "low") else "("
        right = "]" if closed in ("both", "high") else ")"
        raise ValueError(
            f"{_describe(owner, field)} must lie in {left}{low}, {high}{right}, got {value!r}"
        )
    return value


def require_int(owner: str, field: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """An integer (not a bool or float) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(
            f"{_describe(owner, field)} must be an integer, got {value!r} of type {type(value).__name__}"
        )
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "inf" if maximum is None else str(maximum)
        raise ValueError(f"{_describe(owner, field)} must lie in [{minimum}, {upper}], got {value!r}")
    return value


def require_choice(owner: str, field: str, value: object, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{_describe(owner, field)} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)
