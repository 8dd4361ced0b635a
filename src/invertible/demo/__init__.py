"""Demos run by ``invertible demo``: small, self-contained trainings on data made in code."""

from __future__ import annotations

from .toy2d import run_toy2d

__all__ = ["run_toy2d"]
