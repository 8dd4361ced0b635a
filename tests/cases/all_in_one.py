"""Property-suite cases for `AllInOneBlock`: every permutation mode, rank and scale activation."""

from __future__ import annotations

from functools import partial
from typing import Any, List

from torch import nn

from invertible.modules.all_in_one_block import AllInOneBlock
from subnets import HIDDEN, conv_subnet, dense_subnet

from . import Case

__all__ = ["CASES", "conv1d_subnet", "conv3d_subnet"]


def conv1d_subnet(c_in: int, c_out: int) -> nn.Module:
    """Two padded width-3 1-D convolutions with a tanh between them, for ``(C, L)`` data."""
    return nn.Sequential(
        nn.Conv1d(c_in, HIDDEN, 3, padding=1), nn.Tanh(), nn.Conv1d(HIDDEN, c_out, 3, padding=1)
    )


def conv3d_subnet(c_in: int, c_out: int) -> nn.Module:
    """Two 1x1x1 3-D convolutions (a per-voxel MLP) for ``(C, D, H, W)`` volumes."""
    return nn.Sequential(nn.Conv3d(c_in, HIDDEN, 1), nn.Tanh(), nn.Conv3d(HIDDEN, c_out, 1))


def _build(dims: Any, cond: List[Any], **kwargs: Any) -> AllInOneBlock:
    """An `AllInOneBlock` for one input shape ``dims`` and condition shapes ``cond``."""
    return AllInOneBlock([dims], cond, **kwargs)


VEC = (5,)  # odd C: ceil/floor split 3 | 2
IMG = (3, 4, 4)
SEQ = (4, 6)
VOL = (3, 2, 2, 2)

# In GIN mode the global scale is replaced by 1, so global_scale never receives a gradient.
GIN_NO_GRAD = ("global_scale",)
# A soft permutation is a float64 rotation stored in float32 (FrEIA's state layout); after
# .double() its transpose inverts it only to ~1e-7, and its log|det| is 0 only to ~1e-7.
SOFT_ATOL = 1e-6


def _case(name: str, dims: Any, subnet: Any, cond: Any = (), **kwargs: Any) -> Case:
    """A case ``all_in_one-<name>`` building the block with ``kwargs``."""
    build = partial(_build, dims, list(cond), subnet_constructor=subnet, **kwargs)
    no_grad = GIN_NO_GRAD if kwargs.get("gin_block") else ()
    atol = SOFT_ATOL if kwargs.get("permute_soft") else 1e-9
    return Case(id=f"all_in_one-{name}", build=build, cond_shapes=tuple(cond),
                no_grad_params=no_grad, atol=atol)


CASES = [
    _case("vector", VEC, dense_subnet),
    _case("vector-cond", VEC, dense_subnet, [(3,)]),
    _case("vector-two-conds", VEC, dense_subnet, [(3,), (2,)]),
    _case("vector-soft", VEC, dense_subnet, permute_soft=True),
    _case("vector-householder-hard", VEC, dense_subnet, learned_householder_permutation=3),
    _case("vector-householder-soft", VEC, dense_subnet, [(2,)], permute_soft=True,
          learned_householder_permutation=2),
    _case("vector-gin", VEC, dense_subnet, gin_block=True),
    _case("vector-reverse-perm", VEC, dense_subnet, [(2,)], reverse_permutation=True),
    _case("vector-sigmoid", VEC, dense_subnet, global_affine_type="SIGMOID",
          global_affine_init=0.7),
    _case("vector-exp", VEC, dense_subnet, global_affine_type="EXP", global_affine_init=1.3,
          affine_clamping=1.0),
    _case("image", IMG, conv_subnet),
    _case("image-cond", IMG, conv_subnet, [(2, 4, 4)]),
    _case("image-soft", IMG, conv_subnet, [(1, 4, 4)], permute_soft=True),
    _case("image-householder-hard", IMG, conv_subnet, learned_householder_permutation=2),
    _case("image-gin-soft", IMG, conv_subnet, gin_block=True, permute_soft=True),
    _case("image-reverse-perm-householder", IMG, conv_subnet, reverse_permutation=True,
          learned_householder_permutation=2, global_affine_type="SIGMOID"),
    _case("1d", SEQ, conv1d_subnet),
    _case("1d-cond", SEQ, conv1d_subnet, [(2, 6)], global_affine_type="EXP"),
    _case("1d-soft-reverse-perm", SEQ, conv1d_subnet, permute_soft=True,
          reverse_permutation=True),
    _case("3d", VOL, conv3d_subnet, [(1, 2, 2, 2)]),
    _case("3d-householder-soft", VOL, conv3d_subnet, permute_soft=True,
          learned_householder_permutation=1),
]
