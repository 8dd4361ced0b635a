"""Glow's invertible 1x1 convolution with learned weights, for vectors and images of any size."""

from __future__ import annotations

from math import prod
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ._common import (
    Dims,
    Outputs,
    ShapeList,
    Tensors,
    channel_input_shape,
    checked_seed,
    require_no_conditions,
    same_shape,
    zero_log_det,
)
from ._permutation import channel_matrix_function, matrix_kernel
from .base import InvertibleModule

__all__ = ["Learned1x1Conv", "random_rotation_matrix"]


def random_rotation_matrix(n: int, seed: Optional[int] = None) -> Tensor:
    """A uniformly random ``(n, n)`` float64 rotation (det +1).

    The Q factor of a standard normal matrix, its columns' signs fixed by R's diagonal (Haar
    distributed on the orthogonal group), the first column negated if the determinant is -1.
    Drawn from a local ``torch.Generator`` seeded with ``seed``; ``None`` draws from torch's
    global generator.
    """
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
    if float(torch.linalg.det(q)) < 0:
        q[:, 0] = -q[:, 0]
    return q


class Learned1x1Conv(InvertibleModule):
    r"""An invertible 1x1 convolution with a learned ``(C, C)`` channel matrix :math:`W`.

    Every pixel's channel vector is multiplied by :math:`W`: :math:`y_{:, p} = W x_{:, p}` for
    vectors ``(C,)`` and for images ``(C, *S)`` with up to 3 spatial axes, at any extents ``S``
    (only the channel count and the rank are checked). The log-det is
    :math:`n_{\text{pix}} \ln|\det W|`, :math:`n_{\text{pix}} = \prod S` of each call (1 for
    vectors).

    * ``lu=True`` (Glow's LU parametrisation):
      :math:`W = P L \bigl(U + \operatorname{diag}(\text{sign} \cdot e^{\log s})\bigr)` with
      :math:`P` a fixed permutation matrix (buffer ``perm``), :math:`L` unit lower triangular
      (its strictly lower part is the parameter ``lower``), :math:`U` strictly upper triangular
      (``upper``), ``sign`` a fixed buffer and ``log_s`` learned; so
      :math:`\ln|\det W| = \sum \log s`, and the inverse
      :math:`W^{-1} = (U + \operatorname{diag})^{-1} L^{-1} P^T` is computed with two
      triangular solves per call, no general matrix inverse. Entries of ``lower``/``upper``
      outside their triangle are not used (their gradient is zero).
    * ``lu=False``: ``weight`` is :math:`W` itself; the log-det uses ``slogdet`` and the
      inverse is ``torch.linalg.inv(W)`` of the ``(C, C)`` matrix once per call (one
      factorisation of a small matrix, then one convolution over the data; ``solve`` against
      the data would factorise the same matrix and then run a slower batched solve).

    Either way the ``(C, C)`` matrix (or its inverse) is formed once per call and applied with
    one ``F.linear``/``F.conv{1,2,3}d``. :math:`W` starts as a uniformly random rotation
    (:func:`random_rotation_matrix`), LU-decomposed with ``torch.linalg.lu`` when ``lu``, so
    the block starts orthogonal with log-det 0.

    Args:
        dims_in: one input shape ``[(C,)]`` or ``[(C, *S)]`` with at most 3 spatial axes.
        dims_c: must be ``None`` or empty.
        lu: use the LU parametrisation (default) instead of a full weight.
        seed: draws the initial rotation from a local generator with this seed (torch's global
            generator is not touched); ``None`` draws from torch's global generator.

    References:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018.

    Raises:
        ValueError: conditions declared, not exactly one input, no channel axis, or more than
            3 spatial axes.
    """

    exact_inverse = True
    perm: Tensor
    sign: Tensor

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, lu: bool = True,
                 seed: Optional[int] = None) -> None:
        super().__init__(dims_in, dims_c)
        require_no_conditions("Learned1x1Conv", self.dims_c)
        shape = channel_input_shape("Learned1x1Conv", self.dims_in)
        self.channels, self.input_rank = shape[0], len(shape) - 1
        channel_matrix_function(self.input_rank, "Learned1x1Conv")  # refuses ranks above 4
        self.lu = bool(lu)
        self.seed = checked_seed("Learned1x1Conv", seed)
        dtype = torch.get_default_dtype()
        rotation = random_rotation_matrix(self.channels, self.seed)
        if not self.lu:
            self.weight = nn.Parameter(rotation.to(dtype))
            return
        p, lower, upper = torch.linalg.lu(rotation)
        diagonal = torch.diagonal(upper)
        self.register_buffer("perm", p.to(dtype))
        self.register_buffer("sign", torch.sign(diagonal).to(dtype))
        self.lower = nn.Parameter(torch.tril(lower, -1).to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_s = nn.Parameter(torch.log(diagonal.abs()).to(dtype))

    def _factors(self) -> Tuple[Tensor, Tensor]:
        """``(L, U + diag(sign * exp(log_s)))``: the unit lower and the upper triangular factor."""
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        upper = torch.triu(self.upper, 1) + torch.diag_embed(self.sign * torch.exp(self.log_s))
        return torch.tril(self.lower, -1) + eye, upper

    def matrix(self) -> Tensor:
        """The current ``(C, C)`` matrix :math:`W`."""
        if not self.lu:
            return self.weight
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    def _inverse_matrix(self) -> Tensor:
        """:math:`W^{-1}`: two triangular solves against :math:`P^T` (``lu``), else ``inv``."""
        if not self.lu:
            return torch.linalg.inv(self.weight)
        lower, upper = self._factors()
        solved = torch.linalg.solve_triangular(lower, self.perm.t(), upper=False,
                                               unitriangular=True)
        return torch.linalg.solve_triangular(upper, solved, upper=True)

    def log_abs_det(self) -> Tensor:
        r"""The 0-dim :math:`\ln|\det W|` per pixel."""
        if not self.lu:
            return torch.linalg.slogdet(self.weight)[1]
        return self.log_s.sum()

    def forward(self, x_or_z: Tensors, c: Optional[Tensors] = None, rev: bool = False,
                jac: bool = True) -> Outputs:
        """``W x`` per pixel (``W⁻¹ z`` when ``rev``); log-det ``±n_pix ln|det W|``, ``(B,)``."""
        (x,), _ = self._checked(x_or_z, c, rev)
        matrix = self._inverse_matrix() if rev else self.matrix()
        y = channel_matrix_function(self.input_rank)(x, matrix_kernel(matrix, self.input_rank))
        log_det = self.log_abs_det() * prod(x.shape[2:])
        return (y,), zero_log_det(y) + (-log_det if rev else log_det)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return same_shape("Learned1x1Conv", input_dims)
