"""Property-suite cases of the spline blocks (vectors, images, conditions, tails, options)."""

from __future__ import annotations

from functools import partial
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from invertible.modules.splines import (
    BinnedSpline,
    BinnedSplineBase,
    ElementwiseRationalQuadraticSpline,
    LinearSpline,
    RationalQuadraticSpline,
)
from subnets import conv_subnet, dense_subnet

from . import Case

__all__ = ["CASES", "elementwise_rqs", "spline_sampler"]

Shape = Tuple[int, ...]


def spline_sampler(gen: torch.Generator, batch: int, shapes: Sequence[Shape]) -> List[Tensor]:
    """Mostly uniform in (-2.5, 2.5), inside the default domain (-3, 3); every 4th element lies
    at 3.5 to 5 in absolute value, outside it, so that the tails are exercised too."""
    out = []
    for shape in shapes:
        x = 5.0 * torch.rand(batch, *shape, generator=gen, dtype=torch.float64) - 2.5
        flat = x.reshape(-1)
        far = torch.sign(flat[::4]) * (3.5 + 1.5 * torch.rand(flat[::4].shape, generator=gen,
                                                                dtype=torch.float64))
        flat[::4] = far
        out.append(flat.reshape(x.shape))
    return out


def elementwise_rqs(
    shape: Shape, dims_c: Sequence[Shape] = (), **kwargs: object
) -> ElementwiseRationalQuadraticSpline:
    """An element-wise RQS; unconditioned, its ``spline_parameters`` are drawn ``N(0, 0.5^2)``
    (from the global torch RNG) so the case is not the identity and every entry is "learned"."""
    subnet = conv_subnet if len(shape) == 3 else dense_subnet
    module = ElementwiseRationalQuadraticSpline(
        [shape], list(dims_c), subnet_constructor=subnet, **kwargs
    )
    if not module.conditional:
        with torch.no_grad():
            module.spline_parameters.normal_(0.0, 0.5)
    return module


#: (rank tag, input shape, subnet, condition shape); C=5 splits 2 | 3 (round half to even).
LAYOUTS: List[Tuple[str, Shape, object, Shape]] = [
    ("vec", (5,), dense_subnet, (3,)),
    ("img", (3, 3, 3), conv_subnet, (2, 3, 3)),
]
COVERS = (BinnedSpline, BinnedSplineBase)
spline_case = partial(Case, covers=COVERS, sample_x=spline_sampler, sample_z=spline_sampler)


def _coupling_cases() -> List[Case]:
    """Both coupling splines on each rank, with/without a condition and with identity tails."""
    cases: List[Case] = []
    for name, cls in (("rqs", RationalQuadraticSpline), ("linear", LinearSpline)):
        for rank, shape, subnet, cond in LAYOUTS:
            for tails in (False, True):
                tag = "-identity_tails" if tails else ""
                build = partial(cls, [shape], subnet_constructor=subnet, bins=4,
                                identity_tails=tails)
                cases.append(spline_case(id=f"spline-{name}-{rank}{tag}", build=build))
                cond_build = partial(cls, [shape], [cond], subnet_constructor=subnet, bins=4,
                                     identity_tails=tails)
                cases.append(spline_case(id=f"spline-{name}-{rank}-cond{tag}", build=cond_build,
                                         cond_shapes=(cond,)))
            fixed = partial(cls, [shape], [cond], subnet_constructor=subnet, bins=4,
                            identity_tails=True, learn_domain=False)
            cases.append(spline_case(id=f"spline-{name}-{rank}-cond-fixed_square", build=fixed,
                                     cond_shapes=(cond,)))
    return cases


def _elementwise_cases() -> List[Case]:
    """Element-wise RQS: learned parameters and conditional subnet, on each rank."""
    cases: List[Case] = []
    for rank, shape, _, cond in LAYOUTS:
        for tails in (False, True):
            tag = "-identity_tails" if tails else ""
            cases.append(spline_case(
                id=f"spline-elementwise_rqs-{rank}{tag}",
                build=partial(elementwise_rqs, shape, bins=5, identity_tails=tails)))
            cases.append(spline_case(
                id=f"spline-elementwise_rqs-{rank}-cond{tag}", cond_shapes=(cond,),
                build=partial(elementwise_rqs, shape, (cond,), bins=5, identity_tails=tails)))
    cases.append(spline_case(
        id="spline-elementwise_rqs-vec-fixed_square",
        build=partial(elementwise_rqs, (4,), bins=5, identity_tails=True, learn_domain=False)))
    two = ((2,), (1,))
    cases.append(spline_case(id="spline-elementwise_rqs-vec-two_conds", cond_shapes=two,
                             build=partial(elementwise_rqs, (4,), two, bins=3)))
    return cases


def _option_cases() -> List[Case]:
    """Custom domains, minimum bin sizes, domain clamping, one bin, int split_len."""
    rqs = partial(RationalQuadraticSpline, subnet_constructor=dense_subnet)
    return [
        spline_case(id="spline-rqs-vec-domain_clamping",
                    build=partial(rqs, [(4,)], bins=6, domain_clamping=4.0)),
        spline_case(id="spline-rqs-vec-identity_tails-domain_clamping",
                    build=partial(rqs, [(4,)], bins=6, identity_tails=True, domain_clamping=5.0)),
        spline_case(id="spline-rqs-vec-custom_domain",
                    build=partial(rqs, [(4,)], bins=3, min_bin_sizes=(0.2, 0.05),
                                  default_domain=(-2.0, 3.0, -4.0, 2.5))),
        spline_case(id="spline-rqs-vec-one_bin", build=partial(rqs, [(3,)], bins=1)),
        spline_case(id="spline-rqs-vec-split_int", build=partial(rqs, [(5,)], split_len=1)),
        spline_case(id="spline-linear-vec-domain_clamping",
                    build=partial(LinearSpline, [(4,)], subnet_constructor=dense_subnet,
                                  domain_clamping=4.0)),
        spline_case(id="spline-elementwise_rqs-vec-domain_clamping",
                    build=partial(elementwise_rqs, (3,), bins=4, domain_clamping=4.0)),
    ]


CASES: List[Case] = _coupling_cases() + _elementwise_cases() + _option_cases()
