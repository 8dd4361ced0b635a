"""User-style invertible blocks for the `invertible check` tests: correct ones, one broken."""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from invertible.framework import SequenceINN
from invertible.modules.base import InvertibleModule

__all__ = ["LearnedScale", "Scale2", "WrongLogDet", "make_scale_flow"]


class Scale2(InvertibleModule):
    """FrEIA's example user block: ``y = 2x``, no ``c`` parameter, a Python float log-det."""

    def __init__(self, dims_in: Any, dims_c: Optional[Any] = None) -> None:
        super().__init__(dims_in, dims_c)

    def forward(
        self, x: Sequence[Tensor], rev: bool = False, jac: bool = True
    ) -> Tuple[Tuple[Tensor], float]:
        """Multiply by 2 (forward) or 1/2 (reverse)."""
        factor = 0.5 if rev else 2.0
        log_det = (-1 if rev else 1) * x[0][0].numel() * math.log(2.0)
        return (x[0] * factor,), log_det

    @staticmethod
    def output_dims(input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        """Shapes are unchanged."""
        return input_dims


class LearnedScale(InvertibleModule):
    r"""``y = x · exp(s)`` with a learned vector ``s``; log-det ``Σ s`` (correct)."""

    def __init__(self, dims_in: Any, dims_c: Optional[Any] = None) -> None:
        super().__init__(dims_in, dims_c)
        self.s = nn.Parameter(0.1 * torch.randn(*self.dims_in[0]))

    def _log_det(self, x: Tensor) -> Tensor:
        return self.s.sum().expand(x.shape[0])

    def forward(
        self, x: Sequence[Tensor], c: Any = None, rev: bool = False, jac: bool = True
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Scale by ``exp(±s)``."""
        sign = -1.0 if rev else 1.0
        return (x[0] * torch.exp(sign * self.s),), sign * self._log_det(x[0])

    def output_dims(self, input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        """Shapes are unchanged."""
        return input_dims


class WrongLogDet(LearnedScale):
    """A typical bug: the log-det averages ``s`` instead of summing it (correct only for D=1)."""

    def _log_det(self, x: Tensor) -> Tensor:
        return self.s.mean().expand(x.shape[0])


def make_scale_flow() -> SequenceINN:
    """A factory target: a ``SequenceINN(3)`` of two ``LearnedScale`` blocks and a ``Scale2``."""
    flow = SequenceINN(3)
    flow.append(LearnedScale)
    flow.append(Scale2)
    flow.append(LearnedScale)
    return flow
