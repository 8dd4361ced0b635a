"""Property-suite cases for the containers: SequenceINN chains, nested and conditional."""

from __future__ import annotations

import warnings

from invertible.framework import ReversibleSequential, SequenceINN
from invertible.modules import (
    AllInOneBlock,
    GLOWCouplingBlock,
    HaarDownsampling,
    PermuteRandom,
)
from subnets import conv_subnet, dense_subnet

from . import Case

__all__ = ["CASES"]


def dense_chain() -> SequenceINN:
    """FrEIA's classic chain: GLOW couplings with random permutations, then an AllInOneBlock."""
    inn = SequenceINN(6)
    for k in range(2):
        inn.append(GLOWCouplingBlock, subnet_constructor=dense_subnet, clamp=1.5)
        inn.append(PermuteRandom, seed=k)
    inn.append(AllInOneBlock, subnet_constructor=dense_subnet)
    return inn


def conditional_chain() -> SequenceINN:
    """CFlow-style: blocks conditioned on different entries of the condition list."""
    inn = SequenceINN(4)
    inn.append(AllInOneBlock, cond=1, cond_shape=(3,), subnet_constructor=dense_subnet)
    inn.append(PermuteRandom, seed=0)
    inn.append(GLOWCouplingBlock, cond=0, cond_shape=(2,), subnet_constructor=dense_subnet)
    return inn


def image_chain() -> SequenceINN:
    """A multi-scale image chain whose shape changes midway (Haar downsampling)."""
    inn = SequenceINN(2, 4, 4)
    inn.append(AllInOneBlock, subnet_constructor=conv_subnet)
    inn.append(HaarDownsampling)
    inn.append(AllInOneBlock, subnet_constructor=conv_subnet)
    return inn


def nested_chain() -> SequenceINN:
    """A conditional SequenceINN inside a SequenceINN (FrEIA cannot nest)."""
    inner = SequenceINN(4, force_tuple_output=True)
    inner.append(GLOWCouplingBlock, cond=0, cond_shape=(2,), subnet_constructor=dense_subnet)
    inner.append(PermuteRandom, seed=3)
    outer = SequenceINN(4)
    outer.append(AllInOneBlock, subnet_constructor=dense_subnet)
    outer.append(inner, cond=0)
    return outer


def reversed_slice() -> SequenceINN:
    """``inn[::-1]``: the inverse chain, built from ``Inverse`` wrappers."""
    return image_chain()[::-1]


def legacy_sequential() -> ReversibleSequential:
    """The deprecated name, still a working SequenceINN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        inn = ReversibleSequential(4)
    inn.append(AllInOneBlock, subnet_constructor=dense_subnet)
    return inn


CASES = [
    Case("sequence-dense", dense_chain),
    Case("sequence-conditional", conditional_chain, cond_shapes=((2,), (3,))),
    Case("sequence-image", image_chain),
    Case("sequence-nested", nested_chain, cond_shapes=((2,),)),
    Case("sequence-reversed-slice", reversed_slice),
    Case("sequence-legacy", legacy_sequential),
]
