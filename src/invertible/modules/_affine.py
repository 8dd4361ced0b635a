"""Pure kernels of the affine coupling family: clamps, split sizes, affine maps, global scales."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .._errors import InvertibleTypeError
from ._common import zero_log_det

__all__ = [
    "CLAMP_ACTIVATIONS",
    "GLOBAL_AFFINE_TYPES",
    "SCALED_CLAMPS",
    "ClampActivation",
    "ScaleActivation",
    "acc_dtype",
    "additive",
    "affine",
    "atan_clamp",
    "atan_scaled",
    "centre_channels",
    "clamped",
    "exp_scale",
    "identity",
    "legacy_soft_clamp",
    "logdet_sum",
    "resolve_clamp_activation",
    "resolve_global_affine",
    "sigmoid_clamp",
    "sigmoid_scale",
    "sigmoid_scaled",
    "soft_clamp",
    "softplus_scale",
    "split_lengths",
    "split_scale_shift",
    "tanh_clamp",
    "tanh_scaled",
    "warn_empty_half",
]

ClampActivation = Callable[[Tensor], Tensor]
ScaleActivation = Callable[[Tensor], Tensor]


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


def atan_scaled(u: Tensor, clamp: float) -> Tensor:
    """``clamp * atan_clamp(u)`` with the two constants folded into one multiplication."""
    return torch.atan(u) * (0.636 * clamp)


def tanh_scaled(u: Tensor, clamp: float) -> Tensor:
    """``clamp * tanh_clamp(u)``."""
    return torch.tanh(u) * clamp


def sigmoid_scaled(u: Tensor, clamp: float) -> Tensor:
    """``clamp * sigmoid_clamp(u)`` with the two constants folded into one multiplication."""
    return (torch.sigmoid(u) - 0.5) * (2.0 * clamp)


#: ``clamp * f(u)`` in fewer autograd ops, for the built-in clamp activations ``f``.
SCALED_CLAMPS: Dict[ClampActivation, Callable[[Tensor, float], Tensor]] = {
    atan_clamp: atan_scaled,
    tanh_clamp: tanh_scaled,
    sigmoid_clamp: sigmoid_scaled,
}

#: Clamp activations by the names ``clamp_activation`` accepts (exact, upper case as in FrEIA).
CLAMP_ACTIVATIONS: Dict[str, ClampActivation] = {
    "ATAN": atan_clamp,
    "TANH": tanh_clamp,
    "SIGMOID": sigmoid_clamp,
}


def clamped(f_clamp: ClampActivation, s_raw: Tensor, clamp: float) -> Tensor:
    """The clamped log-scale ``clamp * f_clamp(s_raw)`` (constants folded for built-ins)."""
    scaled = SCALED_CLAMPS.get(f_clamp)
    return clamp * f_clamp(s_raw) if scaled is None else scaled(s_raw, clamp)


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


def warn_empty_half(block: str, split_len: Union[float, int], len1: int, len2: int) -> None:
    """Warn that an unconditioned coupling with an empty half is a constant affine map.

    The spec keeps ``0 <= split_len <= C`` valid (C=1 must split 0 | 1), so this is a warning,
    not an error: one subnet sees no input and the block only learns its bias.
    """
    if 0 in (len1, len2):
        channels = len1 + len2
        empty = 1 if len1 == 0 else 2
        warnings.warn(
            f"{block}: split_len={split_len!r} leaves half {empty} empty ({len1} | {len2} of the "
            f"{channels} channels) and there are no conditions, so one subnet sees no input and "
            f"the block is a learned constant affine map; give each half at least one channel "
            f"(an int 0 < split_len < {channels}) or pass dims_c.",
            UserWarning,
            stacklevel=4,
        )


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype log-det sums accumulate in: float32 for 16-bit floats, else ``dtype`` itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def logdet_sum(s: Tensor, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """``(B,)`` sums of ``s`` over all non-batch dims, accumulated in :func:`acc_dtype`.

    Under ``torch.autocast`` a bf16/fp16 log-scale is summed in float32; the result is cast to
    ``out_dtype`` (the block output's dtype; default ``s.dtype``).
    """
    total = s.sum(dim=tuple(range(1, s.dim())), dtype=acc_dtype(s.dtype))
    out_dtype = out_dtype or s.dtype
    return total if total.dtype == out_dtype else total.to(out_dtype)


def affine(x: Tensor, s: Tensor, t: Tensor, rev: bool = False,
           log_det_dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
    r"""Element-wise affine map and its per-sample log-det.

    Forward: :math:`y = x \odot e^{s} + t`, :math:`\log|\det J| = \sum s`.
    Inverse (``rev=True``, ``x`` is then the output ``y``): :math:`x = (y - t) / e^{s}`,
    log-det :math:`-\sum s`. Sums run over all non-batch dims, giving ``(B,)`` in
    ``log_det_dtype`` (default: the output's dtype), accumulated in float32 at least (see
    :func:`logdet_sum`).
    """
    if rev:
        y = (x - t) / torch.exp(s)  # one op fewer than (x - t) * exp(-s)
        return y, -logdet_sum(s, log_det_dtype or y.dtype)
    y = torch.addcmul(t, x, torch.exp(s))
    return y, logdet_sum(s, log_det_dtype or y.dtype)


def additive(x: Tensor, t: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
    """Shift ``y = x + t`` (inverse ``x = y - t``); the log-det is ``(B,)`` zeros like ``x``."""
    y = x - t if rev else x + t
    return y, zero_log_det(y)


def split_scale_shift(a: Tensor, n: int) -> Tuple[Tensor, Tensor]:
    """Split a subnet output into the raw log-scale (first ``n`` channels) and the shift.

    One ``split_with_sizes`` (one autograd node whose backward is a cat) rather than two slices
    (whose backward zero-fills two full-size gradients and adds them).
    """
    s_raw, t = a.split_with_sizes([n, a.shape[1] - n], 1)
    return s_raw, t


def centre_channels(s: Tensor) -> Tensor:
    """Subtract the mean over the channel axis, separately per sample and spatial position.

    The centred log-scale sums to 0 at every position, so the affine map preserves volume (GIN).
    """
    return s - s.mean(dim=1, keepdim=True)


# --- AllInOneBlock: soft clamps of the log-scale, global affine activations ---------------------


def sigmoid_scale(a: Tensor) -> Tensor:
    """``10 * sigmoid(a - 2)``: global scale in (0, 10)."""
    return 10.0 * torch.sigmoid(a - 2.0)


def softplus_scale(a: Tensor) -> Tensor:
    """``0.1 * softplus(a, beta=0.5)`` (torch's, threshold 20) ``= 0.2 ln(1 + e^{a/2})``."""
    return 0.1 * F.softplus(a, beta=0.5)


def exp_scale(a: Tensor) -> Tensor:
    """``exp(a)``: global scale in (0, inf)."""
    return torch.exp(a)


def sigmoid_scale_init(init: float) -> float:
    """``g0 = 2 - ln(10/init - 1)``, so that ``sigmoid_scale(g0) = init`` (needs 0 < init < 10)."""
    return 2.0 - math.log(10.0 / init - 1.0)


def softplus_scale_init(init: float) -> float:
    """``g0 = 2 ln(exp(5 init) - 1)``, so that ``softplus_scale(g0) = init`` (needs init > 0).

    Evaluated as ``2 (x + ln(1 - e^{-x}))`` with ``x = 5 init``, which cannot overflow.
    """
    x = 5.0 * init
    return 2.0 * (x + math.log(-math.expm1(-x)))


def exp_scale_init(init: float) -> float:
    """``g0 = ln(init)``, so that ``exp_scale(g0) = init`` (needs init > 0)."""
    return math.log(init)


GlobalAffineEntry = Tuple[ScaleActivation, Callable[[float], float], Tuple[float, float]]

#: ``global_affine_type`` -> (activation Ψ, g0 as a function of init, valid open init range).
GLOBAL_AFFINE_TYPES: Dict[str, GlobalAffineEntry] = {
    "SIGMOID": (sigmoid_scale, sigmoid_scale_init, (0.0, 10.0)),
    "SOFTPLUS": (softplus_scale, softplus_scale_init, (0.0, math.inf)),
    "EXP": (exp_scale, exp_scale_init, (0.0, math.inf)),
}


def resolve_global_affine(kind: str, init: float) -> Tuple[ScaleActivation, float]:
    """Ψ for ``global_affine_type`` and the pre-activation ``g0`` (float64) with Ψ(g0) = init.

    Raises:
        ValueError: for an unknown type, or an init value Ψ cannot reach (FrEIA gave NaN).
    """
    if not isinstance(kind, str) or kind not in GLOBAL_AFFINE_TYPES:
        raise ValueError(
            f'Global affine activation must be "SIGMOID", "SOFTPLUS" or "EXP"; '
            f"AllInOneBlock got global_affine_type={kind!r}."
        )
    activation, g0_of, (low, high) = GLOBAL_AFFINE_TYPES[kind]
    init = float(init)
    if not low < init < high:
        raise ValueError(
            f"AllInOneBlock: global_affine_init must lie in ({low:g}, {high:g}) for "
            f"global_affine_type={kind!r}, got {init!r}."
        )
    return activation, g0_of(init)




def soft_clamp(a: Tensor, clamp: float) -> Tensor:
    """FrEIA HEAD's log-scale clamp ``κ tanh(a/κ)``: about ``a`` near 0, bounded by ``±κ``."""
    return clamp * torch.tanh(a / clamp)


def legacy_soft_clamp(a: Tensor, clamp: float) -> Tensor:
    """PyPI FrEIA 0.2's (and anomalib's) log-scale clamp ``κ tanh(a)``."""
    return clamp * torch.tanh(a)
