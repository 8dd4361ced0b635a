"""ATen ops ONNX has no translation for, rewritten in exportable ops (used only by ``to_onnx``).

Each function computes exactly what its torch counterpart computes, in plain tensor ops unrolled
over a static matrix size, so ``torch.export``'s program can be decomposed before conversion.
Eager PyTorch never calls them: it keeps its own kernels.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "ONNX_DECOMPOSITIONS",
    "inv_by_elimination",
    "lu_by_elimination",
    "searchsorted_by_counting",
    "slogdet_by_elimination",
    "solve_triangular_by_substitution",
]


def searchsorted_by_counting(
    sorted_sequence: Tensor, values: Tensor, *, out_int32: bool = False, right: bool = False,
    side: Optional[str] = None, sorter: Optional[Tensor] = None,
) -> Tensor:
    """``torch.searchsorted`` as a count: the left insertion index of ``v`` is the number of
    knots ``< v`` (right: ``<= v``). ONNX has no searchsorted; splines need it."""
    if sorter is not None:
        raise NotImplementedError("to_onnx cannot export torch.searchsorted with a sorter.")
    knots = sorted_sequence.unsqueeze(-2) if sorted_sequence.dim() > 1 else sorted_sequence
    v = values.unsqueeze(-1)
    hits = (knots <= v) if (right or side == "right") else (knots < v)
    return hits.sum(dim=-1, dtype=torch.int32 if out_int32 else torch.int64)


def solve_triangular_by_substitution(
    A: Tensor, B: Tensor, *, upper: bool, left: bool = True, unitriangular: bool = False
) -> Tensor:
    """``torch.linalg.solve_triangular`` by forward/back substitution, unrolled over the (static)
    size of ``A``. ONNX has no triangular solve; ``GaussianMixtureModel``'s inverse needs it."""
    if not left:  # X A = B  <=>  A^T X^T = B^T
        return solve_triangular_by_substitution(
            A.mT, B.mT, upper=not upper, unitriangular=unitriangular
        ).mT
    n = A.shape[-1]
    rows: Dict[int, Tensor] = {}
    for i in range(n - 1, -1, -1) if upper else range(n):
        done = range(i + 1, n) if upper else range(i)
        acc = B[..., i, :]
        if len(done) > 0:
            known = torch.stack([rows[j] for j in done], dim=-2)
            acc = acc - (A[..., i, done[0] : done[-1] + 1].unsqueeze(-1) * known).sum(dim=-2)
        rows[i] = acc if unitriangular else acc / A[..., i, i : i + 1]
    return torch.stack([rows[i] for i in range(n)], dim=-2)


def lu_by_elimination(A: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gaussian elimination with partial pivoting of ``A`` ``(..., n, n)``, unrolled over the
    (static) ``n``: ``(P, L, U, swaps)`` with ``P A = L U``, ``P`` a permutation matrix, ``L``
    unit lower and ``U`` upper triangular, ``swaps`` ``(...,)`` the permutation's sign.

    Each step picks the row of largest magnitude in the column as the pivot (``argmax``, no
    branch on values) and swaps it in with a permutation matrix, as LAPACK's ``getrf`` does;
    the multipliers are kept below the diagonal, so later swaps move them along.
    """
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    index = torch.arange(n, device=A.device)
    m, p, swaps = A, eye.expand(A.shape), A.new_ones(A.shape[:-2])
    for k in range(n - 1):
        pivot_row = torch.argmax(m[..., k:, k].abs(), dim=-1) + k
        e_k, e_p = eye[k], (index == pivot_row.unsqueeze(-1)).to(A.dtype)
        col_k, row_k, col_p, row_p = (e.unsqueeze(d) for e in (e_k, e_p) for d in (-1, -2))
        swap = eye - col_k * row_k - col_p * row_p + col_k * row_p + col_p * row_k  # rows k, p
        m, p = swap @ m, swap @ p
        swaps = torch.where(pivot_row == k, swaps, -swaps)
        factors = m[..., k + 1 :, k] / m[..., k : k + 1, k]
        later = (index > k).to(A.dtype)
        eliminated = m[..., k + 1 :, :] - factors.unsqueeze(-1) * (m[..., k : k + 1, :] * later)
        eliminated = torch.where(index == k, factors.unsqueeze(-1), eliminated)
        m = torch.cat([m[..., : k + 1, :], eliminated], dim=-2)
    return p, torch.tril(m, -1) + eye, torch.triu(m), swaps


def slogdet_by_elimination(A: Tensor) -> Tuple[Tensor, Tensor]:
    """``torch.linalg.slogdet`` from :func:`lu_by_elimination`: the sign and ``ln|det|`` are
    those of ``U``'s diagonal, times the pivoting's sign. The exporter has no translation of
    ``slogdet``; ``Learned1x1Conv(lu=False)`` needs it (for invertible matrices: a singular one
    may give NaN instead of torch's ``(0, -inf)``)."""
    _, _, upper, swaps = lu_by_elimination(A)
    diagonal = torch.diagonal(upper, dim1=-2, dim2=-1)
    return swaps * torch.prod(torch.sign(diagonal), dim=-1), diagonal.abs().log().sum(dim=-1)


def inv_by_elimination(A: Tensor) -> Tensor:
    """``torch.linalg.inv`` as ``U^-1 L^-1 P`` from :func:`lu_by_elimination` and two
    :func:`solve_triangular_by_substitution`. ONNX has no matrix inverse;
    ``Learned1x1Conv(lu=False)``'s inverse needs it."""
    perm, lower, upper, _ = lu_by_elimination(A)
    solved = solve_triangular_by_substitution(lower, perm, upper=False, unitriangular=True)
    return solve_triangular_by_substitution(upper, solved, upper=True)


#: ATen ops without an ONNX translation, rewritten in exportable ops before conversion. Used
#: only while exporting: eager PyTorch keeps its own kernels.
ONNX_DECOMPOSITIONS = {
    torch.ops.aten.searchsorted.Tensor: searchsorted_by_counting,
    torch.ops.aten.linalg_solve_triangular.default: solve_triangular_by_substitution,
    torch.ops.aten.linalg_slogdet.default: slogdet_by_elimination,
    torch.ops.aten.linalg_inv.default: inv_by_elimination,
}
