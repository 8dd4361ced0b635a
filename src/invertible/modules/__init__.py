"""Invertible blocks, FrEIA-compatible: couplings, permutations, reshapes, topology and more."""

from __future__ import annotations

from .base import InvertibleModule
from .inverse import Inverse

__all__ = [
    "Inverse",
    "InvertibleModule",
]
