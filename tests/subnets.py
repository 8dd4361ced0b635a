"""Picklable subnet constructors (module-level, no lambdas) and helpers shared by the tests.

The dense, 3x3 and 1x1 constructors are the ones ``invertible check --subnet`` uses: small,
tanh, randomly initialised (so every parameter gets a gradient).
"""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor, nn

from invertible.cli._subnets import HIDDEN, conv1x1_subnet, conv_subnet, dense_subnet

__all__ = ["HIDDEN", "Float32Subnet", "conv1x1_subnet", "conv_subnet", "dense_subnet",
           "forward_inverse_and_gradients"]


class Float32Subnet(nn.Module):
    """A float32 MLP that accepts any floating input (casts it), like a mixed-precision model."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = dense_subnet(c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float())


def forward_inverse_and_gradients(block: nn.Module, x: Tensor, c: List[Tensor]) -> List[Tensor]:
    """Outputs, log-dets and gradients of a training forward; no-grad forward and inverse.

    The log-det's upstream gradient assumes a batch of 3.
    """
    (y,), ld = block([x], c)
    gy = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).view_as(y)
    trainable = [p for p in block.parameters() if p.requires_grad]
    grads = torch.autograd.grad([y, ld], [x, *c, *trainable], [gy, torch.linspace(1, -2, 3)])
    with torch.no_grad():
        (y0,), ld0 = block([x], c)
        (x_back,), ld_back = block([y0], c, rev=True)
    return [y, ld, *grads, y0, ld0, x_back, ld_back]
