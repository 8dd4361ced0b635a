"""Pure kernels of the affine couplings: clamp activations, the affine map, global scales."""

from __future__ import annotations

import math
from typing import Callable, Dict, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .._errors import InvertibleTypeError

__all__ = ["CLAMP_ACTIVATIONS", "GLOBAL_AFFINE_TYPES", "ClampActivation", "acc_dtype", "affine",
           "atan_clamp", "centre_channels", "dense_rows", "exp_scale", "identity",
           "legacy_soft_clamp", "resolve_clamp_activation", "resolve_global_affine",
           "sigmoid_clamp", "sigmoid_scale", "soft_clamp", "softplus_scale", "tanh_clamp"]

ClampActivation = Callable[[Tensor], Tensor]

#: Rows shorter than this are copied before a transcendental element-wise op (see
#: :func:`dense_rows`).
SHORT_ROW = 64


def dense_rows(u: Tensor) -> Tensor:
    """``u`` itself, or a contiguous copy when it is a batch of short strided rows.

    A vector coupling's raw log-scale is a column slice of its subnet's output: ``B`` rows of
    ``n`` values each, ``2n`` apart. torch's CPU kernels for atan, tanh, exp and sigmoid pay
    about 30 ns per row on such a slice, whatever ``n``: for ``(1024, 32)`` atan takes 31 us
    strided and 16 us copied then computed (exp 30 us against 10 us). From ``n`` = 64 on the copy
    stops paying. Image slices (long runs of ``n * H * W`` values) and rows whose values are not
    adjacent (an autoregressive block's interleaved parameters) are fast as they are. Tensors
    off the CPU are never copied: the slow path was measured on the CPU only.
    """
    if (u.is_cpu and u.dim() == 2 and u.stride(1) == 1 and u.shape[1] < SHORT_ROW
            and not u.is_contiguous()):
        return u.contiguous()
    return u


def atan_clamp(u: Tensor, clamp: float = 1.0) -> Tensor:
    """``clamp * 0.636 * atan(u)``: a soft clamp to about (-clamp, clamp) (FrEIA's literal 0.636,
    not 2/pi). The built-in clamps take ``clamp`` themselves, so that a coupling multiplies once."""
    return torch.atan(dense_rows(u)) * (0.636 * clamp)


def tanh_clamp(u: Tensor, clamp: float = 1.0) -> Tensor:
    """``clamp * tanh(u)``: a soft clamp to (-clamp, clamp)."""
    return torch.tanh(dense_rows(u)) * clamp


def sigmoid_clamp(u: Tensor, clamp: float = 1.0) -> Tensor:
    """``clamp * 2 (sigmoid(u) - 0.5)``: a soft clamp to (-clamp, clamp)."""
    return (torch.sigmoid(dense_rows(u)) - 0.5) * (2.0 * clamp)


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


def soft_clamp(a: Tensor, clamp: float, scale: float = 1.0) -> Tensor:
    """FrEIA HEAD's log-scale clamp ``κ tanh(λa/κ)`` of ``λa``: about ``λa`` near 0, bounded by
    ``±κ`` (``λ = scale`` folds AllInOneBlock's factor 0.1 into one multiplication)."""
    return torch.tanh(a * (scale / clamp)) * clamp


def legacy_soft_clamp(a: Tensor, clamp: float, scale: float = 1.0) -> Tensor:
    """PyPI FrEIA 0.2's (and anomalib's) log-scale clamp ``κ tanh(λa)`` of ``λa``."""
    return torch.tanh(a * scale) * clamp


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype log-det sums accumulate in: float32 for 16-bit floats (a bf16 sum over thousands
    of elements loses the log-det's leading digits), else ``dtype`` itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def affine(x: Tensor, s: Tensor, t: Tensor, rev: bool, t_scale: float = 1.0
           ) -> Tuple[Tensor, Tensor]:
    r"""The element-wise affine map :math:`y = x \odot e^{s} + a t` and its log-derivative ``s``.

    ``a = t_scale`` lets a caller whose shift is a scaled subnet output pass the raw output: the
    inverse :math:`(x - a t) / e^{s}` (``x`` is then the output) takes the factor in its
    subtraction, one pass over the data fewer. The inverse divides by :math:`e^{s}`, one op
    fewer than multiplying by :math:`e^{-s}`. The second value is always the forward map's
    element-wise :math:`\log|dy/dx| = s`; summing and the sign of the reverse direction are the
    caller's (see :class:`~invertible.modules.CouplingBlock`).
    """
    if rev:
        return torch.sub(x, t, alpha=t_scale) / torch.exp(s), s
    return torch.addcmul(t if t_scale == 1.0 else t * t_scale, x, torch.exp(s)), s


def centre_channels(s: Tensor) -> Tensor:
    """Subtract the mean over the channel axis, separately per sample and spatial position.

    The centred log-scale sums to 0 at every position, so the affine map preserves volume (GIN).
    """
    return s - s.mean(dim=1, keepdim=True)


# --- AllInOneBlock's global affine map: activations Ψ and their inverses at init --------------


def sigmoid_scale(a: Tensor) -> Tensor:
    """``10 * sigmoid(a - 2)``: global scale in (0, 10)."""
    return 10.0 * torch.sigmoid(a - 2.0)


def softplus_scale(a: Tensor) -> Tensor:
    """``0.1 * softplus(a, beta=0.5)`` (torch's, threshold 20) ``= 0.2 ln(1 + e^{a/2})``."""
    return 0.1 * F.softplus(a, beta=0.5)


def exp_scale(a: Tensor) -> Tensor:
    """``exp(a)``: global scale in (0, inf)."""
    return torch.exp(a)


def _sigmoid_init(init: float) -> float:
    """``2 - ln(10/init - 1)``, the inverse of :func:`sigmoid_scale`."""
    return 2.0 - math.log(10.0 / init - 1.0)


def _softplus_init(init: float) -> float:
    """``2 ln(exp(5 init) - 1)`` as ``2 (x + ln(1 - e^{-x}))``, ``x = 5 init``: no overflow."""
    x = 5.0 * init
    return 2.0 * (x + math.log(-math.expm1(-x)))


#: ``global_affine_type`` -> (activation Ψ, the pre-activation g0 with Ψ(g0) = init, valid open
#: range of init).
GLOBAL_AFFINE_TYPES: Dict[str, Tuple[ClampActivation, Callable[[float], float],
                                     Tuple[float, float]]] = {
    "SIGMOID": (sigmoid_scale, _sigmoid_init, (0.0, 10.0)),
    "SOFTPLUS": (softplus_scale, _softplus_init, (0.0, math.inf)),
    "EXP": (exp_scale, math.log, (0.0, math.inf)),
}


def resolve_global_affine(kind: str, init: float) -> Tuple[ClampActivation, float]:
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
