"""Pure kernels of the affine coupling family: clamp activations, split sizes, affine maps."""

from __future__ import annotations

import numbers
from typing import Callable, Dict, Tuple, Union

import torch
from torch import Tensor

from .._errors import InvertibleTypeError
from ._common import sum_nonbatch, zero_log_det

__all__ = [
    "CLAMP_ACTIVATIONS",
    "ClampActivation",
    "additive",
    "affine",
    "atan_clamp",
    "centre_channels",
    "identity",
    "resolve_clamp_activation",
    "sigmoid_clamp",
    "split_lengths",
    "split_scale_shift",
    "tanh_clamp",
]

ClampActivation = Callable[[Tensor], Tensor]


def atan_clamp(u: Tensor) -> Tensor:
    """``0.636 * atan(u)``: a soft clamp to about (-1, 1) (FrEIA's literal 0.636, not 2/pi)."""
    return 0.636 * torch.atan(u)


def tanh_clamp(u: Tensor) -> Tensor:
    """``tanh(u)``: a soft clamp to (-1, 1)."""
    return torch.tanh(u)


def sigmoid_clamp(u: Tensor) -> Tensor:
    """``2 * (sigmoid(u) - 0.5)``: a soft clamp to (-1, 1)."""
    return 2.0 * (torch.sigmoid(u) - 0.5)


def identity(u: Tensor) -> Tensor:
    """The identity, the clamp activation of unclamped blocks (NICE, splines)."""
    return u


#: Clamp activations by the names ``clamp_activation`` accepts (exact, upper case as in FrEIA).
CLAMP_ACTIVATIONS: Dict[str, ClampActivation] = {
    "ATAN": atan_clamp,
    "TANH": tanh_clamp,
    "SIGMOID": sigmoid_clamp,
}


def resolve_clamp_activation(
    block: str, clamp_activation: Union[str, ClampActivation]
) -> ClampActivation:
    """Map ``"ATAN"``/``"TANH"``/``"SIGMOID"`` to its module-level function; keep a callable."""
    if isinstance(clamp_activation, str):
        if clamp_activation not in CLAMP_ACTIVATIONS:
            raise ValueError(
                f'{block}: Unknown clamp activation "{clamp_activation}"; expected one of '
                f"{sorted(CLAMP_ACTIVATIONS)} or a callable."
            )
        return CLAMP_ACTIVATIONS[clamp_activation]
    if not callable(clamp_activation):
        raise InvertibleTypeError(
            f"{block}: clamp_activation must be one of {sorted(CLAMP_ACTIVATIONS)} or a callable, "
            f"got {type(clamp_activation).__name__} {clamp_activation!r}."
        )
    return clamp_activation


def split_lengths(block: str, channels: int, split_len: Union[float, int]) -> Tuple[int, int]:
    """Channel counts ``(split_len1, split_len2)`` of the two halves.

    A float is a fraction in [0, 1] rounded with Python's ``round`` (half to even: C=3 and C=5
    give 2, C=7 gives 4); an int is the size of half 1 and must lie in [0, channels]. Either half
    may end up with 0 channels (e.g. C=1 gives ``(0, 1)``): that half is then empty.
    """
    if isinstance(split_len, bool) or not isinstance(split_len, numbers.Real):
        raise InvertibleTypeError(
            f"{block}: split_len must be a float in [0, 1] or an int in [0, {channels}], got "
            f"{type(split_len).__name__} {split_len!r}."
        )
    if isinstance(split_len, numbers.Integral):
        if not 0 <= split_len <= channels:
            raise ValueError(
                f"{block}: Int split_len must be in range 0 <= split_len <= channels = {channels}, "
                f"got {split_len}."
            )
        return int(split_len), channels - int(split_len)
    if not 0.0 <= split_len <= 1.0:
        raise ValueError(f"{block}: Float split_len must be in range [0, 1], got {split_len}.")
    first = round(float(channels * split_len))
    return first, channels - first


def affine(x: Tensor, s: Tensor, t: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
    r"""Element-wise affine map and its per-sample log-det.

    Forward: :math:`y = x \odot e^{s} + t`, :math:`\log|\det J| = \sum s`.
    Inverse (``rev=True``, ``x`` is then the output ``y``): :math:`x = (y - t) \odot e^{-s}`,
    log-det :math:`-\sum s`. Sums run over all non-batch dims, giving ``(B,)``.
    """
    if rev:
        return (x - t) * torch.exp(-s), -sum_nonbatch(s)
    return x * torch.exp(s) + t, sum_nonbatch(s)


def additive(x: Tensor, t: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
    """Shift ``y = x + t`` (inverse ``x = y - t``); the log-det is ``(B,)`` zeros like ``x``."""
    y = x - t if rev else x + t
    return y, zero_log_det(y)


def split_scale_shift(a: Tensor, n: int) -> Tuple[Tensor, Tensor]:
    """Split a subnet output into the raw log-scale (first ``n`` channels) and the shift."""
    return a[:, :n], a[:, n:]


def centre_channels(s: Tensor) -> Tensor:
    """Subtract the mean over the channel axis, separately per sample and spatial position.

    The centred log-scale sums to 0 at every position, so the affine map preserves volume (GIN).
    """
    return s - s.mean(dim=1, keepdim=True)
