"""Property-suite cases for Glow's learned 1x1 convolution: vectors, 1-D/2-D/3-D images, LU and
full weight, moved away from the initial rotation so that the log-det is not zero."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from cases import Case
from invertible.modules.learned_conv import Learned1x1Conv

__all__ = ["CASES", "perturbed"]


def perturbed(*args: Any, **kwargs: Any) -> Learned1x1Conv:
    """A ``Learned1x1Conv`` whose parameters got ``0.3 * randn`` added (seeded by the suite)."""
    block = Learned1x1Conv(*args, **kwargs)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return block


CASES = [
    Case("learned-1x1conv-vector-lu", partial(perturbed, [(5,)])),
    Case("learned-1x1conv-vector-full", partial(perturbed, [(4,)], lu=False, seed=1)),
    Case("learned-1x1conv-image1d-lu", partial(perturbed, [(3, 5)], seed=2)),
    Case("learned-1x1conv-image-lu", partial(perturbed, [(4, 3, 3)], seed=3)),
    Case("learned-1x1conv-image-full", partial(perturbed, [(3, 4, 2)], lu=False)),
    Case("learned-1x1conv-image3d-lu", partial(perturbed, [(2, 2, 3, 2)], seed=4)),
]
