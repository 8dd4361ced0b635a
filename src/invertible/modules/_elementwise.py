"""Element-wise kernels: log-slopes, log-scale maps, ActNorm's statistics, map and old keys."""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from ._common import sum_nonbatch

__all__ = ["actnorm_map", "channel_mean_std", "channel_param_shape", "convert_old_actnorm_keys",
           "distributed_channel_mean_std", "distributed_world_size", "reduce_dims", "scale_by_log",
           "symmetric_log_slope", "two_sided_log_slope"]


def channel_param_shape(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """``(1, C, 1, ..., 1)``: one value per channel, broadcast over batch and spatial dims."""
    return (1, shape[0]) + (1,) * (len(shape) - 1)


def reduce_dims(ndim: int) -> List[int]:
    """The batch axis and every spatial axis of a ``ndim``-D tensor (all but the channel axis)."""
    return [0, *range(2, ndim)]


def symmetric_log_slope(x: Tensor, alpha: Tensor) -> Tensor:
    """``alpha * sign(x)``: log-slope ``+alpha`` for positive inputs, ``-alpha`` for negative."""
    return alpha * torch.sign(x)


def two_sided_log_slope(x: Tensor, alpha_pos: Tensor, alpha_neg: Tensor) -> Tensor:
    """``a+ + (a- - a+)(1 - sign x)/2``: ``a+`` for x > 0, ``a-`` for x < 0, the mean at 0."""
    return alpha_pos + 0.5 * (alpha_neg - alpha_pos) * (1 - torch.sign(x))


def scale_by_log(x: Tensor, log_scale: Tensor, rev: bool) -> Tuple[Tensor, Tensor]:
    """``y = x * exp(±log_scale)`` (minus in reverse) and its per-sample log-det ``Σ ±log_scale``.

    ``log_scale`` broadcasts against ``x``; the log-det sums it over every non-batch element.
    """
    ls = -log_scale if rev else log_scale
    y = x * torch.exp(ls)
    return y, sum_nonbatch(ls.expand_as(x))


def channel_mean_std(batch: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and unbiased standard deviation over batch and spatial axes (keepdim).

    This is the only statistic ActNorm's data-dependent initialisation needs; across
    ``torch.distributed`` ranks it uses :func:`distributed_channel_mean_std` instead.
    """
    dims = reduce_dims(batch.dim())
    return batch.mean(dim=dims, keepdim=True), batch.std(dim=dims, keepdim=True)


def distributed_world_size(group: Optional[Any] = None) -> int:
    """Ranks in ``group`` (``None``: the default group); 1 if ``torch.distributed`` is off."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return int(dist.get_world_size(group))


def _all_reduce_sum(t: Tensor, group: Optional[Any]) -> Tensor:
    """Sum ``t`` over all ranks of ``group`` in place (a collective: every rank must call it)."""
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def distributed_channel_mean_std(
    batch: Tensor, group: Optional[Any] = None
) -> Tuple[Tensor, Tensor]:
    r"""Per-channel mean and unbiased std of the union of every rank's ``batch`` (keepdim).

    Two all-reduces (sums), so ranks may hold different batch sizes: first
    :math:`(n_r, \sum x)` gives the global count n and mean :math:`\mu`, then
    :math:`\sum (x - \mu)^2` gives :math:`s^2 = \frac{1}{n-1}\sum (x - \mu)^2` (the two-pass
    formula, numerically stable). Accumulates in float64 (float32 on MPS). Every rank gets the
    same result; a global count of 1 gives a NaN std. A collective: all ranks must call it.
    """
    dims = reduce_dims(batch.dim())
    acc = torch.float32 if batch.device.type == "mps" else torch.float64
    values = batch.to(acc)
    count = values.new_full((1,), float(batch.numel() // max(batch.shape[1], 1)))
    sums = _all_reduce_sum(torch.cat([values.sum(dim=dims).reshape(-1), count]), group)
    n = sums[-1]
    mean = (sums[:-1] / n).reshape((1, -1) + (1,) * (batch.dim() - 2))
    squares = _all_reduce_sum(((values - mean) ** 2).sum(dim=dims).reshape(-1), group)
    std = torch.sqrt(squares / (n - 1)).reshape(mean.shape)
    return mean.to(batch.dtype), std.to(batch.dtype)


def actnorm_map(
    x: Tensor, log_scale: Tensor, loc: Tensor, n_pix: int, rev: bool
) -> Tuple[Tensor, Tensor]:
    r"""ActNorm: forward ``z = (x - loc)/e^{log_scale}``, reverse ``x = e^{log_scale} z + loc``.

    Returns the output and the ``(B,)`` log-det, :math:`\mp n_{pix} \sum_c \text{log\_scale}_c`.
    """
    scale = torch.exp(log_scale)
    log_det = log_scale.sum() * n_pix
    if rev:
        out = scale * x + loc
    else:
        out = (x - loc) / scale
        log_det = -log_det
    return out, out.new_zeros(out.shape[0]) + log_det


def convert_old_actnorm_keys(
    state_dict: Dict[str, Any], prefix: str, shape: torch.Size, strict: bool
) -> None:
    """Rewrite PyPI-0.2 ActNorm keys ``scale``/``bias`` (``z = x e^scale + bias``) in place.

    The new map is ``z = (x - loc) e^{-log_scale}``, so ``log_scale = -scale`` and
    ``loc = -e^{-scale} bias``; the result counts as initialised. Warns when ``strict``.
    """
    old_scale, old_bias = prefix + "scale", prefix + "bias"
    if old_scale not in state_dict or old_bias not in state_dict:
        return
    if prefix + "log_scale" in state_dict or prefix + "loc" in state_dict:
        return
    if strict:
        warnings.warn(
            f"ActNorm ({prefix or 'top level'}): the state_dict uses the old parameter names "
            "'scale' and 'bias'; they were renamed to 'log_scale' and 'loc' (with "
            "'is_initialized'), and the dict is being converted.",
            DeprecationWarning,
            stacklevel=3,
        )
    scale, bias = state_dict.pop(old_scale), state_dict.pop(old_bias)
    if scale.numel() == shape.numel():
        scale, bias = scale.reshape(shape), bias.reshape(shape)
    state_dict[prefix + "log_scale"] = -scale
    state_dict[prefix + "loc"] = -torch.exp(-scale) * bias
    state_dict[prefix + "is_initialized"] = torch.tensor(True)
