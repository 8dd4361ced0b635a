"""Deprecated `ReversibleSequential`: the old name of `SequenceINN`."""

from __future__ import annotations

import warnings

from .sequence_inn import SequenceINN

__all__ = ["ReversibleSequential"]


class ReversibleSequential(SequenceINN):
    """Deprecated alias of :class:`SequenceINN` (positional dims only)."""

    def __init__(self, *dims: int) -> None:
        warnings.warn("ReversibleSequential is deprecated in favour of SequenceINN. It will be "
                      "removed in a future version.", DeprecationWarning, stacklevel=2)
        super().__init__(*dims)
