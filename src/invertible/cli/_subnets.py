"""Subnet constructors for ``invertible check --subnet``: module-level, so modules pickle.

Randomly initialised (no zero last layer), so the gradient check can reach every parameter.
"""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

__all__ = ["SUBNETS", "conv1x1_subnet", "conv_subnet", "dense_subnet"]

HIDDEN = 16


def dense_subnet(c_in: int, c_out: int) -> nn.Module:
    """Linear, tanh, linear: for vector inputs ``(D,)``."""
    return nn.Sequential(nn.Linear(c_in, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, c_out))


def conv_subnet(c_in: int, c_out: int) -> nn.Module:
    """Two padded 3x3 convolutions with a tanh between: for images ``(C, H, W)``."""
    return nn.Sequential(
        nn.Conv2d(c_in, HIDDEN, 3, padding=1), nn.Tanh(), nn.Conv2d(HIDDEN, c_out, 3, padding=1)
    )


def conv1x1_subnet(c_in: int, c_out: int) -> nn.Module:
    """Two 1x1 convolutions with a tanh between: a per-pixel MLP for images."""
    return nn.Sequential(nn.Conv2d(c_in, HIDDEN, 1), nn.Tanh(), nn.Conv2d(HIDDEN, c_out, 1))


SUBNETS: Dict[str, Callable[[int, int], nn.Module]] = {
    "dense": dense_subnet,
    "conv": conv_subnet,
    "conv1x1": conv1x1_subnet,
}
