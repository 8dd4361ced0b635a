"""Invertible blocks, FrEIA-compatible: couplings, permutations, reshapes, topology and more."""

from __future__ import annotations

from .all_in_one_block import AllInOneBlock
from .autoregressive import AutoregressiveAffine, AutoregressiveRQSpline
from .base import InvertibleModule
from .coupling_layers import (
    AffineCouplingOneSided,
    ConditionalAffineTransform,
    CouplingBlock,
    GINCouplingBlock,
    GLOWCouplingBlock,
    NICECouplingBlock,
    RNVPCouplingBlock,
)
from .fixed_transforms import Fixed1x1Conv, FixedLinearTransform, InvertibleSigmoid, PermuteRandom
from .gaussian_mixture import GaussianMixtureModel
from .graph_topology import Concat, Concat1d, ConcatChannel, Split, Split1D, SplitChannel
from .inv_auto_layers import (
    InvAutoAct,
    InvAutoActFixed,
    InvAutoActTwoSided,
    InvAutoConv2D,
    InvAutoFC,
    LearnedElementwiseScaling,
)
from .inverse import Inverse
from .invertible_resnet import ActNorm, IResNetLayer
from .learned_conv import Learned1x1Conv
from .orthogonal import HouseholderPerm, OrthogonalTransform
from .reshapes import (
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    IRevNetDownsampling,
    IRevNetUpsampling,
    Reshape,
)
from .splines import (
    BinnedSpline,
    BinnedSplineBase,
    ElementwiseRationalQuadraticSpline,
    LinearSpline,
    RationalQuadraticSpline,
    linear_spline,
    rational_quadratic_spline,
)

# Reachable as attributes, as in FrEIA, but not part of __all__.
_ALIASES = (BinnedSpline, BinnedSplineBase, Concat1d, Split1D, linear_spline,
            rational_quadratic_spline)

__all__ = [
    "ActNorm",
    "AffineCouplingOneSided",
    "AllInOneBlock",
    "AutoregressiveAffine",
    "AutoregressiveRQSpline",
    "Concat",
    "ConcatChannel",
    "ConditionalAffineTransform",
    "CouplingBlock",
    "ElementwiseRationalQuadraticSpline",
    "Fixed1x1Conv",
    "FixedLinearTransform",
    "Flatten",
    "GINCouplingBlock",
    "GLOWCouplingBlock",
    "GaussianMixtureModel",
    "HaarDownsampling",
    "HaarUpsampling",
    "HouseholderPerm",
    "IResNetLayer",
    "IRevNetDownsampling",
    "IRevNetUpsampling",
    "InvAutoAct",
    "InvAutoActFixed",
    "InvAutoActTwoSided",
    "InvAutoConv2D",
    "InvAutoFC",
    "Inverse",
    "InvertibleModule",
    "InvertibleSigmoid",
    "Learned1x1Conv",
    "LearnedElementwiseScaling",
    "LinearSpline",
    "NICECouplingBlock",
    "OrthogonalTransform",
    "PermuteRandom",
    "RNVPCouplingBlock",
    "RationalQuadraticSpline",
    "Reshape",
    "Split",
    "SplitChannel",
]
