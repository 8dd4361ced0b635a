"""Property-suite cases for the autoregressive blocks (affine and rational-quadratic spline):
unconditional and conditional, sequential and random order, MAF and IAF orientation, moved away
from their identity start."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from cases import Case
from invertible.modules.autoregressive import AutoregressiveAffine, AutoregressiveRQSpline

__all__ = ["CASES", "perturbed"]


def perturbed(block: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """``block(*args, **kwargs)`` whose parameters got ``0.3 * randn`` added (seeded by the
    suite): the MADE's last layer starts at zero, which would make the block the identity."""
    module = block(*args, **kwargs)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return module


AFFINE = partial(perturbed, AutoregressiveAffine)
SPLINE = partial(perturbed, AutoregressiveRQSpline)

CASES = [
    Case("autoregressive-affine-vec", partial(AFFINE, [(5,)], hidden_features=(8, 8))),
    Case("autoregressive-affine-vec-random",
         partial(AFFINE, [(4,)], hidden_features=(7,), order="random", seed=1)),
    Case("autoregressive-affine-vec-cond",
         partial(AFFINE, [(4,)], [(2,), (3,)], hidden_features=(8, 8)), cond_shapes=((2,), (3,))),
    Case("autoregressive-affine-vec-iaf",
         partial(AFFINE, [(5,)], hidden_features=(8,), order="random",
                 inverse_autoregressive=True)),
    Case("autoregressive-affine-vec-cond-iaf",
         partial(AFFINE, [(3,)], [(2,)], hidden_features=(6, 6), order="random", seed=2,
                 inverse_autoregressive=True), cond_shapes=((2,),)),
    Case("autoregressive-rqs-vec", partial(SPLINE, [(4,)], hidden_features=(8, 8), bins=4)),
    Case("autoregressive-rqs-vec-cond-random",
         partial(SPLINE, [(4,)], [(2,)], hidden_features=(8,), bins=3, order="random", seed=3),
         cond_shapes=((2,),)),
    Case("autoregressive-rqs-vec-iaf-identity-tails",
         partial(SPLINE, [(3,)], hidden_features=(6, 6), bins=5, identity_tails=True,
                 inverse_autoregressive=True)),
    Case("autoregressive-rqs-vec-cond-iaf",
         partial(SPLINE, [(3,)], [(2,)], hidden_features=(6,), order="random",
                 inverse_autoregressive=True), cond_shapes=((2,),)),
]
