"""Validation of what a node's module returns: ``(outputs, log_det)`` with the right counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Tuple

from torch import Tensor

from .._calling import normalise_log_det

__all__ = ["NodeResult", "checked_result"]

#: What a node returns: its output values and its ``(batch,)`` log-det (``None``: none).
NodeResult = Tuple[Tuple[Any, ...], Optional[Tensor]]


def checked_result(
    who: str, result: object, expected: int, rev: bool, jac: bool, x_or_z: Sequence[Tensor]
) -> NodeResult:
    """Check a module's return value and normalise its log-det (spec §4.3).

    Args:
        who: the module's description for messages.
        result: what the module returned.
        expected: the number of outputs it must return (the node's inputs when ``rev``).
        rev: the direction that was run.
        jac: whether a log-det was asked for.
        x_or_z: the module's inputs (their first tensor shapes the log-det without outputs).

    Raises:
        ValueError: not a pair ``(outputs, log_det)``, bare-tensor outputs, a wrong number of
            outputs, no log-det with ``jac=True``, or a log-det of an unusable type.
    """
    if isinstance(result, Tensor) or not isinstance(result, (tuple, list)):
        raise ValueError(
            f"{who} returned {type(result).__name__} instead of a tuple (outputs, log_det)."
        )
    if len(result) != 2:
        raise ValueError(f"{who} returned {len(result)} values instead of (outputs, log_det).")
    outputs, log_det = result
    if isinstance(outputs, Tensor) or not isinstance(outputs, (tuple, list)):
        raise ValueError(
            f"{who} returned {type(outputs).__name__} as outputs instead of a tuple or list "
            f"of tensors."
        )
    if len(outputs) != expected:
        raise ValueError(
            f"{who} returned {len(outputs)} {'inputs' if rev else 'outputs'}, expected "
            f"{expected}."
        )
    if jac and log_det is None:
        raise ValueError(f"{who} returned a non-tensor as Jacobian: None (with jac=True).")
    like = outputs[0] if len(outputs) else x_or_z[0]
    return tuple(outputs), normalise_log_det(log_det, like, who, jac)
