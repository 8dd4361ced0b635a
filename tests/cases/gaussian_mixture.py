"""Property-suite cases for `GaussianMixtureModel` (vector data, four special conditions)."""

from __future__ import annotations

from functools import partial
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from invertible.modules.gaussian_mixture import GaussianMixtureModel

from . import Case

__all__ = ["CASES", "gmm_condition_shapes", "mixture_sampler"]

Shape = Tuple[int, ...]


def gmm_condition_shapes(d: int, k: int) -> Tuple[Shape, ...]:
    """Shapes of ``[w, mu, U_entries, i]`` for ``d`` dims and ``k`` components."""
    return ((k,), (k, d), (k, d * (d + 1) // 2), ())


def mixture_sampler(gen: torch.Generator, batch: int, shapes: Sequence[Shape]) -> List[Tensor]:
    """Valid GMM conditions: softmax weights, means, moderate factor entries, int64 indices."""
    (k,), mu_shape, u_shape, _ = shapes
    w = torch.softmax(torch.randn(batch, k, generator=gen, dtype=torch.float64), dim=1)
    mu = torch.randn(batch, *mu_shape, generator=gen, dtype=torch.float64)
    entries = 0.4 * torch.randn(batch, *u_shape, generator=gen, dtype=torch.float64)
    index = torch.randint(0, k, (batch,), generator=gen)
    return [w, mu, entries, index]


def _case(case_id: str, d: int, k: int) -> Case:
    shapes = gmm_condition_shapes(d, k)
    return Case(
        case_id,
        partial(GaussianMixtureModel, [(d,)], list(shapes)),
        cond_shapes=shapes,
        sample_c=mixture_sampler,
        batch=4,
        static_conditions=(0, 3),
    )


# The weights w (condition 0) only matter when i is an int seed, and i (condition 3) is an index
# that cannot be shifted by +0.5: both are exempt from the "conditions matter" check.
CASES: List[Case] = [
    _case("gmm-vec", 3, 4),
    _case("gmm-vec-one_dim", 1, 2),
    _case("gmm-vec-one_component", 2, 1),
]

