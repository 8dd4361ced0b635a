"""Containers that compose invertible modules: `SequenceINN` chains and `GraphINN` graphs."""

from __future__ import annotations

from ..modules.base import InvertibleModule as InvertibleModule  # reachable as Ff.X, as in FrEIA
from ..modules.inverse import Inverse as Inverse
from .reversible_sequential_net import ReversibleSequential
from .sequence_inn import SequenceINN

__all__ = [
    "ReversibleSequential",
    "SequenceINN",
]
