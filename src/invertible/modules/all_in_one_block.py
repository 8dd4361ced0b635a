"""`AllInOneBlock`: affine coupling, learned global affine map and channel permutation in one."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .._errors import InvertibleRuntimeError
from ._affine import (
    acc_dtype,
    affine,
    identity,
    legacy_soft_clamp,
    resolve_global_affine,
    soft_clamp,
    softplus_scale,
)
from ._common import (
    Dims,
    SubnetConstructor,
    channel_input_shape,
    checked_seed,
    frozen_parameter,
)
from ._coupling import CouplingBlock, Params
from ._permutation import (
    channel_matrix_function,
    householder_product,
    inverse_index,
    matrix_kernel,
    one_hot_matrix,
    one_hot_to_index,
    permute_channels,
    random_rotation,
)
from .base import InvertibleModule

__all__ = ["AllInOneBlock", "softplus_scale"]

#: Above this many channels, drawing a soft permutation is slow and a warning suggests hard ones.
SOFT_PERMUTATION_WARN_CHANNELS = 512


def draw_permutation(channels: int, soft: bool, generator: Optional[torch.Generator] = None,
                     seed: Optional[int] = None) -> Tensor:
    """The construction-time permutation draw (FrEIA's order), from the global generators or,
    given ``seed``, from local ones.

    Soft: a ``(C, C)`` float64 rotation from ``special_ortho_group.rvs(C)`` (numpy's global
    RNG, or ``RandomState(seed)``). Hard: an int64 index permutation from ``torch.randperm(C)``
    (torch's global RNG, or ``generator``).
    """
    if soft:
        return torch.from_numpy(random_rotation(channels, seed))
    return torch.randperm(channels, generator=generator)


def check_options(
    channels: int, subnet_constructor: object, permute_soft: bool, householder: int
) -> None:
    """Reject a missing subnet constructor or a negative reflection count; warn when a soft
    permutation of more than 512 channels is requested (slow to draw)."""
    if subnet_constructor is None:
        raise ValueError(
            "Please supply a callable subnet_constructor function or object (see docstring); "
            "AllInOneBlock got subnet_constructor=None."
        )
    if householder < 0:
        raise ValueError(
            f"AllInOneBlock: learned_householder_permutation must be >= 0 (the number of "
            f"reflections), got {householder}."
        )
    if permute_soft and channels > SOFT_PERMUTATION_WARN_CHANNELS:
        warnings.warn(
            f"AllInOneBlock: soft permutation will take a very long time to initialize with "
            f"{channels} feature channels. Consider using hard permutation instead.",
            stacklevel=3,
        )


class AllInOneBlock(CouplingBlock):
    r"""Affine coupling + global affine map + channel permutation (FrEIA's ``AllInOneBlock``).

    A one-sided :class:`~invertible.modules.CouplingBlock` on ``C1 = ceil(C/2)`` passive and
    ``C2 = floor(C/2)`` active channels, followed by a learned global affine map and the
    permutation ``P`` (index gather, soft rotation, or Householder product); ``c`` are the
    conditions:

    .. math::

        a = 0.1\,\mathrm{subnet}([x_1, c]),\quad
        s = \kappa \tanh(a_{:C_2} / \kappa),\quad t = a_{C_2:}

        y = P\big((x_1, x_2 e^{s} + t) \odot \Psi(g) + b\big),\quad
        \log|\det J| = \textstyle\sum s + n_\mathrm{pix} \sum_c \ln \Psi(g_c)

    ``κ = affine_clamping``; the scale ``s`` comes first, then the shift ``t``;
    ``n_pix`` is the number of positions of the call's input (any extents run; only the
    channel count and rank are checked, a wrong one raising ``RuntimeError`` as in FrEIA). With
    ``gin_block=True`` ``s`` is centred over all non-batch dims and ``Ψ(g) = 1`` (volume
    preserving; the offset ``b`` still applies). With ``reverse_permutation=True`` the input is
    first permuted by ``P^{-1}``. Householder mode (``learned_householder_permutation = K > 0``)
    learns ``W = w_0 H(v_1) ... H(v_K)``, recomputed once per call; FrEIA also kept that matrix
    in ``self.w_perm`` after each call, which ``invertible`` does not (it would break deepcopy).

    *PyPI FrEIA 0.2* (and anomalib's copy) clamped as ``κ tanh(a)``, without ``/κ``; HEAD, and
    this class by default, use ``κ tanh(a/κ)``. Old checkpoints, including their one-hot float
    ``w_perm``/``w_perm_inv`` (converted to index form on load), load either way; build the
    block with ``legacy_clamp=True`` to reproduce their outputs exactly, or load a whole
    network's 0.2 checkpoint with :func:`invertible.compat.load_freia_02_checkpoint`, which
    sets it on every block.

    Args:
        dims_in: one input shape ``(C, *S)``; hard permutations allow any rank, soft and
            Householder ones vectors up to 3-D volumes.
        dims_c: condition shapes ``(k, *S)``, or vectors ``(k,)`` broadcast over ``S``.
        subnet_constructor: ``f(c_in, c_out)``, called once as
            ``f(C1 + condition channels, 2 * C2)`` after the permutation draws.
        affine_clamping: κ, the soft bound on the log-scale ``s``.
        gin_block: volume-preserving GIN variant.
        global_affine_init: initial value of the global scale Ψ(g).
        global_affine_type: Ψ, one of ``"SIGMOID"`` (``10 sigmoid(a-2)``), ``"SOFTPLUS"``
            (``0.1 softplus(a, beta=0.5)``) or ``"EXP"``.
        permute_soft: a random rotation (``scipy.stats.special_ortho_group``) instead of a
            hard permutation; slow to draw for many channels.
        learned_householder_permutation: number K of learned Householder reflections.
        reverse_permutation: apply ``P^{-1}`` before the coupling too.
        legacy_clamp: clamp as PyPI FrEIA 0.2 did, ``s = κ tanh(a_s)``, to run checkpoints
            trained with it unchanged (not a FrEIA keyword; adds no state).
        seed: draw the block's own random values (the permutation or rotation, the Householder
            vectors) from local generators seeded with ``seed``: what FrEIA draws after
            ``np.random.seed(seed)`` and ``torch.manual_seed(seed)``, without touching the
            global generators. The subnets are still built by ``subnet_constructor`` from
            torch's global generator. ``None`` (default): the global generators, as FrEIA
            (not a FrEIA keyword).

    References:
        Ardizzone et al., "Guided Image Generation with Conditional Invertible Neural
        Networks", 2019 (arXiv:1907.02392); Sorrenson et al., "Disentanglement by Nonlinear
        ICA with General Incompressible-flow Networks (GIN)", ICLR 2020.
    """

    subnets = {"subnet": 2}  # noqa: RUF012 - a class-level declaration
    params_per_channel = 2
    shape_error = InvertibleRuntimeError

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = None,
        subnet_constructor: Optional[SubnetConstructor] = None,
        affine_clamping: float = 2.0,
        gin_block: bool = False,
        global_affine_init: float = 1.0,
        global_affine_type: str = "SOFTPLUS",
        permute_soft: bool = False,
        learned_householder_permutation: int = 0,
        reverse_permutation: bool = False,
        legacy_clamp: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        InvertibleModule.__init__(self, dims_in, dims_c)
        channels = channel_input_shape(type(self).__name__, self.dims_in)[0]
        self._setup(affine_clamping, identity, channels - channels // 2)  # ceil(C/2) | floor
        self.legacy_clamp = legacy_clamp
        self.in_channels, self.splits = self.channels, [self.split_len1, self.split_len2]
        self._halves = (self.split_len2, self.split_len2)  # [s, t] of the subnet output
        self.condition_channels = self.condition_length
        self.input_rank = self.ndims - 1
        self.sum_dims = tuple(range(1, 2 + self.input_rank))
        self.GIN = gin_block
        self.reverse_pre_permute = reverse_permutation
        self.householder = int(learned_householder_permutation)
        check_options(self.in_channels, subnet_constructor, permute_soft, self.householder)
        use_matrix = bool(permute_soft) or self.householder > 0
        self.permute_function = (
            channel_matrix_function(self.input_rank, type(self).__name__)
            if use_matrix else permute_channels
        )
        self._init_global_affine(global_affine_type, global_affine_init)
        self.seed = checked_seed(type(self).__name__, seed)
        self._init_permutation(bool(permute_soft), self.seed)
        self._build_subnets(subnet_constructor)
        self.last_jac = None

    @property
    def legacy_clamp(self) -> bool:
        """Whether the log-scale is clamped as PyPI FrEIA 0.2 did (``κ tanh(a)``)."""
        return self.clamp_function is legacy_soft_clamp

    @legacy_clamp.setter
    def legacy_clamp(self, enabled: bool) -> None:
        self.clamp_function = legacy_soft_clamp if enabled else soft_clamp

    def _init_global_affine(self, kind: str, init: float) -> None:
        """Ψ, ``global_scale = g0`` (float64 value stored in the default dtype), zero offset."""
        self.global_scale_activation, g0 = resolve_global_affine(kind, init)
        if kind == "SOFTPLUS":
            self.softplus = nn.Softplus(beta=0.5)  # stateless; kept for print(model) parity
        shape = (1, self.in_channels, *([1] * self.input_rank))
        self.global_scale = nn.Parameter(torch.full(shape, g0))
        self.global_offset = nn.Parameter(torch.zeros(shape))

    def _init_permutation(self, soft: bool, seed: Optional[int]) -> None:
        """Draw the permutation, then the Householder vectors (FrEIA's order of random draws),
        from the global generators or, given ``seed``, from local ones."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        drawn = draw_permutation(self.in_channels, soft, generator, seed)
        dtype = torch.get_default_dtype()
        if self.householder > 0:
            k, channels = self.householder, self.in_channels
            self.vk_householder = nn.Parameter(0.2 * torch.randn(k, channels,
                                                                 generator=generator))
            self.w_perm = None
            self.w_perm_inv = None
            # FrEIA HEAD crashes for a hard permutation here; w_0 is then its one-hot matrix.
            w0 = drawn.to(dtype) if soft else one_hot_matrix(drawn, dtype)
            self.w_0 = frozen_parameter(w0)
        elif soft:
            self.w_perm = frozen_parameter(matrix_kernel(drawn.to(dtype), self.input_rank))
            self.w_perm_inv = frozen_parameter(matrix_kernel(drawn.t().to(dtype), self.input_rank))
        else:
            self.w_perm = frozen_parameter(drawn)
            self.w_perm_inv = frozen_parameter(inverse_index(drawn))

    def _permutation_weights(self) -> Tuple[Tensor, Tensor]:
        """``(w_perm, w_perm_inv)``; in Householder mode computed once here for the whole call."""
        if self.householder > 0:
            w = householder_product(self.w_0, self.vk_householder)
            kernel = matrix_kernel(w, self.input_rank)
            return kernel, kernel.transpose(0, 1)
        return self.w_perm, self.w_perm_inv  # type: ignore[return-value] # set unless K > 0

    def _global_affine(self, x: Tensor) -> Tuple[Optional[Tensor], Union[Tensor, float]]:
        """``(Ψ(global_scale), n_pix Σ_c ln Ψ)`` with ``n_pix`` the positions of ``x`` (the sum
        in float32 at least), or ``(None, 0.0)`` in GIN mode (scale 1)."""
        if self.GIN:
            return None, 0.0
        scale = self.global_scale_activation(self.global_scale)
        log_scale = torch.log(scale).sum(dtype=acc_dtype(scale.dtype))
        n_pixels = math.prod(x.shape[2:])
        return scale, log_scale if n_pixels == 1 else log_scale * n_pixels

    def transform(self, x: Tensor, params: Params, rev: bool) -> Tuple[Tensor, Tensor]:
        """The affine half: ``s = clamp_function(0.1 r_s, κ)`` (centred in GIN mode) and
        ``t = 0.1 r_t`` from the subnet output ``r = [r_s, r_t]``."""
        r_s, r_t = params[0].split_with_sizes(self._halves, 1)
        s = self.clamp_function(r_s, self.clamp, 0.1)
        if self.GIN:
            s = s - s.mean(dim=self.sum_dims, keepdim=True)
        return affine(x, s, r_t, rev, t_scale=0.1)

    def forward(
        self,
        x: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = (),
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Map ``x`` forwards (or, with ``rev=True``, back); the log-det is always computed.

        See :meth:`InvertibleModule.forward`. Raises ``RuntimeError`` (also a ``ValueError``)
        for an input with a wrong channel count or rank (FrEIA's type); other misuse as
        :meth:`InvertibleModule._checked` describes.
        """
        (data,), cs = self._checked(x, c, rev)
        w, w_inv = self._permutation_weights()
        scale, log_scale = self._global_affine(data)
        offset = self.global_offset
        if rev:
            u = self.permute_function(data, w_inv)  # then (u - b) / Ψ in one pass over u:
            u = u - offset if scale is None else torch.addcmul(-offset / scale, u, 1 / scale)
            out, log_det = self._couple(u, cs, True)
            log_det = log_det - log_scale
            if self.reverse_pre_permute:
                out = self.permute_function(out, w)
        else:
            if self.reverse_pre_permute:
                data = self.permute_function(data, w_inv)
            u, log_det = self._couple(data, cs, False)
            v = u + offset if scale is None else torch.addcmul(offset, u, scale)
            out, log_det = self.permute_function(v, w), log_det + log_scale
        return (out,), log_det if log_det.dtype == out.dtype else log_det.to(out.dtype)

    def _load_from_state_dict(
        self, state_dict: Dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Also accept PyPI-0.2 one-hot float ``w_perm``/``w_perm_inv`` for a hard permutation."""
        if self.householder == 0 and self.permute_function is permute_channels:
            for name in ("w_perm", "w_perm_inv"):
                value = state_dict.get(prefix + name)
                if isinstance(value, Tensor) and value.is_floating_point() and value.dim() >= 2:
                    index = one_hot_to_index(value)
                    if index is not None:  # else the size mismatch is reported as usual
                        state_dict[prefix + name] = index
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
