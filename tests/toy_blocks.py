"""User-style invertible modules written the way FrEIA users write them (FrEIA's own example)."""

from __future__ import annotations

import math

import torch
from torch import nn

from invertible.modules import InvertibleModule

__all__ = ["CondShift", "ScalarLogDetScale", "Scale2"]


class Scale2(InvertibleModule):
    """Multiply by 2; no ``c`` parameter and a Python-float log-det, like many user modules."""

    def __init__(self, dims_in, dims_c=None):
        super().__init__(dims_in, dims_c)

    def forward(self, x, rev=False, jac=True):
        f = 0.5 if rev else 2.0
        ld = (-1 if rev else 1) * x[0][0].numel() * math.log(2.0)
        return (x[0] * f,), ld

    @staticmethod
    def output_dims(input_dims):
        return input_dims


class ScalarLogDetScale(InvertibleModule):
    """Learned scalar scale returning a 0-dim log-det summed over the batch (CS-Flow style)."""

    def __init__(self, dims_in, dims_c=None):
        super().__init__(dims_in, dims_c)
        self.log_s = nn.Parameter(torch.tensor(0.3))

    def forward(self, x, rev=False, jac=True):
        sign = -1.0 if rev else 1.0
        y = x[0] * torch.exp(sign * self.log_s)
        return [y], sign * self.log_s * x[0][0].numel()

    def output_dims(self, input_dims):
        return input_dims


class CondShift(InvertibleModule):
    """``y = x + W c`` with a learned ``W``: a minimal conditioned block."""

    def __init__(self, dims_in, dims_c=None):
        super().__init__(dims_in, dims_c)
        self.linear = nn.Linear(self.dims_c[0][0], self.dims_in[0][0])

    def forward(self, x, c=None, rev=False, jac=True):
        shift = self.linear(c[0])
        y = x[0] - shift if rev else x[0] + shift
        return (y,), torch.zeros(y.shape[0], dtype=y.dtype)

    def output_dims(self, input_dims):
        return input_dims
