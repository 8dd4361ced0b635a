"""What both containers need around their blocks' calls: the log-det sum, autocast, compiling."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from ..modules.base import autocast_on

__all__ = ["autocast_state", "log_det_accumulator"]


def autocast_state(device_type: str) -> Tuple[bool, torch.dtype]:
    """Whether autocast is on for ``device_type`` and its lower-precision dtype."""
    if not autocast_on(device_type):
        return False, torch.float32
    try:
        return True, torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return True, (torch.get_autocast_cpu_dtype() if device_type == "cpu"
                      else torch.get_autocast_gpu_dtype())


def log_det_accumulator(like: Tensor) -> Tensor:
    """The ``(batch,)`` zeros a container adds its blocks' log-dets to.

    Its dtype is ``like``'s (a float64 flow sums in float64), promoted to at least float32 while
    ``torch.autocast`` is active on ``like``'s device, so that a bf16/fp16 forward sums its
    log-dets in float32. Each block's log-det is promoted when it is added.
    """
    dtype = like.dtype
    if autocast_on(like.device.type):
        dtype = torch.promote_types(dtype, torch.float32)
    return like.new_zeros(like.shape[0], dtype=dtype)
