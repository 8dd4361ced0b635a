"""Invertible blocks, FrEIA-compatible: couplings, permutations, reshapes, topology and more."""

from __future__ import annotations

from .all_in_one_block import AllInOneBlock
from .base import InvertibleModule
from .coupling_layers import (
    AffineCouplingOneSided,
    ConditionalAffineTransform,
    GINCouplingBlock,
    GLOWCouplingBlock,
    NICECouplingBlock,
    RNVPCouplingBlock,
)
from .fixed_transforms import Fixed1x1Conv, FixedLinearTransform, InvertibleSigmoid, PermuteRandom
from .graph_topology import Concat, Concat1d, ConcatChannel, Split, Split1D, SplitChannel
from .inverse import Inverse
from .reshapes import (
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    IRevNetDownsampling,
    IRevNetUpsampling,
    Reshape,
)

# Reachable as attributes, as in FrEIA, but not part of __all__.
_ALIASES = (Concat1d, Split1D)

__all__ = [
    "AffineCouplingOneSided",
    "AllInOneBlock",
    "Concat",
    "ConcatChannel",
    "ConditionalAffineTransform",
    "Fixed1x1Conv",
    "FixedLinearTransform",
    "Flatten",
    "GINCouplingBlock",
    "GLOWCouplingBlock",
    "HaarDownsampling",
    "HaarUpsampling",
    "IRevNetDownsampling",
    "IRevNetUpsampling",
    "Inverse",
    "InvertibleModule",
    "InvertibleSigmoid",
    "NICECouplingBlock",
    "PermuteRandom",
    "RNVPCouplingBlock",
    "Reshape",
    "Split",
    "SplitChannel",
]
