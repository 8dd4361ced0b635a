"""Piecewise-linear spline coupling block (`LinearSpline`) and its bin map `linear_spline`."""

from __future__ import annotations

from typing import Any, Tuple

from torch import Tensor

from .._spline_kernels import linear_spline
from .binned import BinnedSpline

__all__ = ["LinearSpline", "linear_spline"]


class LinearSpline(BinnedSpline):
    r"""Coupling block with monotone piecewise-linear splines.

    A :class:`BinnedSpline` without extra parameters: ``P = 2K + 2`` raw parameters per element
    (``widths K, heights K, bottom, left``), or ``2K + 1`` with identity tails. Inside bin ``k``:
    ``y = y_k + (dy/dx)(x - x_k)`` with log-derivative ``ln dy - ln dx`` (see
    :func:`linear_spline`). Arguments as in :class:`BinnedSpline` and
    :class:`BinnedSplineBase`.

    References: Mueller, McWilliams, Rousselle, Gross, Novak, "Neural Importance Sampling",
    ACM TOG 2019 (arXiv:1808.03856).
    """

    def __init__(self, *args: Any, bins: int = 10, **kwargs: Any) -> None:
        super().__init__(*args, bins=bins, **kwargs)

    def spline(self, x: Tensor, *, rev: bool = False, **bin_parameters: Tensor
               ) -> Tuple[Tensor, Tensor]:
        """:func:`linear_spline` inside one bin."""
        return linear_spline(x, **bin_parameters, rev=rev)
