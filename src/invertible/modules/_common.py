"""Small helpers shared by the built-in blocks: type aliases, log-det zeros, build-time checks.

Call-time validation is not here: every block calls ``InvertibleModule._checked`` (``base.py``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Tuple, Type

import torch
from torch import Tensor, nn

from .base import Shape, ShapeList, is_compiling

if TYPE_CHECKING:  # typing.TypeGuard needs Python 3.10; annotations are not evaluated
    from typing_extensions import TypeGuard

__all__ = ["MAX_SEED", "Dims", "Outputs", "Shape", "ShapeList", "SubnetConstructor", "Tensors",
           "built_subnet", "channel_input_shape", "check_single_input", "checked_seed",
           "frozen_parameter", "image_shape",
           "is_compiling", "is_int", "is_tracing", "n_elements", "require_no_conditions",
           "same_shape", "sum_nonbatch", "vector_size", "zero_log_det"]

#: What constructors accept as ``dims_in``/``dims_c`` before normalisation.
Dims = Iterable[Iterable[int]]
#: A call's data or condition tensors, one per input or condition.
Tensors = Sequence[Tensor]
#: What a built-in block's ``forward`` returns: its outputs and the ``(batch,)`` log-det.
Outputs = Tuple[Sequence[Tensor], Tensor]
#: ``f(c_in, c_out) -> nn.Module``, called with two positional ints (a class, function or factory).
SubnetConstructor = Callable[[int, int], nn.Module]


# --- values -------------------------------------------------------------------------------------


def zero_log_det(x: Tensor) -> Tensor:
    """A ``(batch,)`` tensor of zeros with the dtype and device of ``x``."""
    return x.new_zeros(x.shape[0])


def sum_nonbatch(x: Tensor) -> Tensor:
    """Per-sample sum over every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def n_elements(shape: Sequence[int]) -> int:
    """Number of elements of one sample of ``shape``."""
    return int(prod(shape))


def frozen_parameter(value: Tensor) -> nn.Parameter:
    """FrEIA's way of storing a fixed tensor: ``nn.Parameter(value, requires_grad=False)``.

    Used exactly where FrEIA's ``state_dict`` holds such a parameter, so that its checkpoints
    load (elsewhere fixed tensors are buffers).
    """
    return nn.Parameter(value, requires_grad=False)


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is a Python or numpy integer (a ``bool`` is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


#: Largest seed every local generator takes (numpy's ``RandomState`` stops at ``2**32 - 1``).
MAX_SEED = 2**32 - 1


def checked_seed(block: str, seed: Any) -> Optional[int]:
    """``seed`` for a block's local generators: ``None`` or an int in ``[0, 2**32 - 1]``.

    Raises:
        TypeError: not an int (a bool, float or string), naming the block.
        ValueError: out of range, naming the block.
    """
    if seed is None:
        return None
    if not is_int(seed):
        raise TypeError(f"{block}: seed must be an int or None, got {type(seed).__name__} "
                        f"{seed!r}.")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"{block}: seed must lie in [0, 2**32 - 1], got {seed}.")
    return int(seed)


def is_tracing() -> bool:
    """Whether ``torch.jit.trace`` or ``torch.compile``/``torch.export`` is tracing this call.

    Value-dependent diagnostics (checks that read tensor values) are skipped then.
    """
    return torch.jit.is_tracing() or is_compiling()


# --- build-time shape checks --------------------------------------------------------------------


def check_single_input(
    block: str, input_dims: ShapeList, error: Type[Exception] = ValueError
) -> None:
    """Raise ``error`` (``ValueError`` by default) unless exactly one input shape is given."""
    if len(input_dims) != 1:
        raise error(
            f"{block} can only use 1 input, but got {len(input_dims)} input shapes: {input_dims}."
        )


def same_shape(block: str, input_dims: ShapeList) -> ShapeList:
    """``output_dims`` of a shape-preserving single-input block: the one shape, as int tuple."""
    check_single_input(block, input_dims)
    return [tuple(int(d) for d in input_dims[0])]


def channel_input_shape(block: str, dims_in: ShapeList) -> Shape:
    """The single input's shape, which must have at least a channel axis."""
    check_single_input(block, dims_in)
    if len(dims_in[0]) == 0:
        raise ValueError(f"{block} needs an input with a channel axis, got shape {dims_in[0]}.")
    return dims_in[0]


def image_shape(block: str, dims_in: ShapeList) -> Shape:
    """The single image input's ``(C, H, W)``; ``ValueError`` for other counts or ranks."""
    check_single_input(block, dims_in)
    shape = tuple(int(d) for d in dims_in[0])
    if len(shape) != 3:
        raise ValueError(f"{block} works on images (C, H, W), got shape {shape}.")
    return shape


def vector_size(block: str, dims_in: ShapeList) -> int:
    """The size ``d`` of the single vector input ``[(d,)]``; ``ValueError`` otherwise."""
    check_single_input(block, dims_in)
    shape = tuple(int(d) for d in dims_in[0])
    if len(shape) != 1:
        raise ValueError(f"{block} works on vectors (d,) only, got an input of shape {shape}.")
    return shape[0]


def require_no_conditions(block: str, dims_c: ShapeList) -> None:
    """Blocks whose ``forward`` takes no conditions reject a non-empty ``dims_c``."""
    if dims_c:
        raise ValueError(f"{block} takes no conditions, got dims_c={dims_c}.")


def built_subnet(block: str, constructor: Any, c_in: int, c_out: int, name: str) -> nn.Module:
    """``constructor(c_in, c_out)`` for subnet ``name``, checked to be an ``nn.Module``.

    Raises:
        TypeError: ``constructor`` is not callable or does not return an ``nn.Module``.
    """
    if not callable(constructor):
        raise TypeError(
            f"{block} needs a subnet_constructor f(c_in, c_out) -> nn.Module, got {constructor!r}."
        )
    subnet = constructor(c_in, c_out)
    if not isinstance(subnet, nn.Module):
        raise TypeError(
            f"{block}: subnet_constructor({c_in}, {c_out}) must return an nn.Module for subnet "
            f"{name!r}, got {type(subnet).__name__} {subnet!r:.60}."
        )
    return subnet
