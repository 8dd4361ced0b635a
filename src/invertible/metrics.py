r"""Likelihood metrics for flows: NLL, bits per dimension with dequantisation, AUROC.

Conventions (the normalisation that is easy to get wrong):

* ``log_prob`` is the per-sample log-density in **nats**, shape ``(batch,)``, summed over every
  non-batch dimension of every input of the network.
* ``n_dims`` is the number of scalars one sample has: the product of its shape, summed over all
  inputs (for ``(3, 32, 32)`` images, 3072).
* bits/dim :math:`= -\log p(x) / (D \ln 2)`, plus a dequantisation term for discrete data: if
  integer data :math:`k \in \{0, \dots, n_{bins}-1\}^D` were dequantised as
  :math:`x = w\,(k + u)/n_{bins} + b` with :math:`u \sim U[0, 1)^D` (``data_width`` :math:`w = 1`
  for data in :math:`[0, 1)`), the density of the dequantised *integers* is
  :math:`p(x)\,(w / n_{bins})^D`, so ``log_prob`` gains :math:`-\ln(n_{bins}/w)` per dimension
  and bits/dim gains :math:`\log_2(n_{bins}/w)` (8 for 256-level images in :math:`[0, 1)`). The
  result is an upper bound on the discrete model's code length, comparable to published values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "LN2",
    "bits_per_dim",
    "count_dims",
    "dequantize",
    "gaussian_bits_per_dim",
    "nll",
    "reduce_per_sample",
    "roc_auc",
]

#: :math:`\ln 2`, nats per bit.
LN2 = math.log(2.0)

_REDUCTIONS = ("mean", "sum", "none")


def count_dims(shapes: Union[Sequence[int], Sequence[Sequence[int]]]) -> int:
    """Scalars per sample: the product of one shape, or the sum of products over a shape list.

    Example: ``count_dims((3, 32, 32)) == 3072``, ``count_dims([(2, 4, 4), (8,)]) == 40``.

    Raises:
        ValueError: ints and shapes mixed in one list.
    """
    nested = [s for s in shapes if isinstance(s, Sequence)]
    flat = [int(d) for d in shapes if not isinstance(d, Sequence)]
    if nested and flat:
        raise ValueError(f"count_dims: expected one shape or a list of shapes, got {shapes!r}.")
    if nested:
        return sum(math.prod(int(d) for d in s) for s in nested)
    return math.prod(flat)


def reduce_per_sample(values: Tensor, reduction: str) -> Tensor:
    """Reduce a ``(batch,)`` tensor: ``"mean"`` (default everywhere), ``"sum"`` or ``"none"``."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
    if reduction == "mean":
        return values.mean()
    return values.sum() if reduction == "sum" else values


def nll(log_prob: Tensor, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood in nats per sample (summed over dims), reduced over the batch."""
    return reduce_per_sample(-log_prob, reduction)


def _check_positive_int(name: str, value: object) -> int:
    """``value`` as an int if it is a positive integer (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _dequantisation_nats(n_bins: Optional[int], data_width: float) -> float:
    r"""Nats per dimension added to the NLL: :math:`\ln(n_{bins} / w)`, or 0 without ``n_bins``."""
    if not (isinstance(data_width, (int, float)) and math.isfinite(data_width) and data_width > 0):
        raise ValueError(f"data_width must be a positive finite number, got {data_width!r}.")
    if n_bins is None:
        if data_width != 1.0:
            raise ValueError(
                f"data_width={data_width!r} only applies to discrete data: pass n_bins too."
            )
        return 0.0
    return math.log(_check_positive_int("n_bins", n_bins) / float(data_width))


def bits_per_dim(
    log_prob: Tensor,
    n_dims: int,
    n_bins: Optional[int] = None,
    data_width: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Bits per dimension :math:`-\log p(x) / (D \ln 2) + \log_2(n_{bins} / w)`.

    Args:
        log_prob: per-sample log-density in nats, ``(batch,)``, summed over all dims.
        n_dims: scalars per sample, ``D`` (see :func:`count_dims`).
        n_bins: levels of the discrete data (256 for 8-bit images); ``None`` for continuous data.
        data_width: width ``w`` of the interval the ``n_bins`` levels were scaled to before
            dequantisation: 1 for :math:`[0, 1)` or :math:`[-\tfrac12, \tfrac12)`, 2 for
            :math:`[-1, 1)`. Only with ``n_bins``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Raises:
        ValueError: ``n_dims``/``n_bins`` not positive integers, a bad ``data_width`` or
            ``reduction``.
    """
    dims = _check_positive_int("n_dims", n_dims)
    offset = _dequantisation_nats(n_bins, data_width)
    per_sample = (-log_prob / dims + offset) / LN2
    return reduce_per_sample(per_sample, reduction)


def gaussian_bits_per_dim(std: float = 1.0) -> float:
    r"""Differential entropy of :math:`\mathcal N(0, \sigma^2)` per dimension, in bits.

    :math:`\tfrac12\log_2(2\pi e\sigma^2)`, the expected bits/dim of a model that is exactly
    :math:`\mathcal N(0, \sigma^2 I)` on its own samples (2.047 for :math:`\sigma = 1`).
    """
    if not std > 0:
        raise ValueError(f"std must be positive, got {std!r}.")
    return 0.5 * math.log2(2.0 * math.pi * math.e * std**2)


def dequantize(
    k: Tensor,
    n_bins: int,
    data_width: float = 1.0,
    offset: float = 0.0,
    generator: Optional[torch.Generator] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""Uniform dequantisation :math:`x = w\,(k + u)/n_{bins} + b`, :math:`u \sim U[0, 1)`.

    The convention :func:`bits_per_dim` assumes for the same ``n_bins`` and ``data_width``.

    Args:
        k: integer levels in ``[0, n_bins)`` (any integer or float dtype).
        n_bins: number of levels.
        data_width: ``w``, the width of the target interval (1 gives :math:`[0, 1)`).
        offset: ``b``, its lower end (``-0.5`` gives :math:`[-\tfrac12, \tfrac12)`).
        generator: optional generator for ``u``.
        dtype: floating dtype of the result (default: ``k``'s if floating, else torch's default).
    """
    bins = _check_positive_int("n_bins", n_bins)
    if dtype is None:
        dtype = k.dtype if k.is_floating_point() else torch.get_default_dtype()
    u = torch.rand(k.shape, generator=generator, dtype=dtype, device=k.device)
    return data_width * (k.to(dtype) + u) / bins + offset


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the positives ``labels == 1`` (ties count 1/2).

    The Mann-Whitney statistic :math:`(R_+ - n_+(n_+ + 1)/2) / (n_+ n_-)` with average ranks
    :math:`R`. For anomaly detection, score = NLL and label 1 = anomalous.

    Raises:
        ValueError: shapes differ, or one class is empty.
    """
    s = np.asarray(scores.detach().cpu(), dtype=np.float64).reshape(-1)
    y = np.asarray(labels.detach().cpu()).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"roc_auc: {s.size} scores but {y.size} labels.")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes, got {n_pos} positives, {n_neg} negatives.")
    from scipy.stats import rankdata  # imported here: scipy.stats costs ~1 s at import time

    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
