"""Argument handling for `FlowDistribution`: data and condition tuples, calling the INN, bases."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..utils import normalise_log_det

__all__ = [
    "Shape",
    "Tensors",
    "base_context",
    "check_base",
    "check_count",
    "check_temperature",
    "condition_batch",
    "condition_list",
    "data_tuple",
    "input_shapes",
    "run_inn",
    "sampling_order",
    "standard_normal_log_prob",
    "tensor_options",
]

Shape = Tuple[int, ...]
Tensors = Union[Tensor, Sequence[Tensor]]

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    r"""Per-sample :math:`\log\mathcal N(z; 0, I) = -\tfrac12\|z\|^2 - \tfrac D2\ln 2\pi`."""
    d = math.prod(z.shape[1:])
    return -0.5 * (z * z).reshape(z.shape[0], -1).sum(dim=1) - 0.5 * d * LOG_2PI


def input_shapes(inn: nn.Module) -> List[Shape]:
    """The INN's input shape list ``dims_in``; ``TypeError`` for an object without one."""
    dims = getattr(inn, "dims_in", None)
    if not isinstance(inn, nn.Module) or dims is None:
        raise TypeError(
            f"FlowDistribution needs an invertible module with dims_in (a SequenceINN, GraphINN "
            f"or InvertibleModule), got {type(inn).__name__}."
        )
    return [tuple(int(d) for d in shape) for shape in dims]


def check_base(base: Any, shape: Shape, k: int) -> Any:
    """Validate one base distribution for output ``k`` of shape ``shape``; ``None`` is N(0, I).

    Raises:
        TypeError: no ``log_prob``/``sample`` methods.
        ValueError: its ``event_shape`` is not ``shape`` or its ``batch_shape`` is not ``()``.
    """
    if base is None:
        return None
    if not (callable(getattr(base, "log_prob", None)) and callable(getattr(base, "sample", None))):
        raise TypeError(
            f"FlowDistribution: base for output {k} must be a distribution with log_prob and "
            f"sample, got {type(base).__name__}."
        )
    event = tuple(getattr(base, "event_shape", shape))
    batch = tuple(getattr(base, "batch_shape", ()))
    if event != shape or batch != ():
        raise ValueError(
            f"FlowDistribution: base for output {k} has event_shape {event} and batch_shape "
            f"{batch}, but the INN's output {k} has shape {shape}: expected event_shape {shape} "
            f"and batch_shape () (wrap element-wise distributions in "
            f"torch.distributions.Independent(d, {len(shape)}))."
        )
    return base


def sampling_order(bases: List[Any]) -> List[int]:
    """Output indices in an order where every base comes after the output it depends on.

    A base with an int attribute ``source = j`` is conditioned on output ``j`` (e.g. Glow's
    learned prior); the others come first, in their order.

    Raises:
        ValueError: a ``source`` that is not another output's index, or a cycle of sources.
    """
    sources = [getattr(b, "source", None) for b in bases]
    for k, j in enumerate(sources):
        if j is not None and (not isinstance(j, int) or not 0 <= j < len(bases) or j == k):
            raise ValueError(
                f"FlowDistribution: base for output {k} is conditioned on output {j!r}, but it "
                f"must be the index of another of the {len(bases)} outputs."
            )
    order: List[int] = []
    while len(order) < len(bases):
        ready = [k for k, j in enumerate(sources) if k not in order and (j is None or j in order)]
        if not ready:
            raise ValueError(
                f"FlowDistribution: the bases' sources {sources} form a cycle; each output can "
                f"only depend on outputs that do not depend on it."
            )
        order += ready
    return order


def base_context(base: Any, k: int, zs: Sequence[Tensor], c: Optional[List[Any]]) -> Any:
    """What base ``k`` is conditioned on: output ``zs[base.source]``, condition
    ``c[base.cond]``, or ``None`` for an unconditional base.

    Raises:
        ValueError: the base needs a condition that was not given.
    """
    source, cond = getattr(base, "source", None), getattr(base, "cond", None)
    if source is not None:
        return zs[source]
    if cond is None:
        return None
    if c is None or not 0 <= cond < len(c):
        given = "no conditions" if c is None else f"{len(c)} condition(s)"
        raise ValueError(
            f"FlowDistribution: base for output {k} is conditioned on c[{cond}], but got {given}."
        )
    return c[cond]


def data_tuple(
    value: Tensors, shapes: List[Shape], what: str, fixed: bool = False
) -> Tuple[Tensor, ...]:
    """``value`` as one ``(B, *shape)`` tensor per entry of ``shapes``, all with the same ``B``.

    For an image shape ``(C, *S)`` only the rank and the channel count ``C`` are checked unless
    ``fixed``: a fully convolutional flow runs at any image size, and a block whose parameters
    fix the extents checks them itself. Vector shapes ``(d,)`` are always checked exactly.

    Raises:
        TypeError: not a tensor or a list/tuple of tensors.
        ValueError: wrong number of tensors, wrong shape or differing batch sizes.
    """
    values = (value,) if isinstance(value, Tensor) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, Tensor) for v in values):
        raise TypeError(
            f"FlowDistribution: {what} must be a tensor or a list/tuple of tensors, got "
            f"{type(value).__name__}."
        )
    if len(values) != len(shapes):
        raise ValueError(
            f"FlowDistribution: {what} needs {len(shapes)} tensor(s) of shapes (batch, *s) for "
            f"s in {shapes}, got {len(values)}."
        )
    for k, (v, shape) in enumerate(zip(values, shapes)):
        n = len(shape) if fixed or len(shape) < 2 else 1  # the leading dims that must match
        if v.dim() != len(shape) + 1 or tuple(v.shape[1 : n + 1]) != shape[:n]:
            extents = "" if n == len(shape) else " (any extents after the channel axis)"
            raise ValueError(
                f"FlowDistribution: {what}[{k}] must have shape (batch, *{shape}){extents}, got "
                f"{tuple(v.shape)}."
            )
    if len({v.shape[0] for v in values}) > 1:
        raise ValueError(
            f"FlowDistribution: the tensors of {what} have different batch sizes "
            f"{[v.shape[0] for v in values]}."
        )
    return tuple(values)


def condition_list(c: Any) -> Optional[List[Any]]:
    """Conditions as a list: ``None`` stays ``None``, a tensor becomes ``[c]``."""
    if c is None:
        return None
    if isinstance(c, Tensor):
        return [c]
    if not isinstance(c, (list, tuple)):
        raise TypeError(
            f"FlowDistribution: c must be a tensor, a list/tuple of conditions or None, got "
            f"{type(c).__name__}."
        )
    return list(c)


def condition_batch(c: Optional[List[Any]]) -> Optional[int]:
    """The batch size of the first tensor condition (``None`` if there is none)."""
    for value in c or ():
        if isinstance(value, Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return None


def check_count(n: Optional[int], c: Optional[List[Any]]) -> Tuple[int, Optional[List[Any]]]:
    """The number of samples and the conditions, with batch-1 condition tensors expanded to n.

    ``n=None`` takes the conditions' batch size.

    Raises:
        ValueError: ``n`` is not a positive integer, is missing without conditions, or differs
            from the conditions' batch size (other than 1).
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"FlowDistribution: n must be a positive integer or None, got {n!r}.")
    batch = condition_batch(c)
    if n is None:
        if batch is None:
            raise ValueError(
                "FlowDistribution: n (the number of samples) is required when no condition "
                "tensor gives the batch size."
            )
        return batch, c
    if batch is None or batch == n:
        return int(n), c
    if batch != 1:
        raise ValueError(
            f"FlowDistribution: n={n} samples requested, but the conditions have batch size "
            f"{batch}; pass n=None (inferred), n={batch}, or conditions with batch size 1."
        )
    expanded = [v.expand(int(n), *v.shape[1:]) if isinstance(v, Tensor) else v for v in c or ()]
    return int(n), expanded


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a float; ``ValueError`` unless a finite number >= 0."""
    ok = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if not ok or not math.isfinite(float(temperature)) or temperature < 0:
        raise ValueError(
            f"FlowDistribution: temperature must be a finite number >= 0, got {temperature!r}."
        )
    return float(temperature)


def tensor_options(inn: nn.Module, c: Optional[List[Any]]) -> Tuple[torch.dtype, torch.device]:
    """dtype and device for latents: the INN's first floating tensor, else a condition's."""
    tensors = [*inn.parameters(), *inn.buffers(), *(v for v in c or () if isinstance(v, Tensor))]
    for t in tensors:
        if t.is_floating_point():
            return t.dtype, t.device
    device = tensors[0].device if tensors else torch.device("cpu")
    return torch.get_default_dtype(), device


def run_inn(
    inn: nn.Module, values: Tuple[Tensor, ...], c: Optional[List[Any]], rev: bool, jac: bool
) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
    """Call ``inn`` with FrEIA's tuple convention; ``(outputs as tuple, (B,) log-det or None)``.

    A container with ``force_tuple_output=False`` gets and returns a bare tensor when there is
    one tensor; everything else gets a tuple. ``c`` is passed only when given.
    """
    tuples = bool(getattr(inn, "force_tuple_output", True)) or len(values) != 1
    kwargs = {} if c is None else {"c": c}
    out, log_det = inn(values if tuples else values[0], rev=rev, jac=jac, **kwargs)
    outs = (out,) if isinstance(out, Tensor) else tuple(out)
    return outs, normalise_log_det(log_det, outs[0], type(inn).__name__, jac)
