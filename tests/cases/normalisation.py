"""Property-suite cases: ActNorm, the learned element-wise maps and the InvAuto linear layers.

InvAutoFC/InvAutoConv2D are exact inverses with log-det 0 only when their weights are orthogonal
(the state their training aims at); the cases in ``CASES`` build them there. At random init
their reverse is only an approximation and their log-det (reported 0) is not the true one:
those configurations are in ``APPROXIMATE_CASES``, not run by the generic suite (its Case has no
flag for this yet) but by tests/test_inv_auto_layers.py with the checks that do hold.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, List

import torch
from torch import nn

from invertible.modules.inv_auto_layers import (
    InvAutoAct,
    InvAutoActFixed,
    InvAutoActTwoSided,
    InvAutoConv2D,
    InvAutoFC,
    LearnedElementwiseScaling,
)
from invertible.modules.invertible_resnet import ActNorm

from . import Case

__all__ = [
    "APPROXIMATE_CASES",
    "CASES",
    "actnorm_with_data",
    "orthogonal_conv",
    "orthogonal_fc",
    "perturbed",
]


def perturbed(factory: Callable[[], nn.Module], scale: float = 0.3) -> nn.Module:
    """``factory()`` with every parameter shifted by ``scale * randn`` (global torch RNG).

    Makes per-channel/per-element parameters differ, so broadcasting mistakes show up.
    """
    module = factory()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def actnorm_with_data(shape: tuple) -> ActNorm:
    """ActNorm initialised from a skewed random batch of 16 (so loc/scale are far from 0/1)."""
    data = 1.5 * torch.randn(16, *shape) + torch.linspace(-1.0, 1.0, shape[0]).reshape(
        (1, shape[0]) + (1,) * (len(shape) - 1)
    )
    return ActNorm([shape], init_data=data)


def _orthogonal(weight: torch.Tensor) -> torch.Tensor:
    """The orthogonal factor of ``weight``'s QR decomposition (sign-fixed), same shape."""
    q, r = torch.linalg.qr(weight)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def orthogonal_fc(width: int) -> InvAutoFC:
    """A float64 InvAutoFC whose weights are orthogonal: there its reverse is exact, log-det 0."""
    module = InvAutoFC([(width,)]).double()
    with torch.no_grad():
        module.weights.copy_(_orthogonal(module.weights))
    return module


def orthogonal_conv(channels: int, size: int, kernel_size: int) -> InvAutoConv2D:
    """A float64 InvAutoConv2D that is an orthogonal 1x1 map (centre tap; other taps 0)."""
    padding = kernel_size // 2
    module = InvAutoConv2D([(channels, size, size)], kernel_size=kernel_size, padding=padding)
    module = module.double()
    with torch.no_grad():
        weight = module.conv2d.weight
        centre = _orthogonal(weight[:, :, padding, padding])
        weight.zero_()
        weight[:, :, padding, padding] = centre
    return module


CASES: List[Case] = [
    Case("actnorm-vec", partial(actnorm_with_data, (5,))),
    Case("actnorm-img", partial(actnorm_with_data, (3, 4, 4))),
    # initialised by the first call the suite makes, in whichever direction, as FrEIA's ActNorm
    # does (a reverse pass first initialises it from latents, with a warning)
    Case("actnorm-vec-lazy-init", partial(ActNorm, [(4,)])),
    Case("actnorm-img-lazy-init", partial(ActNorm, [(2, 3, 3)])),
    Case("invauto-act-vec", partial(perturbed, partial(InvAutoAct, [(5,)]))),
    Case("invauto-act-img", partial(perturbed, partial(InvAutoAct, [(3, 4, 4)], slope_init=1.5))),
    Case("invauto-act-frozen", partial(InvAutoAct, [(4,)], learnable=False)),
    Case("invauto-act-fixed-vec", partial(perturbed, partial(InvAutoActFixed, [(5,)]))),
    Case("invauto-act-two-sided-vec", partial(perturbed, partial(InvAutoActTwoSided, [(5,)]))),
    Case(
        "invauto-act-two-sided-img",
        partial(perturbed, partial(InvAutoActTwoSided, [(3, 4, 4)], init_pos=1.2, init_neg=0.7)),
    ),
    Case("elementwise-scaling-vec", partial(perturbed, partial(LearnedElementwiseScaling, [(5,)]))),
    Case(
        "elementwise-scaling-img",
        partial(perturbed, partial(LearnedElementwiseScaling, [(2, 3, 3)], init_scale=2.0)),
    ),
    Case("invauto-fc-orthogonal", partial(orthogonal_fc, 5)),
    Case("invauto-conv-orthogonal-1x1", partial(orthogonal_conv, 3, 4, 1)),
    Case("invauto-conv-orthogonal-3x3", partial(orthogonal_conv, 2, 4, 3)),
]

# Random-init InvAuto layers: the reverse is only approximate and the log-det (0) is not the
# true one, so round trips, the fwd/rev log-det identity and the autograd log-det do not hold.
# Proposed Case flags for the generic suite: exact_inverse=False, exact_log_det=False.
APPROXIMATE_CASES: List[Case] = [
    Case("invauto-fc-random", partial(InvAutoFC, [(5,)])),
    Case("invauto-fc-random-wider", partial(InvAutoFC, [(3,)], dims_out=6)),
    Case("invauto-conv-random", partial(InvAutoConv2D, [(3, 4, 4)])),
    Case("invauto-conv-random-channels", partial(InvAutoConv2D, [(2, 4, 4)], dims_out=(4, 4, 4))),
]
