"""Pure kernels of the i-ResNet block: fixed-point inverse, log-det power series, spectral norms.

References: Behrmann, Grathwohl, Chen, Duvenaud and Jacobsen, "Invertible Residual Networks",
ICML 2019.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._errors import InvertibleAssertionError
from ._common import Shape, sum_nonbatch

__all__ = ["LAYER_KINDS", "Layer", "LayerKind", "WeightOp", "check_iresnet_args", "conv_norm_bound",
           "dense_norm_bound", "fixed_point_inverse", "interleave_elu", "layer_norm_bounds",
           "power_iteration_norm", "power_series_log_det", "weights_key"]

#: ``op(x, weight)``: a layer's linear map (or its adjoint) applied with the given weight.
WeightOp = Callable[[Tensor, Tensor], Tensor]
#: ``bound(weight, spatial) -> 0-d tensor``: an upper bound of a layer's operator norm.
NormBound = Callable[[Tensor, Shape], Tensor]
#: A linear layer of the residual: dense for vectors, a 3x3 convolution for images.
Layer = Union[nn.Linear, nn.Conv2d]


def fixed_point_inverse(residual: nn.Module, y: Tensor, iterations: int) -> Tensor:
    """Solve ``x + g(x) = y`` by ``x <- y - g(x)`` from ``x = y`` without gradients, then take one
    step with gradients: ``y - g(x.detach())`` (FrEIA's recipe; exact when g is contractive)."""
    with torch.no_grad():
        x = y
        for _ in range(iterations):
            x = y - residual(x)
    return y - residual(x.detach())


def power_series_log_det(
    residual: nn.Module, x: Tensor, terms: int, samples: int, create_graph: bool
) -> Tensor:
    r"""Hutchinson estimate of :math:`\ln\det(I + J_g(x)) = \sum_{k\ge1} (-1)^{k+1} tr(J_g^k)/k`.

    The series is truncated after ``terms`` terms; each trace is
    :math:`\mathbb{E}[v^\top J_g^k v]` over Rademacher ``v = sign(randn_like(x))`` (one draw per
    sample, in order), averaged over ``samples``. The samples are evaluated as one batch.
    ``x`` must require grad. Returns ``(B,)``.
    """
    noise = torch.stack([torch.sign(torch.randn_like(x)) for _ in range(samples)])
    xs = x.unsqueeze(0).expand_as(noise).reshape(-1, *x.shape[1:])
    v0 = noise.reshape_as(xs)
    gx = residual(xs)
    v, total = v0, xs.new_zeros(xs.shape[0])
    for k in range(1, terms + 1):
        v = torch.autograd.grad(gx, xs, v, retain_graph=True, create_graph=create_graph)[0]
        total = total + ((-1) ** (k + 1) / k) * sum_nonbatch(v * v0)
    return total.reshape(samples, -1).mean(dim=0)


def _per_sample_norm(x: Tensor) -> Tensor:
    """Euclidean norm of each sample: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).norm(dim=1)


def power_iteration_norm(
    weight: Tensor, apply: WeightOp, adjoint: WeightOp, spatial: Shape, iterations: int,
    batch: int,
) -> Tensor:
    """Spectral-norm estimate of ``apply(., weight)`` from ``batch`` random starts (0-d tensor).

    ``iterations`` steps ``x <- adjoint(apply(x))`` (renormalised per sample, which changes
    nothing but the rounding), then the largest ``|W x| / |x|`` over the batch.
    """
    x = torch.randn(batch, weight.shape[1], *spatial, dtype=weight.dtype, device=weight.device)
    tiny = torch.finfo(weight.dtype).tiny
    view = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(iterations):
        x = adjoint(apply(x, weight), weight)
        x = x / _per_sample_norm(x).clamp_min(tiny).reshape(view)
    return (_per_sample_norm(apply(x, weight)) / _per_sample_norm(x).clamp_min(tiny)).max()


def _dense_adjoint(y: Tensor, weight: Tensor) -> Tensor:
    """``y W``: the adjoint of ``F.linear(x, W) = x Wᵀ``."""
    return F.linear(y, weight.t())


def dense_norm_bound(weight: Tensor, spatial: Shape) -> Tensor:
    """Exact spectral norm of a dense layer's weight."""
    return torch.linalg.matrix_norm(weight, ord=2)


def conv_norm_bound(weight: Tensor, spatial: Shape) -> Tensor:
    """Upper bound of a padded stride-1 convolution's operator norm on ``spatial`` inputs.

    The padded convolution is a crop of a circular one on the padded grid, whose norm is the
    largest singular value of the kernel's 2-D DFT over all frequencies.
    """
    grid = [s + k - 1 for s, k in zip(spatial, weight.shape[2:])]
    freq = torch.fft.fft2(weight, s=grid)
    return torch.linalg.matrix_norm(freq.permute(2, 3, 0, 1), ord=2).max()


def _dense_layer(c_in: int, c_out: int) -> Layer:
    """``nn.Linear(c_in, c_out)`` with torch's default initialisation."""
    return nn.Linear(c_in, c_out)


def _conv_layer(c_in: int, c_out: int) -> Layer:
    """A padded 3x3 ``nn.Conv2d(c_in, c_out)`` with torch's default initialisation."""
    return nn.Conv2d(c_in, c_out, 3, padding=1)


#: (layer constructor, ``W x``, ``Wᵀ y`` (unpadded for convolutions), operator-norm bound).
LayerKind = Tuple[Callable[[int, int], Layer], WeightOp, WeightOp, NormBound]

#: Input rank -> the layers of the residual for that rank: vectors and images.
LAYER_KINDS: Dict[int, LayerKind] = {
    1: (_dense_layer, F.linear, _dense_adjoint, dense_norm_bound),
    3: (_conv_layer, F.conv2d, F.conv_transpose2d, conv_norm_bound),
}


def check_iresnet_args(shape: Shape, hutchinson_samples: int, spectral_norm_max: float) -> None:
    """IResNetLayer's argument checks (``AssertionError`` + ``ValueError`` where FrEIA asserts)."""
    if len(shape) not in LAYER_KINDS:
        raise ValueError(f"IResNetLayer works on vectors (C,) or images (C, H, W), got {shape}.")
    if not 0 < spectral_norm_max <= 1:
        raise InvertibleAssertionError(
            f"IResNetLayer: spectral_norm_max must be in (0, 1], got {spectral_norm_max}."
        )
    if hutchinson_samples < 1:
        raise ValueError(f"IResNetLayer: hutchinson_samples must be >= 1: {hutchinson_samples}.")


def interleave_elu(layers: Sequence[nn.Module]) -> List[nn.Module]:
    """``[l0, ELU, l1, ELU, ..., ln]``."""
    modules: List[nn.Module] = []
    for layer in layers:
        modules += [layer, nn.ELU()]
    return modules[:-1]


def _svd_ready(weight: Tensor) -> Tensor:
    """``weight`` detached, in at least float32 (SVD and FFT need it)."""
    weight = weight.detach()
    return weight.float() if weight.element_size() < 4 else weight


def layer_norm_bounds(layers: Sequence[Layer], bound: NormBound, spatial: Shape) -> List[float]:
    """Upper bounds of each layer's operator norm (their product bounds Lip(g))."""
    with torch.no_grad():
        return [float(bound(_svd_ready(layer.weight), spatial)) for layer in layers]


#: Identifies the current values of some weights: (storage, version, dtype) per weight.
WeightsKey = Tuple[Tuple[int, int, torch.dtype], ...]


def weights_key(layers: Sequence[Layer]) -> Optional[WeightsKey]:
    """``(data_ptr, _version, dtype)`` of each layer's weight, or ``None`` if not tracked.

    Plain ints that change whenever a weight is replaced (``.to()``, ``.double()``) or modified
    in place by an autograd-visible op (optimiser steps, ``copy_``, ``mul_`` under
    ``no_grad``). Inference-mode tensors track no version: ``None`` means "unknown".
    """
    try:
        return tuple((m.weight.data_ptr(), m.weight._version, m.weight.dtype) for m in layers)
    except RuntimeError:
        return None
