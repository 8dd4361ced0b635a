"""`AllInOneBlock`: affine coupling, learned global affine map and channel permutation in one."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .._errors import InvertibleRuntimeError
from . import _fused
from ._affine import (
    acc_dtype,
    legacy_soft_clamp,
    resolve_global_affine,
    soft_clamp,
    softplus_scale,
)
from ._common import (
    Dims,
    ShapeList,
    SubnetConstructor,
    built_subnet,
    cat_conditions,
    channel_input_shape,
    check_condition_shapes,
    check_single_input,
    check_tensor,
    frozen_parameter,
    is_tracing,
    n_elements,
)
from ._fused import TANH_KIND, Coefficients, affine_half_inverse, all_in_one_core
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


def draw_permutation(channels: int, soft: bool) -> Tensor:
    """The construction-time permutation draw, from the global generators (Appendix B).

    Soft: a ``(C, C)`` float64 rotation from ``special_ortho_group.rvs(C)`` (numpy's global
    RNG). Hard: an int64 index permutation from ``torch.randperm(C)`` (torch's global RNG).
    """
    if soft:
        return torch.from_numpy(random_rotation(channels))
    return torch.randperm(channels)


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



class AllInOneBlock(InvertibleModule):
    r"""Affine coupling + global affine map + channel permutation (FrEIA's ``AllInOneBlock``).

    With ``C1 = ceil(C/2)`` passive and ``C2 = floor(C/2)`` active channels, conditions ``c``
    and the permutation ``P`` (index gather, soft rotation, or Householder product):

    .. math::

        a = 0.1\,\mathrm{subnet}([x_1, c]),\quad
        s = \kappa \tanh(a_{:C_2} / \kappa),\quad t = a_{C_2:}

        y = P\big((x_1, x_2 e^{s} + t) \odot \Psi(g) + b\big),\quad
        \log|\det J| = \textstyle\sum s + n_\mathrm{pix} \sum_c \ln \Psi(g_c)

    ``κ = affine_clamping``; the scale ``s`` comes first, then the shift ``t``. With
    ``gin_block=True`` ``s`` is centred over all non-batch dims and ``Ψ(g) = 1`` (volume
    preserving; the offset ``b`` still applies). With ``reverse_permutation=True`` the input is
    first permuted by ``P^{-1}``. Householder mode (``learned_householder_permutation = K > 0``)
    learns ``W = w_0 H(v_1) ... H(v_K)``, recomputed once per call; FrEIA also kept that matrix
    in ``self.w_perm`` after each call, which ``invertible`` does not (it would break deepcopy).

    Speed: in eager mode the coupling, global affine map and hard permutation run as one
    autograd node with a hand-written backward (``_fused.AllInOneCore``), and the no-grad
    directions in place. Its gradients are first order: a backward with ``create_graph=True``
    raises; set the attribute ``fused_kernels = False`` (on a block or the class) for plain
    autograd ops and higher-order gradients. ``torch.compile``/``torch.export``/``jit.trace``
    always see the plain ops.

    *PyPI FrEIA 0.2* (and anomalib's copy) clamped as ``κ tanh(a)``, without ``/κ``; HEAD, and
    this class by default, use ``κ tanh(a/κ)``. Old checkpoints, including their one-hot float
    ``w_perm``/``w_perm_inv`` (converted to index form on load), load either way; build the
    block with ``legacy_clamp=True`` to reproduce their outputs exactly.

    Args:
        dims_in: one input shape ``(C, *S)``; hard permutations allow any rank, soft and
            Householder ones vectors up to 3-D volumes.
        dims_c: condition shapes; their non-channel dims must equal the input's.
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

    References:
        Ardizzone et al., "Guided Image Generation with Conditional Invertible Neural
        Networks", 2019 (arXiv:1907.02392); Sorrenson et al., "Disentanglement by Nonlinear
        ICA with General Incompressible-flow Networks (GIN)", ICLR 2020.
    """

    #: Use the eager fused kernels of ``_fused.py`` (first-order gradients only).
    fused_kernels: bool = True

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
    ) -> None:
        super().__init__(dims_in, dims_c)
        self.legacy_clamp = legacy_clamp
        self._init_shapes()
        self.in_channels = self.dims_in[0][0]
        self.clamp = affine_clamping
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
        self._init_permutation(bool(permute_soft))
        c_in = self.splits[0] + self.condition_channels
        self.subnet = built_subnet(type(self).__name__, subnet_constructor, c_in,
                                   2 * self.splits[1], "subnet")
        self.last_jac = None

    @property
    def legacy_clamp(self) -> bool:
        """Whether the log-scale is clamped as PyPI FrEIA 0.2 did (``κ tanh(a)``)."""
        return self.clamp_function is legacy_soft_clamp

    @legacy_clamp.setter
    def legacy_clamp(self, enabled: bool) -> None:
        self.clamp_function = legacy_soft_clamp if enabled else soft_clamp

    def _init_shapes(self) -> None:
        """Split sizes, ranks and condition bookkeeping from ``dims_in``/``dims_c``."""
        name = type(self).__name__
        channels = channel_input_shape(name, self.dims_in)[0]
        self.input_rank = len(self.dims_in[0]) - 1
        self.sum_dims = tuple(range(1, 2 + self.input_rank))
        self.n_pixels = n_elements(self.dims_in[0][1:])
        check_condition_shapes(name, self.dims_in, self.dims_c)
        self.conditional = len(self.dims_c) > 0
        self.condition_channels = sum(dc[0] for dc in self.dims_c)
        self.splits = [channels - channels // 2, channels // 2]

    def _init_global_affine(self, kind: str, init: float) -> None:
        """Ψ, ``global_scale = g0`` (float64 value stored in the default dtype), zero offset."""
        self.global_scale_activation, g0 = resolve_global_affine(kind, init)
        if kind == "SOFTPLUS":
            self.softplus = nn.Softplus(beta=0.5)  # stateless; kept for print(model) parity
        shape = (1, self.in_channels, *([1] * self.input_rank))
        self.global_scale = nn.Parameter(torch.full(shape, g0))
        self.global_offset = nn.Parameter(torch.zeros(shape))

    def _init_permutation(self, soft: bool) -> None:
        """Draw the permutation, then the Householder vectors (RNG order of Appendix B)."""
        drawn = draw_permutation(self.in_channels, soft)
        dtype = torch.get_default_dtype()
        if self.householder > 0:
            k, channels = self.householder, self.in_channels
            self.vk_householder = nn.Parameter(0.2 * torch.randn(k, channels))
            self.w_perm = None
            self.w_perm_inv = None
            # D19: FrEIA crashed for a hard permutation here; w_0 is then its one-hot matrix.
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
        return self.w_perm, self.w_perm_inv

    def _global_affine(self) -> Tuple[Optional[Tensor], Union[Tensor, float]]:
        """``(Ψ(global_scale), n_pix Σ_c ln Ψ)``, or ``(None, 0.0)`` in GIN mode (scale 1)."""
        if self.GIN:
            return None, 0.0
        scale = self.global_scale_activation(self.global_scale)
        return scale, self._log_scale(scale)

    def _log_scale(self, scale: Tensor) -> Tensor:
        """``n_pix Σ_c ln Ψ_c``, summed in at least float32."""
        log_scale = torch.log(scale).sum(dtype=acc_dtype(scale.dtype))
        return log_scale if self.n_pixels == 1 else log_scale * self.n_pixels

    def _alpha(self) -> float:
        """``α`` of ``s = κ tanh(α r_s)``: ``0.1/κ``, legacy ``0.1`` (see ``legacy_clamp``)."""
        return 0.1 if self.clamp_function is legacy_soft_clamp else 0.1 / self.clamp

    def _affine_coefficients(self, x1: Tensor, c: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        """``s = κ tanh(α r_s)`` (centred if GIN) and ``t = 0.1 r_t`` from ``r = subnet([x1, c])``:
        ``clamp_function(0.1 r_s, κ)`` with ``α = 0.1/κ`` (legacy ``0.1``) folded in."""
        n = self.splits[1]
        s_raw, t_raw = self._subnet_output(x1, c).split_with_sizes([n, n], 1)
        s = torch.tanh(s_raw * self._alpha()) * self.clamp
        if self.GIN:
            s = s - s.mean(dim=self.sum_dims, keepdim=True)
        return s, t_raw * 0.1

    def forward(
        self,
        x: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = (),
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Map ``x`` forwards (or, with ``rev=True``, back); the log-det is always computed.

        See :meth:`InvertibleModule.forward`. Raises ``RuntimeError`` (also a ``ValueError``)
        for an input of the wrong shape (FrEIA's type), ``ValueError`` for wrong numbers of
        inputs/conditions, wrong condition shapes or devices, and ``TypeError`` for a dtype
        other than the parameters' outside ``torch.autocast``.
        """
        ref = self.global_scale
        data = self._checked_input(x, ref)
        conds = self._checked_conditions(c, ref)
        w, w_inv = self._permutation_weights()
        if rev:
            return self._reverse(data, conds, w, w_inv)
        return self._forward(data, conds, w, w_inv)

    def _fused(self, x: Tensor, rev: bool = False) -> bool:
        """Whether this call on ``x`` takes the eager fused kernels of ``_fused.py``: not in GIN
        mode (centred log-scale), not while ``torch.jit.trace``, ``torch.compile`` or
        ``torch.export`` trace the call (plain ops give them a graph they can fuse and export),
        and only from ``ALL_IN_ONE_MIN_ELEMENTS`` (inverse: ``ALL_IN_ONE_INVERSE_MIN_ELEMENTS``)
        elements on (below, plain ops are faster)."""
        if not self.fused_kernels or self.GIN or self.splits[1] == 0 or is_tracing():
            return False
        if rev:
            return x.numel() >= _fused.ALL_IN_ONE_INVERSE_MIN_ELEMENTS
        return x.numel() >= _fused.ALL_IN_ONE_MIN_ELEMENTS

    def _coefficients(self) -> Coefficients:
        """``s = κ tanh(α r_s)`` with ``α = 0.1/κ`` (legacy: ``0.1``), ``t = 0.1 r_t``."""
        return Coefficients(TANH_KIND, self._alpha(), self.clamp, 0.1, self.splits[1])

    def _subnet_output(self, x1: Tensor, c: Sequence[Tensor]) -> Tensor:
        """``subnet([x1, c])``; ``ValueError`` unless it has ``2 C2`` channels."""
        r = self.subnet(cat_conditions(x1, c))
        if r.dim() < 2 or r.shape[1] != 2 * self.splits[1]:
            raise ValueError(
                f"AllInOneBlock: the subnet must return 2 * {self.splits[1]} channels (log-scale, "
                f"then shift), got an output of shape {tuple(r.shape)}."
            )
        return r

    def _forward(
        self, x: Tensor, c: Sequence[Tensor], w: Tensor, w_inv: Tensor
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """The forward map of spec §6.2.2, fused into one autograd node where possible."""
        if self.reverse_pre_permute:
            x = self.permute_function(x, w_inv)
        x1, x2 = x.split_with_sizes(self.splits, 1)
        if not self._fused(x):
            return self._plain_forward(x1, x2, c, w)
        r = self._subnet_output(x1, c)
        scale = self.global_scale_activation(self.global_scale)
        hard = self.permute_function is permute_channels
        y, log_det = all_in_one_core(
            x1, x2, r, scale, self.global_offset, w if hard else None, w_inv if hard else None,
            self._coefficients(), self.n_pixels,
        )
        return (y if hard else self.permute_function(y, w),), log_det

    def _plain_forward(
        self, x1: Tensor, x2: Tensor, c: Sequence[Tensor], w: Tensor
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """The forward map in plain autograd ops (GIN mode, small inputs, tracing)."""
        s, t = self._affine_coefficients(x1, c)
        u = torch.cat([x1, torch.addcmul(t, x2, torch.exp(s))], dim=1)
        log_det = s.sum(dim=self.sum_dims, dtype=acc_dtype(s.dtype))
        scale, log_scale = self._global_affine()
        offset = self.global_offset
        v = u + offset if scale is None else torch.addcmul(offset, u, scale)
        log_det = log_det + log_scale
        return (self.permute_function(v, w),), log_det.to(v.dtype)

    def _reverse(
        self, y: Tensor, c: Sequence[Tensor], w: Tensor, w_inv: Tensor
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """The inverse map of spec §6.2.3; without autograd, in few in-place ops."""
        if torch.is_grad_enabled() or not self._fused(y, rev=True):
            return self._plain_reverse(y, c, w, w_inv)
        scale = self.global_scale_activation(self.global_scale)
        u = torch.sub(self.permute_function(y, w_inv), self.global_offset).div_(scale)
        c1 = self.splits[0]
        r = self._subnet_output(u[:, :c1], c)
        log_det = affine_half_inverse(u[:, c1:], r, self._coefficients(), out=u[:, c1:])[1]
        log_det = (log_det - self._log_scale(scale)).to(u.dtype)
        if self.reverse_pre_permute:
            u = self.permute_function(u, w)
        return (u,), log_det

    def _plain_reverse(
        self, y: Tensor, c: Sequence[Tensor], w: Tensor, w_inv: Tensor
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """The inverse map in plain autograd ops."""
        scale, log_scale = self._global_affine()
        u = self.permute_function(y, w_inv) - self.global_offset
        if scale is not None:
            u = u / scale
        x1, y2 = u.split_with_sizes(self.splits, 1)
        s, t = self._affine_coefficients(x1, c)
        x = torch.cat([x1, (y2 - t) / torch.exp(s)], dim=1)
        log_det = s.sum(dim=self.sum_dims, dtype=acc_dtype(s.dtype)).neg_() - log_scale
        if self.reverse_pre_permute:
            x = self.permute_function(x, w)
        return (x,), log_det.to(x.dtype)

    def _checked_input(self, x: Sequence[Tensor], ref: Tensor) -> Tensor:
        """The single input tensor: floating, on ``ref``'s device and (outside autocast) of its
        dtype; ``RuntimeError`` (FrEIA's type, also a ``ValueError``) if its shape is wrong."""
        if isinstance(x, Tensor) or len(x) != 1:
            got = "a bare Tensor" if isinstance(x, Tensor) else f"{len(x)} tensors"
            raise ValueError(
                f"AllInOneBlock takes a list or tuple with exactly 1 input tensor, e.g. [x]; "
                f"got {got}."
            )
        check_tensor("AllInOneBlock", "input", x[0], None, ref)
        shape = tuple(x[0].shape[1:])
        if shape != self.dims_in[0]:
            raise InvertibleRuntimeError(
                f"AllInOneBlock: Expected input of shape {self.dims_in[0]}, got {shape}."
            )
        return x[0]

    def _checked_conditions(self, c: Optional[Sequence[Tensor]], ref: Tensor
                            ) -> Sequence[Tensor]:
        """The condition tensors, one per ``dims_c`` entry with that shape, else ``ValueError``
        (``TypeError`` for a dtype other than ``ref``'s, the parameters')."""
        conds = () if c is None else c
        if isinstance(conds, Tensor) or len(conds) != len(self.dims_c):
            got = "a bare Tensor" if isinstance(conds, Tensor) else f"{len(conds)}"
            raise ValueError(
                f"AllInOneBlock expects {len(self.dims_c)} condition tensor(s) in a list or "
                f"tuple (dims_c={self.dims_c}); got {got}."
            )
        for k, (cond, expected) in enumerate(zip(conds, self.dims_c)):
            check_tensor("AllInOneBlock", f"condition {k}", cond, None, ref)
            if tuple(cond.shape[1:]) != expected:
                raise ValueError(
                    f"AllInOneBlock: condition {k} must have shape {expected} (batch excluded), "
                    f"got {tuple(cond.shape[1:])}."
                )
        return conds

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape list, unchanged (one input only)."""
        check_single_input(type(self).__name__, input_dims)
        return [tuple(d) for d in input_dims]

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
