"""Property-suite cases for the fixed transforms: permutation, fixed linear maps, sigmoid."""

from __future__ import annotations

from functools import partial
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from cases import Case
from invertible.modules.fixed_transforms import (
    Fixed1x1Conv,
    FixedLinearTransform,
    InvertibleSigmoid,
    PermuteRandom,
)

__all__ = ["CASES", "unit_interval_sampler", "well_conditioned"]


def well_conditioned(n: int, seed: int) -> Tensor:
    """A fixed, well-conditioned, non-symmetric float64 ``(n, n)`` matrix.

    float64, so that ``M_inv`` (computed at construction) is exact to float64 precision.
    """
    gen = torch.Generator().manual_seed(seed)
    eye = torch.eye(n, dtype=torch.float64)
    return eye * 1.5 + 0.3 * torch.randn(n, n, generator=gen, dtype=torch.float64)


def offset(n: int) -> Tensor:
    """A fixed offset vector for FixedLinearTransform."""
    return torch.linspace(-1.0, 1.0, n, dtype=torch.float64)


def unit_interval_sampler(
    gen: torch.Generator, batch: int, shapes: Sequence[Tuple[int, ...]]
) -> List[Tensor]:
    """Uniform float64 tensors in (0.05, 0.95): valid inputs of the sigmoid's reverse."""
    return [0.05 + 0.9 * torch.rand(batch, *s, generator=gen, dtype=torch.float64) for s in shapes]


CASES = [
    Case("fixed-permute-vector", partial(PermuteRandom, [(5,)])),
    Case("fixed-permute-vector-seed", partial(PermuteRandom, [(6,)], seed=3)),
    Case("fixed-permute-image", partial(PermuteRandom, [(4, 3, 3)], seed=1)),
    Case("fixed-linear-vector", partial(FixedLinearTransform, [(4,)], M=well_conditioned(4, 0))),
    Case(
        "fixed-linear-vector-offset",
        partial(FixedLinearTransform, [(3,)], M=well_conditioned(3, 1), b=offset(3)),
    ),
    Case("fixed-1x1conv-image", partial(Fixed1x1Conv, [(3, 4, 4)], M=well_conditioned(3, 2))),
    Case("fixed-sigmoid-vector", partial(InvertibleSigmoid, [(5,)]),
         sample_z=unit_interval_sampler),
    Case("fixed-sigmoid-image", partial(InvertibleSigmoid, [(2, 3, 3)]),
         sample_z=unit_interval_sampler),
]
