"""Example inputs for export: the shapes a network declares, and examples checked against
them or made up from them (see :func:`invertible.export.to_onnx`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .modules.base import InvertibleModule
from .modules.inverse import Inverse
from .utils import output_dims_compatible

__all__ = ["MIN_EXAMPLE_BATCH", "Tensors", "batched", "check_initialised", "condition_shapes",
           "data_shapes", "example_tensors"]

Shape = Tuple[int, ...]
Tensors = Union[Tensor, Sequence[Tensor]]

#: Size given to a dynamic batch axis when the example batch is smaller (torch.export
#: specialises axes of size 0 and 1).
MIN_EXAMPLE_BATCH = 2


def _inner(inn: nn.Module) -> nn.Module:
    """The module under any ``Inverse`` wrappers."""
    while isinstance(inn, Inverse):
        inn = inn.module
    return inn


def data_shapes(inn: nn.Module, rev: bool) -> Optional[List[Shape]]:
    """Shapes the network reads in direction ``rev`` (``None`` if it does not say)."""
    if not isinstance(inn, InvertibleModule):
        return None
    try:
        return list(output_dims_compatible(inn)) if rev else list(inn.dims_in)
    except (NotImplementedError, TypeError, ValueError):
        return None


def condition_shapes(inn: nn.Module) -> Optional[List[Shape]]:
    """Shapes of the conditions the network takes (``None`` if they cannot be read off).

    A ``SequenceINN`` indexes one list by the ``cond`` given to ``append``: shape ``k`` is the
    ``dims_c`` of the first block reading ``c[k]``; an index no block reads has no shape.
    """
    inner = _inner(inn)
    if not isinstance(inner, InvertibleModule):
        return None
    modules, picks = getattr(inner, "module_list", None), getattr(inner, "conditions", None)
    if not (isinstance(modules, nn.ModuleList) and isinstance(picks, list)):
        return list(inner.dims_c)
    found: Dict[int, Shape] = {}
    for module, k in zip(modules, picks):
        if k is not None and k not in found:
            shapes = condition_shapes(module)  # a nested container declares no dims_c
            if shapes:
                found[k] = tuple(shapes[0])
    needed = {k for k in picks if k is not None}
    if not needed:
        return []
    if set(found) != set(range(max(needed) + 1)):
        return None
    return [found[k] for k in range(len(found))]


def _as_tensors(value: object, what: str) -> Tuple[Tensor, ...]:
    """A tensor becomes ``(tensor,)``; a list or tuple of tensors a tuple; else ``TypeError``."""
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, Tensor) for v in value):
        return tuple(value)
    raise TypeError(
        f"to_onnx: {what} must be a tensor or a list/tuple of tensors, got "
        f"{type(value).__name__}."
    )


def _check_shapes(what: str, tensors: Tuple[Tensor, ...], shapes: List[Shape]) -> None:
    """``ValueError`` unless there is one tensor ``(batch, *shape)`` per shape."""
    got = [tuple(t.shape) for t in tensors]
    if len(tensors) != len(shapes) or any(
        t.dim() != len(s) + 1 or tuple(t.shape[1:]) != s for t, s in zip(tensors, shapes)
    ):
        expected = ", ".join(f"(batch, *{s})" for s in shapes) or "none"
        raise ValueError(f"to_onnx: {what} must be {len(shapes)} tensor(s) of shape "
                         f"{expected}; got shapes {got}.")


def _made_up(shapes: Optional[List[Shape]], batch: int, inn: nn.Module, what: str,
             hint: str) -> Tuple[Tensor, ...]:
    """Standard normal examples of ``shapes`` in the dtype/device of ``inn``'s first floating
    parameter or buffer; ``ValueError`` if the shapes are unknown."""
    if shapes is None:
        raise ValueError(
            f"to_onnx: {what} are needed: {type(inn).__name__} does not say {hint}; pass "
            f"{what}=[tensor, ...] with the batch axis first."
        )
    floats = [t for t in [*inn.parameters(), *inn.buffers()] if t.is_floating_point()]
    dtype = floats[0].dtype if floats else torch.get_default_dtype()
    device = floats[0].device if floats else None
    return tuple(torch.randn(batch, *s, dtype=dtype, device=device) for s in shapes)


def example_tensors(
    inn: nn.Module, rev: bool, example_inputs: Optional[Tensors], conditions: Optional[Tensors]
) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
    """The data and condition tensors to trace with: the given ones, checked, or made up.

    Raises:
        TypeError: an argument is not a tensor or a list/tuple of tensors.
        ValueError: wrong numbers, shapes or batch sizes, or examples that are needed but
            cannot be made up because the network does not declare its shapes.
    """
    shapes, cond_shapes = data_shapes(inn, rev), condition_shapes(inn)
    if example_inputs is None:
        xs = _made_up(shapes, MIN_EXAMPLE_BATCH, inn, "example_inputs", "its input shapes")
    else:
        xs = _as_tensors(example_inputs, "example_inputs")
        if shapes is not None:
            _check_shapes("example_inputs", xs, shapes)
    if not xs:
        raise ValueError("to_onnx: example_inputs is empty; the network needs an input tensor.")
    if conditions is None and not isinstance(_inner(inn), InvertibleModule):
        cs: Tuple[Tensor, ...] = ()  # a plain module: it declares no conditions
    elif conditions is None:
        cs = _made_up(cond_shapes, xs[0].shape[0], inn, "conditions", "its condition shapes")
    else:
        cs = _as_tensors(conditions, "conditions")
        if cond_shapes is not None:
            _check_shapes("conditions", cs, cond_shapes)
    batches = sorted({int(t.shape[0]) for t in xs + cs if t.dim() > 0})
    if len(batches) != 1 or batches[0] == 0:
        raise ValueError(
            f"to_onnx: every example input and condition needs the same non-zero batch size "
            f"(axis 0); got batch sizes {batches}."
        )
    return xs, cs


def batched(tensors: Tuple[Tensor, ...], batch: int) -> Tuple[Tensor, ...]:
    """Each tensor with its batch axis repeated up to ``batch`` rows (examples of size 1)."""
    if not tensors or tensors[0].shape[0] >= batch:
        return tensors
    return tuple(t.expand(batch, *t.shape[1:]).contiguous() for t in tensors)


def check_initialised(inn: nn.Module) -> None:
    """``ValueError`` if a submodule with an ``is_initialized`` flag (ActNorm) is not set.

    Data-dependent initialisation on made-up example inputs would silently export garbage.
    """
    for name, module in inn.named_modules():
        flag = getattr(module, "is_initialized", None)
        if isinstance(flag, Tensor) and flag.numel() == 1 and not bool(flag):
            raise ValueError(
                f"to_onnx: {type(module).__name__} at {name or '<root>'!r} is not initialised; "
                f"initialise it on real data (e.g. one forward pass or .initialize(batch)) "
                f"before exporting."
            )
