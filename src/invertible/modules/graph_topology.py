"""Graph topology blocks: `Split` one tensor into sections and `Concat` several into one.

Both keep FrEIA's ``forward(x, rev=False, jac=True)`` without ``c``, which mypy reports as an
incompatible override of ``InvertibleModule.forward``; hence the ``type: ignore[override]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, List, Union

import torch
from torch import Tensor

from .._errors import InvertibleAssertionError
from ._common import (
    Dims,
    Outputs,
    Shape,
    ShapeList,
    Tensors,
    check_single_input,
    is_int,
    zero_log_det,
)
from .base import InvertibleModule

__all__ = ["Concat", "Concat1d", "ConcatChannel", "Split", "Split1D", "SplitChannel"]

SectionSizes = Union[None, int, Sequence[int]]


def normalise_dim(block: str, dim: Any, shape: Shape) -> int:
    """Map ``dim`` (batch excluded, negative counts from the end) into ``[0, len(shape))``.

    Raises:
        InvertibleAssertionError: ``dim`` is not an int or out of range for ``shape`` (FrEIA's
            bound was off by one, and a negative ``dim`` split the batch axis).
    """
    rank = len(shape)
    if not is_int(dim):
        raise InvertibleAssertionError(f"{block}: dim must be an int, got {dim!r}.")
    if not -rank <= int(dim) < rank:
        raise InvertibleAssertionError(
            f"{block}: dim={dim} is out of range for input shape {shape} (batch dimension "
            f"excluded); expected {-rank} <= dim < {rank}."
        )
    return int(dim) % rank


def equal_sections(length: int, n_sections: Any) -> List[int]:
    """Sizes of ``n_sections`` near-equal parts of ``length``, larger ones first (array_split)."""
    if not is_int(n_sections) or n_sections < 2 or n_sections > length:
        raise InvertibleAssertionError(
            f"Split: n_sections must be an int with 2 <= n_sections <= {length} (the length of "
            f"the split axis), got {n_sections!r}."
        )
    n = int(n_sections)
    if length % n != 0:
        warnings.warn("Split will create sections of unequal size", UserWarning, stacklevel=4)
    return [length // n + 1] * (length % n) + [length // n] * (n - length % n)


def listed_sections(length: int, sizes: Sequence[Any]) -> List[int]:
    """Validate explicit section sizes; add a final section if they do not fill ``length``."""
    if not all(is_int(s) and s > 0 for s in sizes) or len(sizes) == 0:
        raise InvertibleAssertionError(f"Split: section_sizes must be positive ints, got {sizes}.")
    result = [int(s) for s in sizes]
    total = sum(result)
    if total > length:
        raise InvertibleAssertionError(
            f"Split: section_sizes {result} sum to {total}, more than the length {length} of "
            f"the split axis."
        )
    if total < length:
        warnings.warn(
            f"Split: section_sizes {result} sum to {total} < {length}: too small, adding "
            f"additional section of size {length - total}.",
            UserWarning,
            stacklevel=4,
        )
        result.append(length - total)
    return result


def section_sizes_for(length: int, section_sizes: SectionSizes, n_sections: Any) -> List[int]:
    """Resolve Split's three ways of giving sections into a list of sizes summing to ``length``."""
    if section_sizes is None:
        return equal_sections(length, n_sections)
    if isinstance(section_sizes, (list, tuple)):
        return listed_sections(length, section_sizes)
    if is_int(section_sizes):
        if not 0 < section_sizes < length:
            raise InvertibleAssertionError(
                f"Split: an int section_sizes must satisfy 0 < section_sizes < {length} (the "
                f"length of the split axis), got {section_sizes}."
            )
        return [int(section_sizes), length - int(section_sizes)]
    raise InvertibleAssertionError(
        f"Split: section_sizes must be None, an int, or a list/tuple of ints, got "
        f"{type(section_sizes).__name__} {section_sizes!r}."
    )


def regroup(xs: List[Tensor], split: bool, dim: int, sections: List[int]) -> Outputs:
    """``torch.split`` of the one tensor into ``sections`` (a tuple), or ``[cat(xs)]``, along
    axis ``dim`` (batch excluded); log-det 0."""
    if split:
        out: Sequence[Tensor] = torch.split(xs[0], sections, dim=dim + 1)
    else:
        out = [torch.cat(xs, dim=dim + 1)]
    return out, zero_log_det(out[0])


class Split(InvertibleModule):
    r"""Split one tensor into sections along one axis: :math:`x \mapsto (x_1, \dots, x_n)`.

    A permutation-free re-grouping of the elements, so the log-det is 0. The inverse concatenates.
    ``dim`` counts without the batch axis (0 = channels); a negative ``dim`` counts from the end.
    Split along the channels, the block runs at any size; along another axis the sections fix
    that axis's length, so inputs must have exactly ``dims_in`` (``fixed_size``). Any dtype and
    device: the block only moves data.

    Args:
        dims_in: one input shape, e.g. ``[(6, 8, 8)]``.
        section_sizes: ``None`` (``n_sections`` near-equal parts, larger first, like
            ``numpy.array_split``), an int ``s`` (sections ``[s, l - s]``) or a list/tuple of
            sizes (a final section is added, with a ``UserWarning``, if they sum to less than
            the axis length ``l``).
        n_sections: the number of parts when ``section_sizes`` is ``None``.
        dim: the axis to split, batch excluded.

    Raises:
        InvertibleAssertionError: more than one input, bad ``dim`` or bad section sizes.
    """

    def __init__(self, dims_in: Dims, section_sizes: SectionSizes = None, n_sections: int = 2,
                 dim: int = 0) -> None:
        super().__init__(dims_in)
        check_single_input("Split", self.dims_in, InvertibleAssertionError)
        self.dim = normalise_dim("Split", dim, self.dims_in[0])
        self.fixed_size = self.dim != 0
        length = self.dims_in[0][self.dim]
        self.split_size_or_sections = section_sizes_for(length, section_sizes, n_sections)

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Forward: ``torch.split`` (a tuple); reverse: ``[cat(sections)]``."""
        xs, _ = self._checked(x, None, rev, floating=False)
        return regroup(xs, not rev, self.dim, self.split_size_or_sections)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """One shape per section, with axis ``dim`` replaced by the section size."""
        check_single_input("Split", input_dims, InvertibleAssertionError)
        shape = tuple(int(d) for d in input_dims[0])
        d = self.dim
        return [shape[:d] + (size,) + shape[d + 1 :] for size in self.split_size_or_sections]


def check_concat_ranks(dims_in: ShapeList) -> None:
    """Concat needs more than one input, all of the same rank."""
    if len(dims_in) < 2:
        raise InvertibleAssertionError(f"Concat: needs more than one input, got {dims_in}.")
    ranks = {len(d) for d in dims_in}
    if len(ranks) != 1:
        raise InvertibleAssertionError(
            f"Concat: all inputs must have the same number of dimensions, got shapes {dims_in}."
        )


def check_concat_shapes(dims_in: ShapeList, dim: int) -> None:
    """Concat needs >1 inputs of equal rank that agree on every axis but ``dim``."""
    check_concat_ranks(dims_in)
    others = {d[:dim] + d[dim + 1 :] for d in dims_in}
    if len(others) != 1:
        raise InvertibleAssertionError(
            f"Concat: all input shapes must be equal except in dim {dim}, got shapes {dims_in}."
        )


class Concat(InvertibleModule):
    r"""Concatenate several tensors along one axis: :math:`(x_1, \dots, x_n) \mapsto x`.

    The inverse of :class:`Split`; log-det 0. ``dim`` counts without the batch axis (0 =
    channels); a negative ``dim`` counts from the end. Along the channels the block runs at any
    size; along another axis inputs must have exactly ``dims_in`` (``fixed_size``).

    Args:
        dims_in: two or more input shapes, equal except along ``dim``.
        dim: the axis to concatenate along, batch excluded.

    Raises:
        InvertibleAssertionError: fewer than two inputs, unequal ranks, shapes that differ on an
            axis other than ``dim``, or ``dim`` out of range.
    """

    def __init__(self, dims_in: Dims, dim: int = 0) -> None:
        super().__init__(dims_in)
        check_concat_ranks(self.dims_in)
        self.dim = normalise_dim("Concat", dim, self.dims_in[0])
        check_concat_shapes(self.dims_in, self.dim)
        self.fixed_size = self.dim != 0
        self.split_size_or_sections = [d[self.dim] for d in self.dims_in]

    def forward(self, x: Tensors, rev: bool = False, jac: bool = True) -> Outputs:  # type: ignore[override]
        """Forward: ``[cat(inputs)]``; reverse: ``torch.split`` (a tuple)."""
        xs, _ = self._checked(x, None, rev, floating=False)
        return regroup(xs, rev, self.dim, self.split_size_or_sections)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """One shape: the inputs' common shape with axis ``dim`` summed."""
        shapes = [tuple(int(d) for d in s) for s in input_dims]
        check_concat_shapes(shapes, self.dim)
        total = sum(s[self.dim] for s in shapes)
        first = shapes[0]
        return [first[: self.dim] + (total,) + first[self.dim + 1 :]]


class _DeprecatedAlias:
    """Mixin of the deprecated aliases: construction warns ``DeprecationWarning``, as FrEIA's
    aliases do."""

    _replacement = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            f"{type(self).__name__} is deprecated and will be removed in the public release. "
            f"Use {self._replacement} instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)


class Split1D(_DeprecatedAlias, Split):
    """Deprecated alias of :class:`Split` (warns ``DeprecationWarning``)."""

    _replacement = "Split"


class SplitChannel(_DeprecatedAlias, Split):
    """Deprecated alias of :class:`Split` (warns ``DeprecationWarning``)."""

    _replacement = "Split"


class Concat1d(_DeprecatedAlias, Concat):
    """Deprecated alias of :class:`Concat` (warns ``DeprecationWarning``)."""

    _replacement = "Concat"


class ConcatChannel(_DeprecatedAlias, Concat):
    """Deprecated alias of :class:`Concat` (warns ``DeprecationWarning``)."""

    _replacement = "Concat"
