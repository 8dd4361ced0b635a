"""Small helpers shared by the built-in blocks: log-det zeros, conditions, input checks."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import List, Tuple

import torch
from torch import Tensor

from .._errors import InvertibleAssertionError

__all__ = [
    "cat_conditions",
    "check_condition_shapes",
    "check_single_input",
    "n_elements",
    "sum_nonbatch",
    "zero_log_det",
]

ShapeList = List[Tuple[int, ...]]


def zero_log_det(x: Tensor) -> Tensor:
    """A ``(batch,)`` tensor of zeros with the dtype and device of ``x``."""
    return x.new_zeros(x.shape[0])


def sum_nonbatch(x: Tensor) -> Tensor:
    """Per-sample sum over every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def n_elements(shape: Sequence[int]) -> int:
    """Number of elements of one sample of ``shape``."""
    return int(prod(shape))


def cat_conditions(x: Tensor, c: Sequence[Tensor]) -> Tensor:
    """``cat([x, *c], dim=1)``: conditions always go after the data along the channel axis."""
    if len(c) == 0:
        return x
    return torch.cat([x, *c], dim=1)


def check_single_input(block: str, input_dims: ShapeList) -> None:
    """Raise ``ValueError`` unless exactly one input shape is given."""
    if len(input_dims) != 1:
        raise ValueError(
            f"{block} can only use 1 input, but got {len(input_dims)} input shapes: {input_dims}."
        )


def check_condition_shapes(block: str, dims_in: ShapeList, dims_c: ShapeList) -> None:
    """Every condition must share the input's non-channel dims (FrEIA asserts this)."""
    for k, dc in enumerate(dims_c):
        if tuple(dc[1:]) != tuple(dims_in[0][1:]):
            raise InvertibleAssertionError(
                f"{block}: condition {k} has shape {tuple(dc)}, but its dimensions after the "
                f"channel axis must equal the input's {tuple(dims_in[0][1:])} "
                f"(input shape {tuple(dims_in[0])})."
            )
