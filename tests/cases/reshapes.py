"""Property-suite cases for the reshaping blocks (i-RevNet, Haar, Flatten, Reshape)."""

from __future__ import annotations

from functools import partial

from cases import Case
from invertible.modules.reshapes import (
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    IRevNetDownsampling,
    IRevNetUpsampling,
    Reshape,
)

__all__ = ["CASES"]

CASES = [
    Case("reshapes-irevnet-down", partial(IRevNetDownsampling, [(2, 4, 6)])),
    Case("reshapes-irevnet-down-legacy",
         partial(IRevNetDownsampling, [(3, 4, 2)], legacy_backend=True)),
    Case("reshapes-irevnet-up", partial(IRevNetUpsampling, [(8, 2, 3)])),
    Case("reshapes-irevnet-up-legacy",
         partial(IRevNetUpsampling, [(4, 3, 2)], legacy_backend=True)),
    Case("reshapes-haar-down", partial(HaarDownsampling, [(2, 4, 4)])),
    Case("reshapes-haar-down-wavelet-order-rebalance",
         partial(HaarDownsampling, [(3, 2, 4)], order_by_wavelet=True, rebalance=0.5)),
    Case("reshapes-haar-down-rebalance", partial(HaarDownsampling, [(1, 4, 2)], rebalance=2.0)),
    Case("reshapes-haar-up-rebalance", partial(HaarUpsampling, [(8, 2, 2)], rebalance=0.7)),
    Case("reshapes-haar-up-wavelet-order",
         partial(HaarUpsampling, [(12, 1, 2)], order_by_wavelet=True, rebalance=1.5)),
    Case("reshapes-flatten-image", partial(Flatten, [(2, 3, 4)])),
    Case("reshapes-flatten-vector", partial(Flatten, [(5,)])),
    Case("reshapes-reshape-image", partial(Reshape, [(2, 3, 4)], output_dims=(4, 6))),
    Case("reshapes-reshape-vector-to-image", partial(Reshape, [(12,)], output_dims=[3, 2, 2])),
]
