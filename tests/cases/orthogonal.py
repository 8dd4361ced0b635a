"""Property-suite cases for the orthogonal maps: OrthogonalTransform and HouseholderPerm."""

from __future__ import annotations

from functools import partial
from typing import Any, List

from invertible.modules.orthogonal import (
    HouseholderPerm,
    OrthogonalTransform,
    _fast_h,
    orth_correction,
)

from . import Case

__all__ = ["CASES", "exact_householder", "exact_orthogonal"]


def exact_orthogonal(width: int, **kwargs: Any) -> OrthogonalTransform:
    """An `OrthogonalTransform` in float64 whose weights are orthonormalised in float64.

    The weights come from a float32 SVD and are orthogonal only to ~1e-7; the block's reverse
    and log-det assume exact orthogonality, so the suite's 1e-9 round trip needs this.
    """
    module = OrthogonalTransform([(width,)], **kwargs).double()
    orth_correction(module.weights.data)
    return module


def exact_householder(width: int, n_reflections: int) -> HouseholderPerm:
    """A fixed `HouseholderPerm` in float64 with ``W`` recomputed from ``Vs`` in float64.

    ``W``/``weight`` (one tensor) is computed once at construction in float32; ``.double()``
    alone would leave it orthogonal only to ~1e-7.
    """
    module = HouseholderPerm([(width,)], n_reflections=n_reflections, fixed=True).double()
    module.W.data.copy_(_fast_h(module.Vs.detach()))
    return module


CASES: List[Case] = [
    Case("orthogonal-transform-vec", partial(exact_orthogonal, 5)),
    Case("orthogonal-transform-vec-clamp", partial(exact_orthogonal, 3, clamp=0.5,
                                                   correction_interval=7)),
    Case("orthogonal-householder-vec", partial(HouseholderPerm, [(5,)], n_reflections=3)),
    Case("orthogonal-householder-vec-one", partial(HouseholderPerm, [(4,)], n_reflections=1)),
    Case("orthogonal-householder-vec-many", partial(HouseholderPerm, [(3,)], n_reflections=6)),
    # In fixed mode Vs is a trainable parameter that is not used (as in FrEIA).
    Case("orthogonal-householder-vec-fixed", partial(exact_householder, 5, 4),
         no_grad_params=("Vs",)),
    Case("orthogonal-householder-vec-cond",
         partial(HouseholderPerm, [(4,)], [(12,)], n_reflections=3), cond_shapes=((12,),)),
    Case("orthogonal-householder-vec-cond-2d",
         partial(HouseholderPerm, [(3,)], [(3, 2)], n_reflections=2), cond_shapes=((3, 2),)),
]
