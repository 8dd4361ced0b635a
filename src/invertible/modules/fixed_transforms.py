"""Fixed (non-learned) transforms: channel permutation, fixed linear maps, the sigmoid.

The blocks keep FrEIA's ``forward`` signatures (``PermuteRandom`` and the linear maps take no
``c``), which mypy reports as incompatible overrides of ``InvertibleModule.forward``; hence the
``type: ignore[override]`` comments.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import (
    Dims,
    Outputs,
    ShapeList,
    Tensors,
    channel_input_shape,
    check_single_input,
    checked_seed,
    frozen_parameter,
    image_shape,
    require_no_conditions,
    same_shape,
    sum_nonbatch,
    vector_size,
    zero_log_det,
)
from ._permutation import permute_channels
from .base import InvertibleModule

__all__ = ["Fixed1x1Conv", "FixedLinearTransform", "InvertibleSigmoid", "PermuteRandom"]


#: Whether a seeded draw reseeds numpy's global generator as FrEIA does. Only the FrEIA import
#: alias (:mod:`invertible.compat`) switches it on, for code written against FrEIA that relies on
#: the side effect (e.g. drawing each block's seed, then its data, from ``np.random``); plain
#: ``invertible`` keeps it off, so that a seed never changes the user's later random draws.
reseed_global_numpy = False


def draw_permutation(n: int, seed: Optional[int]) -> np.ndarray:
    """``RandomState(seed).permutation(n)`` from a local generator, or numpy's global one if None.

    Both equal FrEIA's ``np.random.seed(seed); np.random.permutation(n)``, but a given seed never
    touches numpy's global state: reseeding it would silently change every later random draw
    of the user's program. With :data:`reseed_global_numpy` on, FrEIA's own call order is used.
    """
    if seed is None:
        return np.random.permutation(n)
    if reseed_global_numpy:
        np.random.seed(seed)
        return np.random.permutation(n)
    return np.random.RandomState(seed).permutation(n)


def checked_matrix(block: str, M: Any, size: int) -> Tensor:
    """``M`` as a floating ``(size, size)`` tensor that is invertible.

    Raises:
        ValueError: ``M`` is missing, has the wrong shape, or is singular.
    """
    if M is None:
        raise ValueError("Need to specify the M argument, the matrix to be multiplied.")
    M = torch.as_tensor(M).detach().clone()
    if not M.is_floating_point():
        M = M.to(torch.get_default_dtype())
    if tuple(M.shape) != (size, size):
        raise ValueError(
            f"{block}: M must be a square matrix of shape {(size, size)} matching the "
            f"{size} input channels, got shape {tuple(M.shape)}."
        )
    finite = bool(torch.isfinite(M).all())
    rank = int(torch.linalg.matrix_rank(M.double())) if finite else "undefined"
    if rank != size:
        raise ValueError(
            f"{block}: M of shape {tuple(M.shape)} is not invertible (it is singular or holds "
            f"non-finite values); its rank is {rank}."
        )
    return M


def transpose_inverse_log_det(M: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(Mᵀ, (Mᵀ)⁻¹, ln|det M|)`` computed in float64 and returned in ``M``'s dtype."""
    m64 = M.double()
    inverse = torch.linalg.inv(m64.t())
    log_det = torch.linalg.slogdet(m64)[1]
    return M.t().contiguous(), inverse.to(M.dtype), log_det.to(M.dtype)


class PermuteRandom(InvertibleModule):
    r"""A fixed random permutation of the channels (axis 1): :math:`y = x_{[\pi]}`.

    Works on any rank (vectors, images, ...). A permutation matrix has :math:`|\det| = 1`, so
    the log-det is 0. ``perm``/``perm_inv`` are int64 ``requires_grad=False`` parameters.

    Args:
        dims_in: one input shape, channels first.
        dims_c: must be empty (``forward`` takes no conditions).
        seed: draws ``np.random.RandomState(seed).permutation(C)`` from a local generator (the
            same permutation as FrEIA, without reseeding numpy's global generator); ``None``
            draws ``np.random.permutation(C)`` from numpy's global generator. Under the FrEIA
            import alias of :mod:`invertible.compat`, a seed also reseeds numpy's global
            generator, as FrEIA does.
    """

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, seed: Optional[int] = None
                 ) -> None:
        super().__init__(dims_in, dims_c)
        require_no_conditions("PermuteRandom", self.dims_c)
        self.in_channels = channel_input_shape("PermuteRandom", self.dims_in)[0]
        self.seed = checked_seed("PermuteRandom", seed)
        perm = torch.from_numpy(draw_permutation(self.in_channels, self.seed)).long()
        self.perm = frozen_parameter(perm)
        self.perm_inv = frozen_parameter(torch.argsort(perm))

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Gather the channels by ``perm`` (forward) or ``perm_inv`` (reverse)."""
        (x_in,), _ = self._checked(x, None, rev, floating=True)
        y = permute_channels(x_in, self.perm_inv if rev else self.perm)
        return [y], zero_log_det(y)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return same_shape("PermuteRandom", input_dims)


class FixedLinearTransform(InvertibleModule):
    r"""A fixed affine map of vectors: :math:`y = M x + b`, log-det :math:`\ln|\det M|`.

    Stored as FrEIA does: buffer ``M`` holds :math:`M^T` (rows are computed as
    :math:`x M^T + b`), ``M_inv`` holds :math:`(M^T)^{-1}`, ``b`` is ``(1, d)`` (0-dim zero when
    not given) and ``logDetM`` is :math:`\ln|\det M|`.

    Args:
        dims_in: one vector shape ``[(d,)]``.
        dims_c: must be empty.
        M: the invertible ``(d, d)`` matrix.
        b: optional offset with ``d`` elements.

    Raises:
        ValueError: missing, wrongly shaped or singular ``M``; bad ``b``; non-vector input.
    """

    M: Tensor
    M_inv: Tensor
    b: Tensor
    logDetM: Tensor  # noqa: N815 (FrEIA's state_dict key)

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, M: Any = None, b: Any = None
                 ) -> None:
        super().__init__(dims_in, dims_c)
        require_no_conditions("FixedLinearTransform", self.dims_c)
        size = vector_size("FixedLinearTransform", self.dims_in)
        matrix = checked_matrix("FixedLinearTransform", M, size)
        m_t, m_inv, log_det = transpose_inverse_log_det(matrix)
        self.register_buffer("M", m_t)
        self.register_buffer("M_inv", m_inv)
        self.register_buffer("b", self._offset(b, size, matrix.dtype))
        self.register_buffer("logDetM", log_det)

    @staticmethod
    def _offset(b: Any, d: int, dtype: torch.dtype) -> Tensor:
        """``b`` as ``(1, d)``, or the 0-dim ``tensor(0.)`` when ``None``."""
        if b is None:
            return torch.tensor(0.0, dtype=dtype)
        b = torch.as_tensor(b).detach().clone()
        b = b if b.is_floating_point() else b.to(dtype)
        if b.numel() != d or b.dim() > 2:
            raise ValueError(f"FixedLinearTransform: b must have shape ({d},), got {b.shape}.")
        return b.reshape(1, d)

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        """Accept PyPI FrEIA 0.2 checkpoints of a block built without ``b``: they have no ``b``
        key (``b`` was a plain float then); the block's own fixed offset is kept."""
        if prefix + "M" in state_dict and prefix + "b" not in state_dict:
            state_dict[prefix + "b"] = self.b
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Forward ``x @ Mᵀ + b``; reverse ``(y - b) @ (Mᵀ)⁻¹``."""
        (x_in,), _ = self._checked(x, None, rev)
        if rev:
            y = (x_in - self.b) @ self.M_inv
            return (y,), zero_log_det(y) - self.logDetM
        y = x_in @ self.M + self.b
        return (y,), zero_log_det(y) + self.logDetM

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return same_shape("FixedLinearTransform", input_dims)


class Fixed1x1Conv(InvertibleModule):
    r"""A fixed invertible 1x1 convolution of images: per pixel :math:`y = M^T x`.

    (FrEIA applies :math:`M^T`, not :math:`M`; kept so that FrEIA's checkpoints and numbers carry
    over.) The log-det is :math:`H W \ln|\det M|` for the ``H x W`` of each call: the block runs
    at any image size. State, as in FrEIA, is ``requires_grad=False`` parameters: ``M``
    (:math:`M^T` as ``(C, C, 1, 1)``), ``M_inv`` (:math:`(M^T)^{-1}`) and 0-dim ``logDetM``.

    Args:
        dims_in: one image shape ``[(C, H, W)]``.
        dims_c: must be empty.
        M: the invertible ``(C, C)`` matrix.

    Raises:
        ValueError: missing, wrongly shaped or singular ``M``; non-image input.
    """

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, M: Any = None) -> None:
        super().__init__(dims_in, dims_c)
        require_no_conditions("Fixed1x1Conv", self.dims_c)
        channels = image_shape("Fixed1x1Conv", self.dims_in)[0]
        m_t, m_inv, log_det = transpose_inverse_log_det(checked_matrix("Fixed1x1Conv", M, channels))
        self.M = frozen_parameter(m_t.reshape(channels, channels, 1, 1))
        self.M_inv = frozen_parameter(m_inv.reshape(channels, channels, 1, 1))
        self.logDetM = frozen_parameter(log_det)

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Forward ``conv2d(x, Mᵀ)``; reverse ``conv2d(y, (Mᵀ)⁻¹)``, at any image size."""
        (x_in,), _ = self._checked(x, None, rev)
        n_pix = x_in.shape[2] * x_in.shape[3]
        if rev:
            y = F.conv2d(x_in, self.M_inv)
            return (y,), zero_log_det(y) - self.logDetM * n_pix
        y = F.conv2d(x_in, self.M)
        return (y,), zero_log_det(y) + self.logDetM * n_pix

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged (images only)."""
        return [image_shape("Fixed1x1Conv", input_dims)]


def log_sigmoid_derivative(x: Tensor) -> Tensor:
    r"""Element-wise stable \ln\sigma'(x) = -softplus(-x) - softplus(x)."""
    return -F.softplus(-x) - F.softplus(x)


class InvertibleSigmoid(InvertibleModule):
    r"""The element-wise logistic sigmoid :math:`y = 1 / (1 + e^{-x})`.

    Reverse :math:`x = \ln(y / (1 - y))` (NaN outside :math:`(0, 1)`). Log-det
    :math:`\sum \ln\sigma'(x)` over all non-batch dims, with
    :math:`\ln\sigma'(x) = -\mathrm{softplus}(-x) - \mathrm{softplus}(x)`, evaluated at the
    forward input (in reverse: at the reconstructed input, negated). FrEIA summed over the
    channel axis only, overflowed for large inputs and returned no log-det with ``jac=False``.

    Args:
        dims_in: one input shape of any rank.
        **kwargs: passed to :class:`InvertibleModule` (e.g. ``dims_c``; conditions declared there
            are checked and otherwise ignored).
    """

    def __init__(self, dims_in: Dims, **kwargs: Any) -> None:
        super().__init__(dims_in, **kwargs)
        check_single_input("InvertibleSigmoid", self.dims_in)

    def forward(
        self, x_or_z: Tensors, c: Optional[Tensors] = None, rev: bool = False, jac: bool = True
    ) -> Outputs:
        """Sigmoid (forward) or logit (reverse); always ``((y,), log_det)``."""
        (x_in,), _ = self._checked(x_or_z, c, rev, floating=True)
        if rev:
            x = torch.logit(x_in)
            return (x,), -sum_nonbatch(log_sigmoid_derivative(x))
        x = x_in
        return (torch.sigmoid(x),), sum_nonbatch(log_sigmoid_derivative(x))

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return same_shape("InvertibleSigmoid", input_dims)
