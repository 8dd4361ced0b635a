"""Small helpers shared by the built-in blocks: shapes, log-det zeros, conditions, input checks."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Tuple, Type, Union

import torch
from torch import Tensor, nn

from .._errors import InvertibleAssertionError

if TYPE_CHECKING:  # typing.TypeGuard needs Python 3.10; annotations are not evaluated
    from typing_extensions import TypeGuard

__all__ = [
    "PARAMETERS",
    "Dims",
    "Outputs",
    "Shape",
    "ShapeList",
    "SubnetConstructor",
    "Tensors",
    "built_subnet",
    "cat_conditions",
    "channel_input_shape",
    "check_block_inputs",
    "check_condition_shapes",
    "check_condition_tensors",
    "check_dtype_device",
    "check_input_tensors",
    "check_single_input",
    "check_tensor",
    "condition_list",
    "frozen_parameter",
    "is_compiling",
    "is_int",
    "is_tracing",
    "module_reference",
    "n_elements",
    "require_no_conditions",
    "same_shape",
    "single_input_tensor",
    "sum_nonbatch",
    "vector_size",
    "zero_log_det",
]

#: One tensor's shape, batch dimension excluded, e.g. ``(3, 32, 32)``.
Shape = Tuple[int, ...]
#: One shape per tensor, e.g. ``[(3, 32, 32)]``.
ShapeList = List[Shape]
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


def cat_conditions(x: Tensor, c: Sequence[Tensor]) -> Tensor:
    """``cat([x, *c], dim=1)``: conditions always go after the data along the channel axis."""
    if len(c) == 0:
        return x
    return torch.cat([x, *c], dim=1)


def frozen_parameter(value: Tensor) -> nn.Parameter:
    """FrEIA's way of storing a fixed tensor: ``nn.Parameter(value, requires_grad=False)``.

    Used exactly where FrEIA's ``state_dict`` layout has such a parameter (spec Appendix A).
    """
    return nn.Parameter(value, requires_grad=False)


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is a Python or numpy integer (a ``bool`` is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_tracing() -> bool:
    """Whether ``torch.jit.trace`` or ``torch.compile``/``torch.export`` is tracing this call.

    Value-dependent diagnostics (checks that read tensor values) are skipped then.
    """
    return torch.jit.is_tracing() or is_compiling()


def is_compiling() -> bool:
    """Whether dynamo (``torch.compile``, ``torch.export``) is tracing this call."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(compiling()) if compiling is not None else False


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


def check_condition_shapes(block: str, dims_in: ShapeList, dims_c: ShapeList) -> None:
    """Every condition must share the input's non-channel dims (FrEIA asserts this)."""
    for k, dc in enumerate(dims_c):
        if tuple(dc[1:]) != tuple(dims_in[0][1:]):
            raise InvertibleAssertionError(
                f"{block}: condition {k} has shape {tuple(dc)}, but its dimensions after the "
                f"channel axis must equal the input's {tuple(dims_in[0][1:])} "
                f"(input shape {tuple(dims_in[0])})."
            )


# --- call-time checks (Python ints only, so tracing and compiling see no data branch) ----------


def single_input_tensor(block: str, x: Sequence[Tensor]) -> Tensor:
    """The one tensor of the sequence ``x``; ``ValueError`` for a bare tensor or another count."""
    if isinstance(x, Tensor) or len(x) != 1:
        got = "a bare tensor" if isinstance(x, Tensor) else f"{len(x)} tensors"
        raise ValueError(f"{block} takes a list or tuple of exactly 1 input tensor, got {got}.")
    return x[0]


def condition_list(
    block: str, c: Optional[Sequence[Tensor]], dims_c: ShapeList
) -> List[Tensor]:
    """The condition tensors as a list (a bare tensor means ``[c]``), one per ``dims_c`` entry.

    Raises:
        ValueError: the number of conditions differs from ``len(dims_c)``.
    """
    cs = [c] if isinstance(c, Tensor) else ([] if c is None else list(c))
    if len(cs) != len(dims_c):
        if not dims_c:
            problem = "it has no conditions (dims_c=[]), so pass none"
        else:
            problem = "the condition is missing" if not cs else f"got {len(cs)} tensors"
        raise ValueError(
            f"{block} expects {len(dims_c)} condition(s) of shapes {dims_c}: {problem}."
        )
    return cs


# --- call-time checks of the tensors themselves (shape, dtype, device) -------------------------


def module_reference(module: nn.Module) -> Optional[Tensor]:
    """The tensor whose device (and dtype, if floating) a block's inputs must match.

    The first floating-point parameter or buffer of ``module`` (its own first, then its
    children's); else its first tensor of any dtype (e.g. an int64 permutation); else ``None``
    for parameter-free blocks, which accept any device and dtype.
    """
    found = _first_floating_parameter(module)
    if found is not None:  # the common case, found without building generators
        return found
    first: Optional[Tensor] = None
    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return t
        first = t if first is None else first
    return first


def _first_floating_parameter(module: nn.Module) -> Optional[Tensor]:
    """The first floating-point parameter in ``module.parameters()`` order (depth first)."""
    for p in module._parameters.values():
        if p is not None and p.is_floating_point():
            return p
    for child in module._modules.values():
        found = _first_floating_parameter(child) if child is not None else None
        if found is not None:
            return found
    return None


def _shape_text(shape: Sequence[int]) -> str:
    """``(B, 3, 8, 8)``: a tensor shape with the batch written as B."""
    return "(" + ", ".join(["B", *(str(int(d)) for d in shape)]) + ")"


def _autocast_on(device_type: str) -> bool:
    """Whether ``torch.autocast`` is active for ``device_type`` (False for unknown types)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4 takes no device type
        return bool(torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled())
    except RuntimeError:  # a device type autocast does not know, e.g. "meta"
        return False


#: How messages name the reference tensor of a block with parameters.
PARAMETERS = "the block's parameters are"


def check_dtype_device(
    block: str, what: str, t: Tensor, like: Optional[Tensor], reference: str = PARAMETERS
) -> None:
    """``t`` must be on ``like``'s device and, when ``like`` is floating, of its dtype.

    Dtypes are not compared under autocast, where mixed dtypes are intended. ``reference``
    names ``like`` in messages, with its verb (e.g. ``"the input is"``).
    """
    if like is None:
        return
    if t.device != like.device:
        raise ValueError(
            f"{block}: {what} is on device {t.device}, but {reference} on {like.device}; move "
            f"the data or the block with .to(...)."
        )
    if like.is_floating_point() and t.dtype != like.dtype and not _autocast_on(t.device.type):
        raise TypeError(
            f"{block}: {what} has dtype {t.dtype}, but {reference} {like.dtype}; convert the "
            f"data or the block (e.g. .to({like.dtype}))."
        )


def check_tensor(
    block: str, what: str, t: Any, shape: Optional[Sequence[int]], like: Optional[Tensor],
    floating: bool = True, reference: str = PARAMETERS,
) -> None:
    """One tensor: a ``Tensor``, floating if required, of shape ``(B, *shape)``, like ``like``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{block}: {what} must be a torch.Tensor, got {type(t).__name__}.")
    if floating and not t.is_floating_point():
        raise TypeError(
            f"{block}: {what} must be a floating-point tensor, got dtype {t.dtype}."
        )
    checkable = shape is not None and not torch.jit.is_tracing()
    if checkable and (t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape)):
        raise ValueError(
            f"{block}: {what} must have shape {_shape_text(shape)}, got shape {tuple(t.shape)}."
        )
    check_dtype_device(block, what, t, like, reference)


def check_input_tensors(
    block: str,
    x: Any,
    shapes: Sequence[Optional[Sequence[int]]],
    like: Optional[Tensor] = None,
    floating: bool = True,
    rev: bool = False,
) -> List[Tensor]:
    """Validate a block's data inputs; return them as a list.

    Args:
        block: the block's name for messages.
        x: what the caller passed: a list or tuple of tensors.
        shapes: the expected shape (batch excluded) of each tensor; ``None`` skips one shape.
        like: a tensor of the block (see :func:`module_reference`) whose device, and dtype if
            floating, the inputs must share; ``None`` accepts any.
        floating: require floating-point tensors.
        rev: the direction, for messages (the reverse takes the block's outputs).

    Raises:
        ValueError: a bare tensor, the wrong number of tensors, a wrong shape or device.
        TypeError: a non-tensor, a non-floating tensor, or a dtype other than the block's.
    """
    what = "reverse input" if rev else "input"
    if isinstance(x, Tensor) or not isinstance(x, (list, tuple)):
        got = "a bare tensor" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"{block} takes a list or tuple of {len(shapes)} {what} tensor(s), e.g. [x]; "
            f"got {got}."
        )
    if len(x) != len(shapes):
        expected = ", ".join(_shape_text(s) if s is not None else "?" for s in shapes)
        raise ValueError(
            f"{block} takes {len(shapes)} {what} tensor(s) of shape {expected}, got {len(x)}."
        )
    for k, (t, shape) in enumerate(zip(x, shapes)):
        name = what if len(shapes) == 1 else f"{what} {k}"
        check_tensor(block, name, t, shape, like, floating)
    return list(x)


def check_condition_tensors(
    block: str,
    c: Union[Tensor, Sequence[Tensor], None],
    dims_c: ShapeList,
    like: Optional[Tensor] = None,
    reference: str = PARAMETERS,
) -> List[Tensor]:
    """Validate a block's conditions against ``dims_c``; return them as a list.

    ``None`` or ``[]`` means no conditions; a bare tensor means ``[c]``. ``like`` and
    ``reference`` as in :func:`check_dtype_device`.

    Raises:
        ValueError: a missing, unexpected or extra condition, or a wrong shape or device.
        TypeError: a non-tensor condition or one of another dtype than the block.
    """
    cs = condition_list(block, c, dims_c)
    for k, (t, shape) in enumerate(zip(cs, dims_c)):
        check_tensor(block, f"condition {k}", t, shape, like, True, reference)
    return cs


def check_block_inputs(
    module: nn.Module, x: Any, rev: bool, floating: Optional[bool] = None
) -> List[Tensor]:
    """:func:`check_input_tensors` for a single-step block: the shapes are ``module.dims_in``
    (forward) or ``module.output_dims(module.dims_in)`` (reverse), the reference tensor is
    :func:`module_reference` (none for parameter-free blocks), and ``floating`` defaults to
    whether the block has a floating-point tensor."""
    dims_in = module.dims_in  # type: ignore[attr-defined]
    shapes = module.output_dims(dims_in) if rev else dims_in  # type: ignore[operator]
    like = module_reference(module)
    if floating is None:
        floating = like is not None and like.is_floating_point()
    return check_input_tensors(type(module).__name__, x, shapes, like, floating, rev)
