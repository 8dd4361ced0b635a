"""Picklable subnet constructors shared by the test cases (module-level, no lambdas)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["conv1x1_subnet", "conv_subnet", "dense_subnet"]

HIDDEN = 16


def dense_subnet(c_in: int, c_out: int) -> nn.Module:
    """A two-layer tanh MLP, randomly initialised (so every parameter gets a gradient)."""
    return nn.Sequential(nn.Linear(c_in, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, c_out))


def conv_subnet(c_in: int, c_out: int) -> nn.Module:
    """Two padded 3x3 convolutions with a tanh between them."""
    return nn.Sequential(
        nn.Conv2d(c_in, HIDDEN, 3, padding=1), nn.Tanh(), nn.Conv2d(HIDDEN, c_out, 3, padding=1)
    )


def conv1x1_subnet(c_in: int, c_out: int) -> nn.Module:
    """Two 1x1 convolutions: per-pixel MLP, valid for any spatial rank-2 input."""
    return nn.Sequential(nn.Conv2d(c_in, HIDDEN, 1), nn.Tanh(), nn.Conv2d(HIDDEN, c_out, 1))


class Float32Subnet(nn.Module):
    """A float32 MLP that accepts any floating input (casts it), like a mixed-precision model."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = dense_subnet(c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float())
