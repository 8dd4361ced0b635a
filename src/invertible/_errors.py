"""Exception classes that keep FrEIA's exception types catchable while being `ValueError`s."""

from __future__ import annotations

__all__ = [
    "InvertibleAssertionError",
    "InvertibleIndexError",
    "InvertibleRuntimeError",
    "InvertibleTypeError",
]


class InvertibleAssertionError(AssertionError, ValueError):
    """Bad user input where FrEIA used ``assert``; either ``ValueError`` or ``AssertionError``."""


class InvertibleIndexError(ValueError, IndexError):
    """An out-of-range index given by the user (FrEIA raised a raw ``IndexError``)."""


class InvertibleTypeError(ValueError, TypeError):
    """A malformed graph where FrEIA crashed with a raw ``TypeError``."""


class InvertibleRuntimeError(RuntimeError, ValueError):
    """Bad user input where FrEIA raised ``RuntimeError``; catchable as either type."""
