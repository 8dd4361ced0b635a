"""Property-suite cases of the affine coupling family (vectors, images, conditions, options)."""

from __future__ import annotations

from functools import partial
from typing import List, Tuple, Type

from torch import Tensor

from invertible.modules.coupling_layers import (
    AffineCouplingOneSided,
    ConditionalAffineTransform,
    CouplingBlock,
    GINCouplingBlock,
    GLOWCouplingBlock,
    NICECouplingBlock,
    RNVPCouplingBlock,
)
from subnets import conv_subnet, dense_subnet

from . import Case

__all__ = ["CASES", "softsign_clamp"]


def softsign_clamp(u: Tensor) -> Tensor:
    """A user clamp activation defined at module level, so a model using it pickles."""
    return u / (1.0 + u.abs())


Shape = Tuple[int, ...]

#: (rank tag, input shape, subnet constructor, condition shape). C=5 and C=3 split 2 | 3 and
#: 2 | 1 under Python's round-half-even; the conditioned layouts use even C.
LAYOUTS: List[Tuple[str, Shape, object, Shape]] = [
    ("vec", (5,), dense_subnet, (2,)),
    ("img", (3, 4, 4), conv_subnet, (2, 4, 4)),
]
COND_LAYOUTS: List[Tuple[str, Shape, object, Shape]] = [
    ("vec", (4,), dense_subnet, (3,)),
    ("img", (4, 3, 3), conv_subnet, (2, 3, 3)),
]
#: Every case exercises the shared coupling base, which users subclass for a new coupling.
coupling_case = partial(Case, covers=(CouplingBlock,))
BLOCKS: List[Tuple[str, Type[CouplingBlock]]] = [
    ("nice", NICECouplingBlock),
    ("rnvp", RNVPCouplingBlock),
    ("glow", GLOWCouplingBlock),
    ("gin", GINCouplingBlock),
    ("affine_one_sided", AffineCouplingOneSided),
]


def _cases() -> List[Case]:
    """Each block on vectors and images, with and without a condition, plus option variants."""
    cases: List[Case] = []
    for name, cls in BLOCKS:
        for rank, shape, subnet, _ in LAYOUTS:
            build = partial(cls, [shape], subnet_constructor=subnet)
            cases.append(coupling_case(id=f"coupling-{name}-{rank}", build=build))
        for rank, shape, subnet, cond in COND_LAYOUTS:
            build = partial(cls, [shape], [cond], subnet_constructor=subnet)
            cases.append(coupling_case(id=f"coupling-{name}-{rank}-cond", build=build,
                                       cond_shapes=(cond,)))
    for rank, shape, subnet, cond in COND_LAYOUTS:
        build = partial(ConditionalAffineTransform, [shape], [cond], subnet_constructor=subnet)
        cases.append(coupling_case(id=f"coupling-cond_affine-{rank}", build=build,
                                   cond_shapes=(cond,)))
    two = ((3,), (1,))
    cases.append(coupling_case(
        id="coupling-cond_affine-vec-two_conds", cond_shapes=two,
        build=partial(ConditionalAffineTransform, [(4,)], list(two),
                      subnet_constructor=dense_subnet),
    ))
    cases.append(coupling_case(
        id="coupling-rnvp-vec-two_conds", cond_shapes=two,
        build=partial(RNVPCouplingBlock, [(5,)], list(two), subnet_constructor=dense_subnet),
    ))
    return cases + _option_cases()


def _option_cases() -> List[Case]:
    """Odd C, int split_len, each clamp activation and a user callable clamp."""
    glow = partial(GLOWCouplingBlock, subnet_constructor=dense_subnet)
    return [
        coupling_case(id="coupling-glow-vec-c3", build=partial(glow, [(3,)])),
        coupling_case(id="coupling-glow-vec-split_int",
                      build=partial(glow, [(6,)], split_len=1)),
        coupling_case(id="coupling-glow-vec-split_0.3",
                      build=partial(glow, [(5,)], split_len=0.3)),
        coupling_case(id="coupling-nice-vec-split_int",
                      build=partial(NICECouplingBlock, [(5,)], subnet_constructor=dense_subnet,
                                    split_len=4)),
        coupling_case(id="coupling-affine_one_sided-vec-split_int",
                      build=partial(AffineCouplingOneSided, [(5,)], subnet_constructor=dense_subnet,
                                    split_len=3)),
        coupling_case(id="coupling-glow-vec-atan",
                      build=partial(glow, [(4,)], clamp_activation="ATAN")),
        coupling_case(id="coupling-glow-vec-tanh",
                      build=partial(glow, [(4,)], clamp=1.0, clamp_activation="TANH")),
        coupling_case(id="coupling-rnvp-img-sigmoid",
                      build=partial(RNVPCouplingBlock, [(3, 3, 3)], subnet_constructor=conv_subnet,
                                    clamp_activation="SIGMOID")),
        coupling_case(id="coupling-gin-img-tanh",
                      build=partial(GINCouplingBlock, [(5, 3, 3)], subnet_constructor=conv_subnet,
                                    clamp_activation="TANH")),
        coupling_case(id="coupling-glow-vec-callable_clamp",
                      build=partial(glow, [(4,)], clamp=1.5, clamp_activation=softsign_clamp)),
        coupling_case(id="coupling-cond_affine-vec-callable_clamp", cond_shapes=((2,),),
                      build=partial(ConditionalAffineTransform, [(3,)], [(2,)],
                                    subnet_constructor=dense_subnet,
                                    clamp_activation=softsign_clamp)),
    ]


CASES: List[Case] = _cases()
