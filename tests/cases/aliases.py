"""Property-suite cases for wrappers and deprecated aliases (Inverse, SplitChannel, ...)."""

from __future__ import annotations

import warnings

from invertible.modules import ConcatChannel, GLOWCouplingBlock, Inverse, SplitChannel
from subnets import dense_subnet

from . import Case

__all__ = ["CASES"]


def inverse_glow() -> Inverse:
    """An explicitly built ``Inverse`` (the suite also wraps every case in one)."""
    return Inverse(GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet))


def split_channel() -> SplitChannel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return SplitChannel([(5, 2)], section_sizes=[2, 3])


def concat_channel() -> ConcatChannel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ConcatChannel([(2, 3), (4, 3)])


CASES = [
    Case("alias-inverse-glow", inverse_glow),
    Case("alias-split-channel", split_channel),
    Case("alias-concat-channel", concat_channel),
]
