"""Pure kernels of the 2x2 space-to-depth reshapes: one-hot and Haar filters, pixel orders."""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import Shape, ShapeList, image_shape

__all__ = ["check_even_extents", "check_image_shape", "haar_kernel", "haar_wavelet_permutation",
           "irevnet_kernel", "squeeze_grouped", "squeeze_interleaved", "unsqueeze_grouped",
           "unsqueeze_interleaved"]

# The four Haar bands of a 2x2 block [[p00, p01], [p10, p11]] (before the scale factor):
# average, left minus right, top minus bottom, diagonal.
HAAR_BANDS: List[List[List[float]]] = [
    [[1.0, 1.0], [1.0, 1.0]],
    [[1.0, -1.0], [1.0, -1.0]],
    [[1.0, 1.0], [-1.0, -1.0]],
    [[1.0, -1.0], [-1.0, 1.0]],
]


def check_image_shape(block: str, dims_in: ShapeList, upsampling: bool) -> Shape:
    """Validate the single image input of a 2x2 reshape and return its ``(C, H, W)``.

    Downsampling needs even ``H`` and ``W``; upsampling needs ``C`` divisible by 4.

    Raises:
        ValueError: more than one input, not 3-D, or sizes that do not fit, naming the shape.
    """
    c, h, w = shape = image_shape(block, dims_in)
    if upsampling and (c % 4 != 0 or c == 0):
        raise ValueError(f"{block} needs a channel count divisible by 4, got shape {shape}.")
    if not upsampling and (h % 2 != 0 or w % 2 != 0 or h == 0 or w == 0):
        raise ValueError(f"{block} needs an even height and width, got shape {shape}.")
    return shape


def check_even_extents(block: str, x: Tensor) -> Tensor:
    """``x`` itself, after checking that its height and width are even (2x2 blocks tile it).

    The 2x2 reshapes run at any even size, not only the built one, so this is a call-time check
    (skipped under ``torch.jit.trace``, where sizes are traced values, not ints).

    Raises:
        ValueError: an odd height or width, naming the block and the shape.
    """
    if not torch.jit.is_tracing() and (x.shape[-2] % 2 or x.shape[-1] % 2):
        raise ValueError(
            f"{block} needs an even height and width (it maps 2x2 blocks of pixels to channels), "
            f"got an input of shape {tuple(x.shape)}."
        )
    return x


def irevnet_kernel(channels: int) -> Tensor:
    """One-hot ``(4C, 1, 2, 2)`` filters: channel ``4c + k`` picks pixel ``k = 2 row + col``."""
    kernel = torch.zeros(4 * channels, 1, 2, 2)
    for k in range(4):
        kernel[k::4, 0, k // 2, k % 2] = 1.0
    return kernel


def haar_kernel(channels: int) -> Tensor:
    """Haar filters ``(4C, 1, 2, 2)``: output channel ``4c + w`` is band ``w`` of channel ``c``."""
    return torch.tensor(HAAR_BANDS).unsqueeze(1).repeat(channels, 1, 1, 1)


def squeeze_grouped(x: Tensor, kernel: Tensor) -> Tensor:
    """Grouped stride-2 conv of ``(B, C, H, W)`` with a ``(4C, 1, 2, 2)`` kernel."""
    return F.conv2d(x, kernel, stride=2, groups=kernel.shape[0] // 4)


def unsqueeze_grouped(y: Tensor, kernel: Tensor) -> Tensor:
    """The transposed conv of :func:`squeeze_grouped` (its inverse for orthogonal-block kernels)."""
    return F.conv_transpose2d(y, kernel, stride=2, groups=kernel.shape[0] // 4)


def squeeze_interleaved(x: Tensor) -> Tensor:
    """Space-to-depth with output channel ``k C + c`` (pixel-major), ``k = 2 row + col``."""
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
    return blocks.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze_interleaved(y: Tensor) -> Tensor:
    """The inverse of :func:`squeeze_interleaved`."""
    b, c4, h, w = y.shape
    blocks = y.reshape(b, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2)
    return blocks.reshape(b, c4 // 4, 2 * h, 2 * w)


def haar_wavelet_permutation(channels: int) -> Tuple[Tensor, Tensor]:
    """``perm[w C + c] = 4c + w`` (all averages first) and its inverse, as int64 tensors."""
    perm = torch.arange(4 * channels).reshape(channels, 4).t().reshape(-1)
    return perm, torch.argsort(perm)
