"""Distributions over the inputs and outputs of invertible networks."""

from __future__ import annotations

__all__: list = []
