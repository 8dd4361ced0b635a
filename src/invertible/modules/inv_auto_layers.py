"""Learned element-wise maps and the approximately invertible linear layers of InvAuto nets.

References: Teng, Choromanska and Bojarski, "Invertible Autoencoder for domain adaptation",
Computation 7(2), 2019.

The blocks keep FrEIA's ``forward(x, rev=False, jac=True)`` without ``c``, which mypy reports as
an incompatible override of ``InvertibleModule.forward``; hence the ``type: ignore[override]``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (
    Dims,
    Outputs,
    Shape,
    ShapeList,
    Tensors,
    channel_input_shape,
    image_shape,
    require_no_conditions,
    vector_size,
    zero_log_det,
)
from ._elementwise import (
    channel_param_shape,
    scale_by_log,
    symmetric_log_slope,
    two_sided_log_slope,
)
from .base import InvertibleModule

__all__ = ["InvAutoAct", "InvAutoActFixed", "InvAutoActTwoSided", "InvAutoConv2D", "InvAutoFC",
           "LearnedElementwiseScaling"]

_INTRACTABLE = (
    "{}: the log-Jacobian-determinant is not tractable; 0.0 is returned. The layer is only "
    "approximately invertible (its reverse uses the transposed weights), and the true log-det "
    "only approaches 0 once training has made the weights orthogonal."
)


def _only_input(block: str, dims_in: ShapeList, dims_c: ShapeList) -> Shape:
    """The single, unconditioned input's shape, which must have a channel axis."""
    shape = channel_input_shape(block, dims_in)
    require_no_conditions(block, dims_c)
    return shape


def _log_parameter(block: str, name: str, value: float, shape: Shape,
                   learnable: bool = True) -> nn.Parameter:
    """``ln(value) * ones(shape)``, the initial log-slope or log-scale, as a parameter."""
    if not value > 0:
        raise ValueError(f"{block}: {name} must be positive (it is stored as a log), got {value}.")
    return nn.Parameter(math.log(value) * torch.ones(shape), requires_grad=learnable)


class InvAutoActTwoSided(InvertibleModule):
    r"""Leaky-ReLU-like map with learned per-channel slopes on each side of 0.

    :math:`y = x\,e^{\ell(x)}` with :math:`\ell = \alpha_+ + \tfrac12(\alpha_- - \alpha_+)(1 -
    \operatorname{sign} x)`: :math:`\alpha_+` for x > 0, :math:`\alpha_-` for x < 0. The sign is
    preserved, so the reverse :math:`x = y\,e^{-\ell(y)}` reuses ``sign(y)``. Log-det
    :math:`\pm\sum \ell`.

    Args:
        dims_in: one input shape, channels first.
        dims_c: must be empty.
        init_pos: initial slope for positive inputs (``alpha_pos = ln init_pos``).
        init_neg: initial slope for negative inputs (``alpha_neg = ln init_neg``).
        learnable: ``False`` freezes both slopes.
    """

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, init_pos: float = 2.0,
                 init_neg: float = 0.5, learnable: bool = True) -> None:
        super().__init__(dims_in, dims_c)
        block = "InvAutoActTwoSided"
        shape = channel_param_shape(_only_input(block, self.dims_in, self.dims_c))
        self.tensor_rank = len(self.dims_in[0])
        self.alpha_pos = _log_parameter(block, "init_pos", init_pos, shape, learnable)
        self.alpha_neg = _log_parameter(block, "init_neg", init_neg, shape, learnable)

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Scale each element by its side's slope (divide in reverse); log-det ``(B,)``."""
        (x_in,), _ = self._checked(x, None, rev)
        log_slope = two_sided_log_slope(x_in, self.alpha_pos, self.alpha_neg)
        y, log_det = scale_by_log(x_in, log_slope, rev)
        return [y], log_det

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return input_dims


class InvAutoAct(InvertibleModule):
    r"""Leaky-ReLU-like map with one learned, symmetric log-slope per channel.

    :math:`y = x\,e^{\alpha \operatorname{sign} x}`: positive values are multiplied by
    :math:`e^\alpha`, negative ones divided by it; the reverse negates the exponent. Log-det
    :math:`\pm\sum \alpha \operatorname{sign} x` over all non-batch elements.

    Args:
        dims_in: one input shape, channels first.
        dims_c: must be empty.
        slope_init: initial slope (``alpha = ln slope_init``).
        learnable: ``False`` freezes ``alpha``.
    """

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, slope_init: float = 2.0,
                 learnable: bool = True) -> None:
        super().__init__(dims_in, dims_c)
        block = type(self).__name__
        shape = channel_param_shape(_only_input(block, self.dims_in, self.dims_c))
        self.tensor_rank = len(self.dims_in[0])
        self.alpha = _log_parameter(block, "slope_init", slope_init, shape, learnable)

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Multiply positives by ``e^alpha`` and divide negatives (the opposite in reverse)."""
        (x_in,), _ = self._checked(x, None, rev)
        y, log_det = scale_by_log(x_in, symmetric_log_slope(x_in, self.alpha), rev)
        return [y], log_det

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return input_dims


class InvAutoActFixed(InvAutoAct):
    """Deprecated alias of :class:`InvAutoAct`; despite its name, the slopes stay learnable.

    It takes :class:`InvAutoAct`'s arguments and warns (``UserWarning``) on construction, as
    FrEIA's does (whose slopes also stay learnable); pass ``learnable=False`` to
    :class:`InvAutoAct` for fixed slopes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        warnings.warn("Deprecated: please use InvAutoAct with the learnable=False argument.",
                      UserWarning, stacklevel=2)


class LearnedElementwiseScaling(InvertibleModule):
    r"""A learned scale per element: :math:`y = x\,e^{s}`, reverse :math:`x = y\,e^{-s}`.

    ``s`` has the input's shape (one log-scale per element, not per channel), so it fixes the
    input's extents (``fixed_size``). Log-det :math:`+\sum s` forward and :math:`-\sum s`
    reverse, as a ``(B,)`` tensor (FrEIA returned ``+\sum s`` of shape ``(1,)`` in both
    directions, which is not the reverse's log-det).

    Args:
        dims_in: one input shape.
        dims_c: must be empty.
        init_scale: initial scale (``s = ln init_scale``).
    """

    fixed_size = True

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, init_scale: float = 1.0
                 ) -> None:
        super().__init__(dims_in, dims_c)
        block = "LearnedElementwiseScaling"
        shape = (1, *_only_input(block, self.dims_in, self.dims_c))
        self.s = _log_parameter(block, "init_scale", init_scale, shape)

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Multiply by ``e^s`` (divide in reverse)."""
        (x_in,), _ = self._checked(x, None, rev)
        y, log_det = scale_by_log(x_in, self.s, rev)
        return [y], log_det

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return input_dims


class InvAutoFC(InvertibleModule):
    r"""A fully connected layer whose "inverse" uses the transposed weights (approximate).

    Forward :math:`y = x W^\top + b`, reverse :math:`x = (y - b) W`; this is the exact inverse
    only when W is orthogonal (training is meant to drive it there). The log-det is reported as
    0 with a ``UserWarning`` on every call with ``jac=True``, as in FrEIA. Vectors only.
    ``exact_inverse`` is ``False`` for that reason: a memory-efficient container cannot
    recompute the input from the output.

    Args:
        dims_in: one input shape ``(C,)``.
        dims_c: must be empty.
        dims_out: output size (an int; default ``C``).
    """

    exact_inverse = False

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None, dims_out: Optional[int] = None
                 ) -> None:
        super().__init__(dims_in, dims_c)
        size = vector_size("InvAutoFC", self.dims_in)
        require_no_conditions("InvAutoFC", self.dims_c)
        self.dims_out = size if dims_out is None else int(dims_out)
        weights = torch.randn(self.dims_out, size)
        self.weights = nn.Parameter(math.sqrt(1.0 / self.dims_out) * weights)
        self.bias = nn.Parameter(torch.randn(1, self.dims_out))

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """``x Wᵀ + b``, or ``(y - b) W`` in reverse; log-det zeros (not the true value)."""
        (x_in,), _ = self._checked(x, None, rev)
        if jac:
            warnings.warn(_INTRACTABLE.format("InvAutoFC"), UserWarning, stacklevel=2)
        out = (x_in - self.bias) @ self.weights if rev else x_in @ self.weights.t() + self.bias
        return [out], zero_log_det(out)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """``[(dims_out,)]``; ``ValueError`` unless ``input_dims`` is one vector shape."""
        vector_size("InvAutoFC", input_dims)
        return [(self.dims_out,)]


def _conv_output_shape(shape: Shape, c_out: int, kernel_size: int, padding: int) -> Shape:
    """Output shape of a stride-1 ``Conv2d`` with a square kernel."""
    return (c_out, *(s + 2 * padding - kernel_size + 1 for s in shape[1:]))


class InvAutoConv2D(InvertibleModule):
    r"""A convolution whose "inverse" is the transposed convolution (approximate).

    Forward :math:`y = w \star x + b` (``conv2d``, no bias, then a per-channel bias); reverse
    :math:`x = w^\top \star (y - b)` (``conv_transpose2d`` with the same weights), the exact
    inverse only when the convolution is orthogonal, hence ``exact_inverse = False`` (a
    memory-efficient container cannot recompute the input from the output). Log-det reported as
    0 with a ``UserWarning`` when ``jac=True``. Images ``(C, H, W)`` only, of any size: ``dims_out``
    describes the output at the built size.

    Args:
        dims_in: one input shape ``(C, H, W)``.
        dims_c: must be empty.
        dims_out: the full output shape ``(C_out, H_out, W_out)`` (default: the input shape); it
            must match what the convolution produces.
        kernel_size: square kernel size.
        padding: zero padding on each side.
    """

    exact_inverse = False

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None,
                 dims_out: Optional[Iterable[int]] = None, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__(dims_in, dims_c)
        require_no_conditions("InvAutoConv2D", self.dims_c)
        shape = image_shape("InvAutoConv2D", self.dims_in)
        self.dims_out = shape if dims_out is None else tuple(int(d) for d in dims_out)
        self.kernel_size, self.padding = kernel_size, padding
        expected = _conv_output_shape(shape, self.dims_out[0], kernel_size, padding)
        if self.dims_out != expected:
            raise ValueError(
                f"InvAutoConv2D: dims_out {self.dims_out} does not match the output shape "
                f"{expected} of a {kernel_size}x{kernel_size} convolution with padding {padding} "
                f"on input {shape}."
            )
        c_out = self.dims_out[0]
        self.conv2d = nn.Conv2d(shape[0], c_out, kernel_size, padding=padding, bias=False)
        self.bias = nn.Parameter(torch.randn(1, c_out, 1, 1))

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """``conv2d(x) + b``, or ``conv_transpose2d(y - b)`` in reverse; log-det zeros."""
        (x_in,), _ = self._checked(x, None, rev)
        if jac:
            warnings.warn(_INTRACTABLE.format("InvAutoConv2D"), UserWarning, stacklevel=2)
        if rev:
            out = F.conv_transpose2d(x_in - self.bias, self.conv2d.weight, padding=self.padding)
        else:
            out = self.conv2d(x_in) + self.bias
        return [out], zero_log_det(out)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """``[dims_out]``; ``ValueError`` unless ``input_dims`` is one image shape."""
        image_shape("InvAutoConv2D", input_dims)
        return [tuple(self.dims_out)]
