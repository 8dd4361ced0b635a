"""The standard normal distribution over a fixed event shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Tuple, Union

import torch
from torch.distributions import Independent, Normal

__all__ = ["StandardNormalDistribution"]


def _event_shape(event_shape: Tuple[Union[int, Sequence[int]], ...]) -> Tuple[int, ...]:
    """The event shape as int tuple, from ``(2, 3)`` or from a single shape ``((2, 3),)``.

    Raises:
        TypeError: a shape mixed with ints, or several shapes.
    """
    first = event_shape[0] if len(event_shape) == 1 else None
    if isinstance(first, Sequence):
        return tuple(int(d) for d in first)
    ints = [d for d in event_shape if not isinstance(d, Sequence)]
    if len(ints) != len(event_shape):
        raise TypeError(
            f"StandardNormalDistribution: expected the event shape as ints or one shape tuple, "
            f"got {event_shape!r}."
        )
    return tuple(int(d) for d in ints)


class StandardNormalDistribution(Independent):
    r"""The standard normal :math:`\mathcal N(0, I)` with event shape ``event_shape``.

    An ``Independent`` over ``Normal(zeros(event_shape), ones(event_shape))`` with all dims
    reinterpreted as event dims: ``batch_shape == ()``, ``sample((n,))`` has shape
    ``(n, *event_shape)`` and ``log_prob`` sums over the event dims, e.g.
    :math:`\log p(0) = -\tfrac{D}{2}\ln 2\pi` for ``D`` elements.

    Args:
        *event_shape: the event shape as ints (a single shape tuple is accepted too).
        device: device of the location and scale tensors.
        dtype: dtype of the location and scale tensors (default: torch's default dtype).
        validate_args: argument and sample validation of torch.distributions.
    """

    def __init__(
        self,
        *event_shape: Union[int, Sequence[int]],
        device: Optional[Union[str, torch.device]] = None,
        dtype: Optional[torch.dtype] = None,
        validate_args: Optional[bool] = True,
    ) -> None:
        shape = _event_shape(event_shape)
        loc = torch.tensor(0.0, device=device, dtype=dtype).repeat(shape)
        scale = torch.tensor(1.0, device=device, dtype=dtype).repeat(shape)
        super().__init__(
            Normal(loc=loc, scale=scale, validate_args=validate_args),
            reinterpreted_batch_ndims=len(shape),
            validate_args=validate_args,
        )
