"""Picklable subnet constructors (module-level, no lambdas) shared by the tests.

The dense, 3x3 and 1x1 constructors are the ones ``invertible check --subnet`` uses: small,
tanh, randomly initialised (so every parameter gets a gradient).
"""

from __future__ import annotations

from torch import Tensor, nn

from invertible.cli._subnets import HIDDEN, conv1x1_subnet, conv_subnet, dense_subnet

__all__ = ["HIDDEN", "Float32Subnet", "conv1x1_subnet", "conv_subnet", "dense_subnet"]


class Float32Subnet(nn.Module):
    """A float32 MLP that accepts any floating input (casts it), like a mixed-precision model."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = dense_subnet(c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float())
