"""Reshaping blocks: 2x2 space-to-depth (i-RevNet, Haar wavelets), `Flatten` and `Reshape`.

All six keep FrEIA's ``forward(x, c=None, jac=True, rev=False)`` (``jac`` before ``rev``), which
mypy reports as an incompatible override of ``InvertibleModule.forward``; hence the
``type: ignore[override]`` comments.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Optional

from torch import Tensor

from ._common import (
    Dims,
    Outputs,
    Shape,
    ShapeList,
    Tensors,
    check_single_input,
    frozen_parameter,
    n_elements,
    zero_log_det,
)
from ._reshape_kernels import (
    check_even_extents,
    check_image_shape,
    haar_kernel,
    haar_wavelet_permutation,
    irevnet_kernel,
    squeeze_grouped,
    squeeze_interleaved,
    unsqueeze_grouped,
    unsqueeze_interleaved,
)
from .base import InvertibleModule

__all__ = ["Flatten", "HaarDownsampling", "HaarUpsampling", "IRevNetDownsampling",
           "IRevNetUpsampling", "Reshape"]

OptDims = Optional[Dims]


class _SpaceToDepth(InvertibleModule):
    """What the 2x2 reshapes share: their shapes and their call.

    A subclass maps an image to its 2x2 blocks stacked on the channels (``_down``,
    ``(C, H, W) -> (4C, H/2, W/2)``) and back (``_up``); an upsampling subclass swaps the two
    directions. ``_down`` needs an even height and width, checked at call time, since the block
    runs at any such size.
    """

    _upsampling = False

    def _down(self, x: Tensor) -> Tensor:
        """Image ``(B, C, H, W)`` to blocks ``(B, 4C, H/2, W/2)``."""
        raise NotImplementedError

    def _up(self, y: Tensor) -> Tensor:
        """Blocks back to the image: the inverse of :meth:`_down`."""
        raise NotImplementedError

    def _log_det(self, x: Tensor, y: Tensor, down: bool) -> Tensor:
        """The log-det of a call from ``x`` to ``y`` (0 for a permutation of the pixels)."""
        return zero_log_det(y)

    def forward(self, x: Tensors, c: Any = None, jac: bool = True, rev: bool = False) -> Outputs:  # type: ignore[override]
        """To 2x2 blocks, or back when ``rev`` (FrEIA's order: ``jac`` before ``rev``)."""
        (x_in,), _ = self._checked(x, c, rev)
        down = rev == self._upsampling
        y = self._down(check_even_extents(type(self).__name__, x_in)) if down else self._up(x_in)
        return (y,), self._log_det(x_in, y, down)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """``[(4C, H/2, W/2)]``, or ``[(C/4, 2H, 2W)]`` for the upsampling subclasses."""
        c, h, w = check_image_shape(type(self).__name__, list(input_dims), self._upsampling)
        return [(c // 4, 2 * h, 2 * w) if self._upsampling else (4 * c, h // 2, w // 2)]


class IRevNetDownsampling(_SpaceToDepth):
    r"""i-RevNet's invertible 2x2 space-to-depth map: ``(C, H, W) -> (4C, H/2, W/2)``.

    Pixel ``k = 2 row + col`` of each 2x2 block of channel ``c`` goes to output channel
    ``4c + k`` (default, a grouped stride-2 conv with the one-hot P̸ ``downsample_kernel``) or
    ``k C + c`` (``legacy_backend=True``, pure reshapes, no state). A permutation: log-det 0.
    It runs at any even height and width, not only the built one.

    References: Jacobsen, Smeulders, Oyallon, "i-RevNet: Deep Invertible Networks", ICLR 2018.

    Args:
        dims_in: one image shape ``[(C, H, W)]`` with even ``H`` and ``W``.
        dims_c: condition shapes; conditions are checked and otherwise ignored.
        legacy_backend: use FrEIA's old channel order ``k C + c``.

    Raises:
        ValueError: more than one input, a non-image input or odd spatial sizes (at build time;
            at call time for an input of odd height or width).
    """

    def __init__(self, dims_in: Dims, dims_c: OptDims = None, legacy_backend: bool = False
                 ) -> None:
        super().__init__(dims_in, dims_c)
        shape = check_image_shape(type(self).__name__, self.dims_in, self._upsampling)
        self.channels = shape[0] // 4 if self._upsampling else shape[0]
        self.block_size = 2
        self.block_size_sq = 4
        self.legacy_backend = bool(legacy_backend)
        if not self.legacy_backend:
            self.downsample_kernel = frozen_parameter(irevnet_kernel(self.channels))

    def _down(self, x: Tensor) -> Tensor:
        """Channel ``4c + k`` (or ``k C + c``) holds pixel ``k`` of channel ``c``'s blocks."""
        if self.legacy_backend:
            return squeeze_interleaved(x)
        return squeeze_grouped(x, self.downsample_kernel)

    def _up(self, y: Tensor) -> Tensor:
        """The inverse of :meth:`_down`."""
        if self.legacy_backend:
            return unsqueeze_interleaved(y)
        return unsqueeze_grouped(y, self.downsample_kernel)


class IRevNetUpsampling(IRevNetDownsampling):
    """The exact inverse of :class:`IRevNetDownsampling`: ``(4C', H, W) -> (C', 2H, 2W)``.

    Unlike FrEIA, ``dims_in`` holds the real input shape (FrEIA stored the output shape there,
    which broke ``Inverse`` and replacing blocks in a ``SequenceINN``). ``downsample_kernel`` is
    built for the ``C'`` output channels: ``(4C', 1, 2, 2)``.

    Args:
        dims_in: one image shape ``[(4C', H, W)]``.
        dims_c: condition shapes; conditions are checked and otherwise ignored.
        legacy_backend: use FrEIA's old channel order.
    """

    _upsampling = True


class HaarDownsampling(_SpaceToDepth):
    r"""Haar wavelet transform of 2x2 blocks: ``(C, H, W) -> (4C, H/2, W/2)``.

    For a block ``[[p00, p01], [p10, p11]]`` the bands are w0 = p00+p01+p10+p11,
    w1 = p00-p01+p10-p11, w2 = p00+p01-p10-p11, w3 = p00-p01-p10+p11, each times
    ``fac_fwd = rebalance / 2``. Output channel ``4c + w``, or ``w C + c`` with
    ``order_by_wavelet``. The reverse is the transposed conv of ``fac_rev y``,
    ``fac_rev = 1 / (2 rebalance)``. Log-det ``numel * ln|rebalance|`` per sample (forward). It
    runs at any even height and width, not only the built one.

    Args:
        dims_in: one image shape ``[(C, H, W)]`` with even ``H`` and ``W``.
        dims_c: condition shapes; conditions are checked and otherwise ignored.
        order_by_wavelet: put all averages first, then all w1 bands, ...
        rebalance: scales the output, trading off against the log-det; not 0.

    Raises:
        ValueError: ``rebalance == 0``, more than one input, a non-image input, odd sizes (at
            build time; at call time for an input of odd height or width).
    """

    perm: Tensor  # the band order and its inverse, buffers when ``order_by_wavelet``
    perm_inv: Tensor

    def __init__(self, dims_in: Dims, dims_c: OptDims = None, order_by_wavelet: bool = False,
                 rebalance: float = 1.0) -> None:
        super().__init__(dims_in, dims_c)
        shape = check_image_shape(type(self).__name__, self.dims_in, self._upsampling)
        rebalance = float(rebalance)
        if rebalance == 0 or not math.isfinite(rebalance):
            raise ValueError(f"{type(self).__name__}: rebalance must be finite and non-zero.")
        self.in_channels = shape[0] // 4 if self._upsampling else shape[0]
        self.fac_fwd = 0.5 * rebalance
        self.jac_fwd = math.log(16.0 * self.fac_fwd**4) / 4.0  # = ln|rebalance| per element
        self.fac_rev = 0.5 / rebalance
        self.jac_rev = math.log(16.0 * self.fac_rev**4) / 4.0
        self.permute = bool(order_by_wavelet)
        self.haar_weights = frozen_parameter(haar_kernel(self.in_channels))
        if self.permute:
            perm, perm_inv = haar_wavelet_permutation(self.in_channels)
            self.register_buffer("perm", perm, persistent=False)
            self.register_buffer("perm_inv", perm_inv, persistent=False)

    def _down(self, x: Tensor) -> Tensor:
        """Image to scaled Haar bands (ordered by wavelet if ``permute``)."""
        bands = squeeze_grouped(x, self.haar_weights)
        if self.permute:
            bands = bands.index_select(1, self.perm)
        return bands * self.fac_fwd

    def _up(self, y: Tensor) -> Tensor:
        """The inverse of :meth:`_down`."""
        if self.permute:
            y = y.index_select(1, self.perm_inv)
        return unsqueeze_grouped(y * self.fac_rev, self.haar_weights)

    def _log_det(self, x: Tensor, y: Tensor, down: bool) -> Tensor:
        """``numel(x) ln|rebalance|`` to the bands, its negative back (a traced size stays a
        traced value: no ``int()``)."""
        return zero_log_det(y) + math.prod(x.shape[1:]) * (self.jac_fwd if down else self.jac_rev)


class HaarUpsampling(HaarDownsampling):
    """The exact inverse of :class:`HaarDownsampling`: ``(4C', H, W) -> (C', 2H, 2W)``.

    ``dims_in`` holds the real input shape (not the output shape, as in FrEIA);
    ``haar_weights`` is ``(4C', 1, 2, 2)``; the factor and log-det attributes keep their
    downsampling meaning, as in FrEIA.

    Args:
        dims_in: one image shape ``[(4C', H, W)]``.
        dims_c: condition shapes; conditions are checked and otherwise ignored.
        order_by_wavelet: the input's channels are ordered by wavelet band.
        rebalance: as in :class:`HaarDownsampling`.
    """

    _upsampling = True


def reshaped(block: InvertibleModule, x: Tensors, c: Any, rev: bool, target: Shape) -> Outputs:
    """``Flatten``'s and ``Reshape``'s call: the checked input reshaped to ``(B, *target)``.

    ``reshape``, not ``view`` (which FrEIA's ``Flatten`` used): it also takes non-contiguous
    inputs.
    """
    (x_in,), _ = block._checked(x, c, rev)
    y = x_in.reshape(x_in.shape[0], *target)
    return (y,), zero_log_det(y)


class Flatten(InvertibleModule):
    """Flatten each sample to a vector: ``(...) -> (prod,)``; log-det 0.

    The output size fixes the input's extents (``fixed_size``): inputs must have ``dims_in``.

    Args:
        dims_in: one input shape.
        dims_c: condition shapes; conditions are checked and otherwise ignored.
    """

    fixed_size = True

    def __init__(self, dims_in: Dims, dims_c: OptDims = None) -> None:
        super().__init__(dims_in, dims_c)
        check_single_input("Flatten", self.dims_in)
        self.input_shape = self.dims_in[0]
        self.output_shape = (n_elements(self.input_shape),)

    def forward(self, x: Tensors, c: Any = None, jac: bool = True, rev: bool = False) -> Outputs:  # type: ignore[override]
        """Reshape to the flat or (``rev``) the original shape."""
        return reshaped(self, x, c, rev, self.input_shape if rev else self.output_shape)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """``[(prod,)]``."""
        check_single_input("Flatten", list(input_dims))
        return [self.output_shape]


def target_shape(output_dims: Any, target_dim: Any) -> Shape:
    """Resolve Reshape's target from ``output_dims`` or the deprecated ``target_dim``."""
    if target_dim is not None:
        warnings.warn("Reshape: target_dim is deprecated, use output_dims instead.", UserWarning,
                      stacklevel=3)
        if output_dims is not None and tuple(output_dims) != tuple(target_dim):
            raise ValueError(
                f"Reshape: output_dims {tuple(output_dims)} and target_dim {tuple(target_dim)} "
                f"disagree; give only output_dims."
            )
        output_dims = target_dim
    if output_dims is None:
        raise ValueError("Please specify the desired output shape")
    if isinstance(output_dims, int):
        return (output_dims,)
    return tuple(int(d) for d in output_dims)


class Reshape(InvertibleModule):
    """Reshape each sample to ``output_dims`` (batch excluded); log-det 0.

    The target fixes the input's extents (``fixed_size``): inputs must have ``dims_in``.

    Args:
        dims_in: one input shape.
        dims_c: condition shapes; conditions are checked and otherwise ignored.
        output_dims: the target shape, with the same number of elements as the input.
        target_dim: deprecated name of ``output_dims`` (warns ``UserWarning``).

    Raises:
        ValueError: no target, a different element count, or more than one input.
    """

    fixed_size = True

    def __init__(self, dims_in: Dims, dims_c: OptDims = None,
                 output_dims: Optional[Iterable[int]] = None,
                 target_dim: Optional[Iterable[int]] = None) -> None:
        super().__init__(dims_in, dims_c)
        check_single_input("Reshape", self.dims_in)
        self.size = self.dims_in[0]
        self.target_dim = target_shape(output_dims, target_dim)
        n = n_elements(self.size)
        if min(self.target_dim, default=1) < 1 or n_elements(self.target_dim) != n:
            raise ValueError(f"Reshape: cannot reshape input shape {self.size} ({n} elements) to "
                             f"{self.target_dim}: the number of elements must stay the same.")

    def forward(self, x: Tensors, c: Any = None, jac: bool = True, rev: bool = False) -> Outputs:  # type: ignore[override]
        """``reshape(B, *target_dim)``, or back to ``reshape(B, *size)`` when ``rev``."""
        return reshaped(self, x, c, rev, self.size if rev else self.target_dim)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """``[target_dim]``: a list holding a tuple, as every block's shapes (FrEIA returned the
        bare tuple or echoed the user's list)."""
        check_single_input("Reshape", list(input_dims))
        return [self.target_dim]
