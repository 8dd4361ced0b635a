"""Orthogonal maps of vectors: a learned rotation with scaling, and products of reflections.

``OrthogonalTransform`` keeps FrEIA's ``forward(x, rev=False, jac=True)`` without ``c``, which
mypy reports as an incompatible override of ``InvertibleModule.forward``; hence the
``type: ignore[override]``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ._common import (
    Dims,
    Outputs,
    ShapeList,
    Tensors,
    frozen_parameter,
    is_int,
    n_elements,
    require_no_conditions,
    vector_size,
    zero_log_det,
)
from ._permutation import householder_product
from .base import InvertibleModule

__all__ = ["HouseholderPerm", "OrthogonalTransform", "correct_weights", "orth_correction"]


# --- kernels ---------------------------------------------------------------------------------


def orth_correction(R: Tensor) -> Tensor:
    r"""Re-orthonormalise the rows of ``R`` **in place** by classical Gram-Schmidt; returns ``R``.

    :math:`r_0 \leftarrow r_0/|r_0|`; for :math:`i \ge 1`:
    :math:`r_i \leftarrow r_i - \sum_{j<i} (r_j \cdot r_i)\, r_j`, then :math:`r_i/|r_i|`.
    Runs under ``no_grad`` (it edits values, it is not part of a differentiable map).
    """
    with torch.no_grad():
        R[0] /= torch.linalg.vector_norm(R[0])
        for i in range(1, R.shape[0]):
            R[i] -= (R[:i] @ R[i]) @ R[:i]
            R[i] /= torch.linalg.vector_norm(R[i])
    return R


def correct_weights(module: OrthogonalTransform, grad_in: Any = None, grad_out: Any = None) -> None:
    """Backward hook of `OrthogonalTransform`: count passes, re-orthonormalise when due.

    Increments ``module.back_counter``; once it exceeds ``module.correction_interval`` the
    counter restarts at ``np.random.randint(0, correction_interval) // 4`` (numpy's global
    generator, as in FrEIA) and the rows of ``module.weights.data`` are re-orthonormalised in
    place. ``.data`` is edited so that autograd's saved tensors stay valid. The gradients are
    not changed.
    """
    module.back_counter += 1
    if module.back_counter > module.correction_interval:
        module.back_counter = int(np.random.randint(0, module.correction_interval)) // 4
        orth_correction(module.weights.data)


def _fast_h(V: Tensor, stride: int = 2) -> Tensor:
    r"""The product :math:`H(v_0) H(v_1) \cdots H(v_{d-1})` of Householder reflections.

    :math:`H(v) = I - 2 v v^T / |v|^2`. ``V`` has shape ``(..., d, w)`` (row k is :math:`v_k`,
    leading dims are batch dims); the result is ``(..., w, w)``: :func:`householder_product`
    from the identity, one rank-one update per reflection, ``O(d w^2)`` per matrix.

    Args:
        V: the reflection vectors, at least 2-D.
        stride: accepted for FrEIA's signature (its blocked algorithm's block size); any value
            gives the same product, and ``d < stride`` is allowed.
    """
    if V.dim() < 2:
        raise ValueError(f"_fast_h needs reflection vectors of shape (..., d, w), got {V.shape}.")
    width = V.shape[-1]
    identity = torch.eye(width, dtype=V.dtype, device=V.device).expand(*V.shape[:-2], width, width)
    return householder_product(identity, V)


def atan_log_scale(scaling: Tensor, clamp: float) -> Tensor:
    """``clamp * 0.636 * atan(scaling / clamp)``: FrEIA's soft clamp of the log-scale."""
    return clamp * 0.636 * torch.atan(scaling / clamp)


def rotate(x: Tensor, W: Tensor, rev: bool) -> Tensor:
    """``x @ W`` (``x @ Wᵀ`` when ``rev``) with one ``W`` for all, or one per sample (a
    conditional ``HouseholderPerm``; FrEIA's ``mm`` crashed on such a batch of matrices)."""
    matrix = W.transpose(-1, -2) if rev else W
    return torch.matmul(x.unsqueeze(-2), matrix).squeeze(-2)


# --- OrthogonalTransform ---------------------------------------------------------------------


class OrthogonalTransform(InvertibleModule):
    r"""A learned orthogonal map with bias and a clamped scaling, for vectors.

    Forward :math:`z = (x W + b) \odot e^{s}`, reverse :math:`x = (z \odot e^{-s} - b) W^T`,
    with :math:`s = \text{clamp} \cdot 0.636 \cdot \operatorname{atan}(\text{scaling}/\text{clamp})`
    and log-det :math:`\pm\sum_j s_j` (the bias is added *before* the scaling). The log-det and
    the reverse assume :math:`W` orthogonal, so :math:`W` is kept orthogonal by a **training
    side effect**: every backward pass through the output calls :func:`correct_weights`, which
    counts the pass and, once the count exceeds ``correction_interval``, re-orthonormalises the
    rows of ``weights`` in place (:func:`orth_correction`) and restarts the count at
    ``np.random.randint(0, correction_interval) // 4`` (numpy's global RNG).
    Forward calls never change the weights (in train or eval mode, with or without grad); only
    a backward pass does, whatever the mode, as in FrEIA.

    ``exact_inverse`` is ``False``: the reverse assumes orthogonal weights, which training moves
    away from between the corrections (and a correction runs in a backward hook), so a
    memory-efficient container cannot recompute the input from the output.

    Initialisation, drawn in FrEIA's order so that a seed gives FrEIA's weights:
    ``back_counter = np.random.randint(0, interval) // 2``;
    ``W`` = left singular vectors of :math:`A + A^T`, :math:`A` = ``randn(w, w)``;
    ``bias = 0.05 randn(1, w)``; ``scaling = 0.02 randn(1, w)``.

    Args:
        dims_in: one vector shape ``[(w,)]``.
        dims_c: must be empty (``forward`` takes no conditions).
        correction_interval: backward passes between re-orthonormalisations (positive int).
        clamp: bound of the soft clamp of the log-scale.

    Raises:
        ValueError: not a single vector input, conditions given, or a bad ``correction_interval``.
    """

    exact_inverse = False

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, correction_interval: int = 256,
                 clamp: float = 5.0) -> None:
        super().__init__(dims_in, dims_c)
        width = vector_size("OrthogonalTransform", self.dims_in)
        require_no_conditions("OrthogonalTransform", self.dims_c)
        if not is_int(correction_interval) or correction_interval < 1:
            raise ValueError(
                f"OrthogonalTransform: correction_interval must be a positive int, got "
                f"{correction_interval!r}."
            )
        self.width = width
        self.clamp = clamp
        self.correction_interval = int(correction_interval)
        self.back_counter = int(np.random.randint(0, self.correction_interval)) // 2
        A = torch.randn(width, width)
        self.weights = nn.Parameter(torch.linalg.svd(A + A.t())[0])
        self.bias = nn.Parameter(0.05 * torch.randn(1, width))
        self.scaling = nn.Parameter(0.02 * torch.randn(1, width))

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Rotate, shift and scale (or undo it when ``rev``); log-det always returned, ``(B,)``."""
        (x_in,), _ = self._checked(x, None, rev)
        log_scale = atan_log_scale(self.scaling, self.clamp)
        if rev:
            y = (x_in * torch.exp(-log_scale) - self.bias) @ self.weights.t()
            log_det = -log_scale.sum()
        else:
            y = (x_in @ self.weights + self.bias) * torch.exp(log_scale)
            log_det = log_scale.sum()
        if y.requires_grad:
            y.register_hook(self._after_backward)
        return [y], zero_log_det(y) + log_det

    def _after_backward(self, grad: Tensor) -> None:
        """Tensor hook on the output: runs :func:`correct_weights` once per backward pass."""
        correct_weights(self, (grad,), (grad,))

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged (one vector input only)."""
        return [(vector_size("OrthogonalTransform", input_dims),)]


# --- HouseholderPerm -------------------------------------------------------------------------


class HouseholderPerm(InvertibleModule):
    r"""An orthogonal map of vectors, a product of ``K`` Householder reflections.

    :math:`W = H(v_0) \cdots H(v_{K-1})`, :math:`H(v) = I - 2 v v^T/|v|^2`; forward
    :math:`y = x W`, reverse :math:`x = y W^T`; log-det 0, returned as a ``(B,)`` tensor.
    Three modes:

    * learned (default): ``Vs`` (``(K, w)`` parameter, row k is :math:`v_k`), initialised to
      ``(eye(w, K) + 0.1 randn(w, K))ᵀ``;
    * ``fixed=True``: ``Vs = randn(w, K)ᵀ`` and ``W`` is computed once and stored as a frozen
      parameter under both ``W`` and ``weight`` (the same tensor). As in FrEIA, ``Vs`` stays a
      trainable parameter that is not used;
    * conditional (one condition with ``w·K`` elements): sample b uses the reflections
      ``c[0][b].reshape(w, K)ᵀ``, i.e. its own :math:`W_b` (FrEIA crashed here). No parameters;
      the condition must have the input's dtype and device.

    Args:
        dims_in: one vector shape ``[(w,)]``.
        dims_c: ``None``/empty, or exactly one condition shape with ``w·n_reflections`` elements.
        n_reflections: number of reflections ``K >= 1`` (FrEIA required ``K >= 2``, so its default
            1 always raised; a single reflection is accepted here).
        fixed: freeze a random product at construction (not with a condition).

    References:
        Tomczak & Welling, "Improving Variational Auto-Encoders using Householder Flow", 2016.

    Raises:
        ValueError: for every bad argument (``n_reflections < 1`` or not an int, a non-vector
            input, more than one condition, a condition of the wrong size, ``fixed`` with a
            condition).
    """

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, n_reflections: int = 1,
                 fixed: bool = False) -> None:
        super().__init__(dims_in, dims_c)
        if not is_int(n_reflections) or n_reflections < 1:
            raise ValueError(
                f"HouseholderPerm needs at least 1 householder reflection (an int), got "
                f"n_reflections={n_reflections!r}."
            )
        self.width = vector_size("HouseholderPerm", self.dims_in)
        self.n_reflections = int(n_reflections)
        self.fixed = bool(fixed)
        self.conditional = len(self.dims_c) > 0
        if self.conditional:
            self._check_condition()
        else:
            self._init_reflections()

    def _init_reflections(self) -> None:
        """``Vs`` (and, when ``fixed``, ``W``/``weight``), drawn as FrEIA draws them."""
        shape = (self.width, self.n_reflections)
        # randn(w, K) is the same draw as FrEIA's randn_like(eye(w, K)) of the learned mode
        init = torch.randn(shape) if self.fixed else torch.eye(*shape) + 0.1 * torch.randn(shape)
        self.Vs = nn.Parameter(init.t().contiguous())
        if self.fixed:
            with torch.no_grad():
                self.W = frozen_parameter(_fast_h(self.Vs))
            self.weight = self.W  # FrEIA registers the same tensor under both names

    def _check_condition(self) -> None:
        """One condition with ``width * n_reflections`` elements, and not ``fixed``."""
        if len(self.dims_c) != 1:
            raise ValueError(f"HouseholderPerm takes exactly one condition (the reflection "
                             f"vectors), got dims_c={self.dims_c}.")
        if self.fixed:
            raise ValueError("HouseholderPerm cannot be fixed and conditional at the same time.")
        expected = self.width * self.n_reflections
        if n_elements(self.dims_c[0]) != expected:
            raise ValueError(
                f"HouseholderPerm: the condition must hold width * n_reflections = "
                f"{self.width} * {self.n_reflections} = {expected} elements per sample, got "
                f"shape {self.dims_c[0]} ({n_elements(self.dims_c[0])} elements)."
            )

    def forward(
        self, x: Tensors, c: Optional[Tensors] = None, rev: bool = False, jac: bool = True
    ) -> Outputs:
        """``y = x W`` (``x Wᵀ`` when ``rev``), per sample in conditional mode; log-det 0."""
        (x_in,), cs = self._checked(x, c, rev, floating=True)
        y = rotate(x_in, self._matrix(cs), rev)
        return [y], zero_log_det(y)

    def _matrix(self, cs: Tensors) -> Tensor:
        """``W``: stored (``fixed``), from ``Vs``, or per sample from the condition reshaped to
        ``(B, w, K)`` and transposed (``_checked`` made it of the input's dtype and device)."""
        if not self.conditional:
            return self.W if self.fixed else _fast_h(self.Vs)
        return _fast_h(cs[0].reshape(-1, self.width, self.n_reflections).transpose(-1, -2))

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged (one vector input only)."""
        return [(vector_size("HouseholderPerm", input_dims),)]
