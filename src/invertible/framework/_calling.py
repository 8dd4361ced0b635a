"""How containers call a module (FrEIA's calling convention) and normalise what it returns."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..modules.base import InvertibleModule

__all__ = ["autocast_state", "call_module", "log_det_accumulator", "normalise_log_det"]


def _autocast_enabled_by_device(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` for torch versions before 2.4."""
    if device_type == "cpu":
        return torch.is_autocast_cpu_enabled()
    return torch.is_autocast_enabled()


def _autocast_dtype_by_device(device_type: str) -> torch.dtype:
    """``torch.get_autocast_dtype(device_type)`` for torch versions before 2.4."""
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype()
    return torch.get_autocast_gpu_dtype()


try:  # torch >= 2.4 takes the device type; resolved once, so a call costs one function call
    torch.is_autocast_enabled("cpu")
    _autocast_enabled = torch.is_autocast_enabled
    _autocast_dtype = torch.get_autocast_dtype
except (TypeError, AttributeError):  # pragma: no cover - old torch
    _autocast_enabled = _autocast_enabled_by_device
    _autocast_dtype = _autocast_dtype_by_device


def log_det_accumulator(like: Tensor) -> Tensor:
    """The ``(batch,)`` zeros a container adds its blocks' log-dets to.

    Its dtype is ``like``'s (D3), promoted to at least float32 while ``torch.autocast`` is active
    on ``like``'s device, so that a bf16/fp16 forward sums its log-dets in float32 (a float64
    input keeps float64). Each block's log-det is promoted when it is added.
    """
    dtype = like.dtype
    if _autocast_on(like.device.type):
        dtype = torch.promote_types(dtype, torch.float32)
    return like.new_zeros(like.shape[0], dtype=dtype)


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``False`` for types it does not know)."""
    try:
        return bool(_autocast_enabled(device_type))
    except RuntimeError:  # e.g. "meta": no autocast dispatch key
        return False


def autocast_state(device_type: str) -> Tuple[bool, torch.dtype]:
    """Whether autocast is on for ``device_type`` and its lower-precision dtype."""
    if not _autocast_on(device_type):
        return False, torch.float32
    return True, _autocast_dtype(device_type)


def call_module(
    module: InvertibleModule,
    x: Tuple[Tensor, ...],
    c: Optional[Sequence[Tensor]],
    rev: bool,
    jac: bool,
) -> object:
    """Call ``module`` the way FrEIA's frameworks do.

    Data go in positionally; ``rev``, ``jac`` and ``c`` by keyword; ``c`` is passed only when the
    module is conditioned (``c`` not ``None``), because many modules have no ``c`` parameter.
    """
    if c is None:
        return module(x, rev=rev, jac=jac)
    return module(x, c=c, rev=rev, jac=jac)


def normalise_log_det(log_det: object, like: Tensor, who: str, jac: bool) -> Optional[Tensor]:
    """Turn any log-det a module may return into a ``(batch,)`` tensor like ``like``.

    A ``(B,)`` tensor is kept; Python and numpy scalars, 0-dim tensors and tensors whose first
    dimension is not ``B`` are broadcast to every sample (anomalib's CS-Flow returns a summed
    scalar and relies on this); ``None`` stays ``None`` (no contribution).

    Raises:
        ValueError: for anything else, naming ``who``.
    """
    if log_det is None:
        return None
    batch = like.shape[0]
    if isinstance(log_det, Tensor):
        if torch.jit.is_tracing():  # sizes are traced tensors; broadcasting gives the same result
            return like.new_zeros(batch) + log_det
        if log_det.dim() >= 1 and log_det.shape[0] == batch:
            return log_det
        return like.new_zeros(batch) + log_det
    if isinstance(log_det, (numbers.Real, np.number)) and not isinstance(log_det, bool):
        return like.new_zeros(batch) + float(log_det)
    kind = "Jacobian" if jac else "neither None nor a Jacobian"
    raise ValueError(
        f"{who} returned {'a non-tensor as ' + kind if jac else kind}: {type(log_det).__name__} "
        f"{log_det!r}; expected a (batch,) tensor or a scalar."
    )
