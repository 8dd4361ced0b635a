"""Autoregressive flows on a MADE conditioner: masked affine (MAF/IAF) and rational-quadratic
spline (autoregressive neural spline flow) blocks for vectors."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._errors import InvertibleAssertionError
from ._affine import acc_dtype, affine, atan_clamp
from ._common import Dims, Outputs, ShapeList, Tensors, checked_seed, same_shape, vector_size
from ._spline_kernels import rational_quadratic_spline
from .base import InvertibleModule
from .splines.binned import BinnedSplineBase
from .splines.rational_quadratic import constrain_deltas

__all__ = ["MADE", "AutoregressiveAffine", "AutoregressiveRQSpline", "autoregressive_order"]

ORDERS = ("sequential", "reversed", "random")


def autoregressive_order(features: int, order: str, generator: Optional[torch.Generator] = None,
                         block: str = "MADE") -> Tensor:
    """The features in the order they are generated: ``arange``, ``arange`` reversed, or a
    random permutation.

    Raises:
        ValueError: ``order`` is not ``"sequential"``, ``"reversed"`` or ``"random"``.
    """
    if order == "sequential":
        return torch.arange(features)
    if order == "reversed":
        return torch.arange(features).flip(0)
    if order == "random":
        return torch.randperm(features, generator=generator)
    raise ValueError(f"{block}: order must be one of {ORDERS}, got {order!r}.")


def _hidden_degrees(width: int, features: int, conditional: bool) -> Tensor:
    """Degrees ``m_k`` of ``width`` hidden units, cycling through ``[low, features - 1]``.

    A unit of degree ``m`` may see the inputs of degree ``<= m``; degree 0 (used when there
    are conditions, or a single feature) sees only the conditions.
    """
    low = 0 if conditional or features == 1 else 1
    return low + torch.arange(width) % (features - low)


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation: an autoregressive conditioner.

    Feature ``i`` gets the degree :math:`d_i` = its position (1-based) in ``order``. The network
    is a stack of masked linear layers with ReLU between them; hidden unit ``k`` of degree
    :math:`m_k` sees the units of the layer below with degree :math:`\le m_k`, and the
    ``params_per_feature`` outputs of feature ``i`` see the last hidden units with degree
    :math:`< d_i`. So the outputs of feature ``i`` depend only on the features strictly before
    it in the order. Conditions enter the first layer unmasked: every unit of the first layer
    sees all condition features (and so, through them, every unit above). The masks are buffers
    ``layers.<k>.mask``; the output ``(B, D P)`` holds feature ``i``'s values at
    ``[i P, (i + 1) P)``. The last layer starts at zero, so the outputs start at zero.

    Args:
        features: the number ``D`` of autoregressive features.
        condition_features: the number of condition features (0: unconditional).
        hidden_features: the widths of the hidden layers.
        params_per_feature: outputs per feature ``P``.
        order: ``(D,)`` permutation, the features in generation order.
        generator: draws the initial weights (``None``: torch's global generator).

    References: Germain, Gregor, Murray, Larochelle, "MADE: Masked Autoencoder for Distribution
    Estimation", ICML 2015 (arXiv:1502.03509).
    """

    order: Tensor

    def __init__(self, features: int, condition_features: int, hidden_features: Sequence[int],
                 params_per_feature: int, order: Tensor,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.features, self.params_per_feature = features, params_per_feature
        self.register_buffer("order", order.clone())
        degrees = torch.empty(features, dtype=torch.long)
        degrees[order] = torch.arange(1, features + 1)
        below = degrees
        layers: List[nn.Module] = []
        for k, width in enumerate(hidden_features):
            here = _hidden_degrees(int(width), features, condition_features > 0)
            mask = here[:, None] >= below[None, :]
            layers.append(_MaskedLinear(mask, condition_features if k == 0 else 0, generator))
            below = here
        out = degrees.repeat_interleave(params_per_feature)
        mask = out[:, None] > below[None, :]
        last = _MaskedLinear(mask, 0 if hidden_features else condition_features, generator)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.layers = nn.ModuleList([*layers, last])

    def forward(self, x: Tensor, c: Optional[Tensor] = None) -> Tensor:
        """``(B, D P)`` outputs of ``x`` ``(B, D)`` and the joined conditions ``c`` ``(B, k)``."""
        h = x if c is None else torch.cat([x, c], 1)
        *hidden, last = self.layers  # a slice of a ModuleList builds a new ModuleList per call
        for layer in hidden:
            h = torch.relu(layer(h))
        return last(h)


class _MaskedLinear(nn.Module):
    """``F.linear(h, weight * mask, bias)`` with a fixed 0/1 ``mask`` buffer; ``conditions``
    extra input columns that the mask leaves connected to every unit."""

    mask: Tensor

    def __init__(self, mask: Tensor, conditions: int, generator: Optional[torch.Generator]
                 ) -> None:
        super().__init__()
        out_features, in_features = mask.shape
        full = torch.cat([mask, mask.new_ones(out_features, conditions)], 1)
        dtype = torch.get_default_dtype()
        self.register_buffer("mask", full.to(dtype))
        bound = 1.0 / math.sqrt(max(in_features + conditions, 1))
        shape = (out_features, in_features + conditions)
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=generator))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound,
                                                                    generator=generator))

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(h, self.weight * self.mask, self.bias)


class _Autoregressive(InvertibleModule):
    r"""Base of the autoregressive blocks: a MADE conditioner and an element-wise transform.

    The autoregressive map :math:`g` is :math:`v_i = T(u_i;\ \theta_i(u_{<i}, c))` in the
    block's order, :math:`\theta` = the ``P = params_per_feature`` outputs of a :class:`MADE`.
    :math:`g` costs one conditioner pass: all :math:`\theta_i` come from the known input.
    :math:`g^{-1}` costs ``D`` sequential passes (``D`` = number of features): pass ``k``
    recomputes :math:`\theta` from the current estimate, which is then exact at the first
    ``k`` positions of the order, so after ``D`` passes every feature is exact (``D`` times
    the compute, and ``D`` times the autograd memory, of the cheap direction).
    MAF (default): ``forward`` is :math:`g` (density in one pass), ``rev`` is :math:`g^{-1}`
    (sampling in ``D`` passes). ``inverse_autoregressive=True`` (IAF) swaps them: ``forward``
    is :math:`g^{-1}` (``D`` passes), ``rev`` is :math:`g` (sampling in one pass). The log-det
    is :math:`\pm\sum_i \log|\partial T/\partial u_i|`, accumulated in float32 at least.

    Subclasses pass ``params_per_feature`` (``P``) and set :meth:`transform`.

    Args:
        dims_in: one vector input ``[(D,)]``.
        dims_c: vector conditions ``[(k,), ...]``; they enter the MADE unmasked.
        hidden_features: widths of the MADE's hidden layers.
        order: ``"sequential"`` (features in index order), ``"reversed"`` (the last feature
            first) or ``"random"`` (a random permutation); buffer ``made.order``.
        seed: draws the random order and the initial weights from a local generator with this
            seed (torch's global generator is untouched); ``None`` uses the global generator.
        inverse_autoregressive: the IAF orientation (one-pass sampling).
        params_per_feature: the transform's raw parameters per feature (set by the subclass).

    Raises:
        ValueError: not exactly one vector input, a condition that is not a vector, an unknown
            ``order``; at call time the errors of
            :meth:`~invertible.modules.InvertibleModule._checked`.
    """

    exact_inverse = True

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims], hidden_features: Sequence[int],
                 order: str, seed: Optional[int], inverse_autoregressive: bool,
                 params_per_feature: int) -> None:
        super().__init__(dims_in, dims_c)
        block = type(self).__name__
        self.features = vector_size(block, self.dims_in)
        for k, dc in enumerate(self.dims_c):
            if len(dc) != 1:
                raise ValueError(f"{block}: condition {k} must be a vector (k,), got shape {dc}.")
        self.seed = checked_seed(block, seed)
        self.inverse_autoregressive = bool(inverse_autoregressive)
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        permutation = autoregressive_order(self.features, order, generator, block)
        self.made = MADE(self.features, sum(dc[0] for dc in self.dims_c),
                         [int(w) for w in hidden_features], params_per_feature,
                         permutation, generator)

    def forward(self, x_or_z: Tensors, c: Optional[Tensors] = None, rev: bool = False,
                jac: bool = True) -> Outputs:
        """:math:`g` or :math:`g^{-1}` by direction and orientation; the log-det always."""
        (x,), cs = self._checked(x_or_z, c, rev)
        cond = None if not cs else cs[0] if len(cs) == 1 else torch.cat(cs, 1)
        if rev == self.inverse_autoregressive:  # the one-pass direction g
            y, log_jac = self.transform(x, self.made(x, cond), False)
        else:
            y, log_jac = self._inverse(x, cond)
        log_det = log_jac.sum(1, dtype=acc_dtype(log_jac.dtype))
        return (y,), (log_det if rev == self.inverse_autoregressive else -log_det).to(y.dtype)

    def _inverse(self, v: Tensor, cond: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """:math:`g^{-1}(v)` in ``D`` passes, and the forward log-derivatives at the result."""
        u, log_jac = torch.zeros_like(v), v
        for _ in range(self.features):
            u, log_jac = self.transform(v, self.made(u, cond), True)
        return u, log_jac

    def transform(self, x: Tensor, params: Tensor, rev: bool) -> Tuple[Tensor, Tensor]:
        """``T`` (``T^{-1}`` when ``rev``) of ``x`` ``(B, D)`` with the MADE's output ``params``
        ``(B, D P)``: the result and the forward map's log-derivatives ``(B, D)``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement transform(...)")

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return same_shape(type(self).__name__, input_dims)


class AutoregressiveAffine(_Autoregressive):
    r"""Masked autoregressive flow (MAF) step, or inverse autoregressive flow (IAF) step.

    :math:`y_i = x_i e^{s_i} + t_i` with :math:`(s_i^{raw}, t_i)` from a :class:`MADE` of
    :math:`x_{<i}` (in the block's order) and the conditions, and the clamped log-scale
    :math:`s = \mathrm{clamp} \cdot 0.636 \arctan(s^{raw})` of the couplings (``"ATAN"``);
    :math:`\log|\det J| = \sum_i s_i`. Density (``forward``) takes one MADE pass, sampling
    (``rev``) ``D`` sequential passes; ``inverse_autoregressive=True`` swaps the two (see
    :class:`_Autoregressive`, whose arguments it takes, plus ``clamp``). The MADE's last layer
    starts at zero, so the block starts as the identity.

    References: Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017 (arXiv:1705.07057); Kingma et al., "Improved Variational
    Inference with Inverse Autoregressive Flow", NeurIPS 2016 (arXiv:1606.04934).
    """

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = [],  # noqa: B006 - never mutated
                 hidden_features: Sequence[int] = (64, 64), order: str = "sequential",
                 seed: Optional[int] = None, clamp: float = 2.0,
                 inverse_autoregressive: bool = False) -> None:
        super().__init__(dims_in, dims_c, hidden_features, order, seed, inverse_autoregressive, 2)
        self.clamp = float(clamp)

    def transform(self, x: Tensor, params: Tensor, rev: bool) -> Tuple[Tensor, Tensor]:
        """The affine map, ``(s_raw, t)`` interleaved per feature."""
        p = params.unflatten(1, (self.features, 2))
        return affine(x, atan_clamp(p[..., 0], self.clamp), p[..., 1], rev)


class AutoregressiveRQSpline(_Autoregressive):
    r"""Autoregressive neural spline flow: a monotone rational-quadratic spline per feature.

    :math:`y_i = \mathrm{RQS}(x_i;\ \theta_i)` with the ``P = 3K + 1`` raw spline parameters
    :math:`\theta_i` of feature ``i`` (``widths K, heights K, bottom, left, deltas K-1``; ``3K``
    with identity tails) from a :class:`MADE` of :math:`x_{<i}` (in the block's order) and the
    conditions. The constraints, the bin search and the bin map are those of the coupling
    :class:`~invertible.modules.RationalQuadraticSpline` (child ``spline_base``, a
    :class:`~invertible.modules.splines.BinnedSplineBase`, then the knot derivatives), so outside
    the domain the map is affine (or the identity). :math:`\log|\det J| = \sum_i \ln
    \partial y_i/\partial x_i`. Density (``forward``) takes one MADE pass, sampling (``rev``)
    ``D`` sequential passes; ``inverse_autoregressive=True`` swaps the two (see
    :class:`_Autoregressive`, whose arguments it takes). The MADE's last layer starts at zero,
    so with the default domain the block starts as the identity.

    Args:
        bins: number of bins ``K``.
        min_bin_sizes, default_domain, identity_tails, domain_clamping: as in
            :class:`~invertible.modules.splines.BinnedSplineBase`.

    Raises:
        AssertionError: (``InvertibleAssertionError``, also a ``ValueError``) bad spline
            arguments, e.g. ``bins < 1`` or a domain too small for ``bins`` minimum bins.

    References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019
    (arXiv:1906.04032).
    """

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = [],  # noqa: B006 - never mutated
                 hidden_features: Sequence[int] = (64, 64), bins: int = 8,
                 order: str = "sequential", seed: Optional[int] = None,
                 inverse_autoregressive: bool = False,
                 min_bin_sizes: Tuple[float, float] = (0.1, 0.1),
                 default_domain: Tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0),
                 identity_tails: bool = False, domain_clamping: Optional[float] = None) -> None:
        try:
            spline_base = BinnedSplineBase(
                dims_in, None, bins=bins, parameter_counts={"deltas": bins - 1},
                min_bin_sizes=min_bin_sizes, default_domain=default_domain,
                identity_tails=identity_tails, domain_clamping=domain_clamping)
        except InvertibleAssertionError as error:  # name the public class
            raise InvertibleAssertionError(f"{type(self).__name__}: {error}") from None
        super().__init__(dims_in, dims_c, hidden_features, order, seed, inverse_autoregressive,
                         sum(spline_base.parameter_counts.values()))
        self.spline_base = spline_base

    def transform(self, x: Tensor, params: Tensor, rev: bool) -> Tuple[Tensor, Tensor]:
        """Split and constrain each feature's raw parameters; apply the spline."""
        base = self.spline_base
        parameters = constrain_deltas(base.constrain_parameters(
            base.split_parameters(params, self.features)))
        return base.binned_spline(x, parameters, rational_quadratic_spline, rev=rev)
