"""Monotone binned splines: rational-quadratic and linear coupling blocks, element-wise RQS."""

from __future__ import annotations

from .binned import BinnedSpline, BinnedSplineBase
from .linear import LinearSpline, linear_spline
from .rational_quadratic import (
    ElementwiseRationalQuadraticSpline,
    RationalQuadraticSpline,
    rational_quadratic_spline,
)

__all__ = [
    "BinnedSpline",
    "BinnedSplineBase",
    "ElementwiseRationalQuadraticSpline",
    "LinearSpline",
    "RationalQuadraticSpline",
    "linear_spline",
    "rational_quadratic_spline",
]
