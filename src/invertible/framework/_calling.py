"""How containers call a module (FrEIA's calling convention) and normalise what it returns."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..modules.base import InvertibleModule

__all__ = ["call_module", "normalise_log_det"]


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
