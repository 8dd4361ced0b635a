"""Binned-spline bookkeeping (`BinnedSplineBase`) and the spline coupling block (`BinnedSpline`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

from ..._errors import InvertibleAssertionError
from .._affine import identity
from .._common import Dims, SubnetConstructor
from .._spline_kernels import (
    ConstrainFn,
    SplineFn,
    TailsFn,
    affine_tails,
    binned_spline,
    clamp_domain,
    constrain_affine_tails,
    constrain_identity_tails,
    identity_tails,
    knot_extras,
    split_parameters,
)
from ..base import InvertibleModule
from ..coupling_layers import _BaseCouplingBlock

__all__ = ["BinnedSpline", "BinnedSplineBase", "check_spline_arguments"]

Params = Dict[str, Tensor]

#: (constrain, tails) kernels by ``identity_tails``; resolved once in ``__init__``.
_TAILS: Dict[bool, Tuple[ConstrainFn, TailsFn]] = {
    False: (constrain_affine_tails, affine_tails),
    True: (constrain_identity_tails, identity_tails),
}


def check_spline_arguments(
    block: str, bins: int, min_bin_sizes: Sequence[float], domain: Sequence[float]
) -> None:
    """FrEIA's spline argument checks, as ``InvertibleAssertionError`` (formatted messages, D30)."""
    checks = [
        (bins >= 1, f"bins must be >= 1, got bins={bins}"),
        (len(min_bin_sizes) == 2 and all(m >= 0 for m in min_bin_sizes),
         f"min_bin_sizes must be two sizes >= 0, got {tuple(min_bin_sizes)}"),
        (len(domain) == 4, f"default_domain must be (left, right, bottom, top), got {domain}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InvertibleAssertionError(f"{block}: {message}.")
    left, right, bottom, top = domain
    checks = [
        (right > left, f"default_domain right ({right}) must be > left ({left})"),
        (top > bottom, f"default_domain top ({top}) must be > bottom ({bottom})"),
        (right - left >= min_bin_sizes[0] * bins,
         f"{bins} bins of minimum width {min_bin_sizes[0]} do not fit into the domain width "
         f"{right - left} (right {right} - left {left})"),
        (top - bottom >= min_bin_sizes[1] * bins,
         f"{bins} bins of minimum height {min_bin_sizes[1]} do not fit into the domain height "
         f"{top - bottom} (top {top} - bottom {bottom})"),
    ]
    for ok, message in checks:
        if not ok:
            raise InvertibleAssertionError(f"{block}: {message}.")


class BinnedSplineBase(InvertibleModule):
    r"""Bookkeeping of monotone binned splines: raw parameter layout, constraints, bin search.

    Every transformed element gets ``P = sum(parameter_counts.values())`` raw parameters, in the
    order ``widths (K), heights (K)``, then ``bottom (1), left (1)`` (affine tails) or
    ``total_width (1)`` (identity tails), then the extra ``parameter_counts``. Constraints
    (``d`` = default domain, ``(m_x, m_y)`` = minimum bin sizes):

    * affine tails: ``left = raw + d0``, ``bottom = raw + d2``,
      ``w = m_x + softplus(raw + ln(exp((d1 - d0)/K - m_x) - 1))`` (``h`` alike), then widths
      and ``left`` scaled by ``clamp_domain(W)/W``, heights and ``bottom`` by
      ``clamp_domain(H)/H``. Outside the domain ``y = (H/W) x + bottom - (H/W) left``.
    * identity tails: ``T = clamp_domain(default_width softplus(raw + ln(e - 1)))``,
      ``left = bottom = -T/2``, ``w = T softmax(raw_w)``, ``h = T softmax(raw_h)``; the identity
      outside.

    ``clamp_domain(v) = dc tanh(v/dc)`` with ``dc = domain_clamping`` (``None``: no clamping).
    It has no ``forward``/``output_dims`` of its own.

    Args:
        dims_in: input shapes (one input).
        dims_c: condition shapes.
        bins: number of bins ``K``.
        parameter_counts: extra raw parameters per element (e.g. ``{"deltas": K - 1}``).
        min_bin_sizes: ``(m_x, m_y)``, minimum bin width and height (affine tails only).
        default_domain: ``(left, right, bottom, top)`` for raw parameters 0.
        identity_tails: identity outside a square domain instead of the affine tails.
        domain_clamping: soft limit of the domain's total width/height, or ``None``.

    Raises:
        AssertionError: (``InvertibleAssertionError``, also ``ValueError``) ``bins < 1``,
            negative minimum sizes, an empty domain or one too small for ``bins`` minimum bins.
    """

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = None,
        bins: int = 10,
        parameter_counts: Optional[Dict[str, int]] = None,
        min_bin_sizes: Tuple[float, float] = (0.1, 0.1),
        default_domain: Tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0),
        identity_tails: bool = False,
        domain_clamping: Optional[float] = None,
    ) -> None:
        super().__init__(dims_in, dims_c)
        check_spline_arguments(type(self).__name__, bins, min_bin_sizes, default_domain)
        domain = torch.tensor(default_domain, dtype=torch.float32)
        self.register_buffer("bins", torch.tensor(bins, dtype=torch.int32))
        self.register_buffer("min_bin_sizes", torch.tensor(min_bin_sizes, dtype=torch.float32))
        self.register_buffer("default_domain", domain)
        self.register_buffer("identity_tails", torch.tensor(bool(identity_tails)))
        self.register_buffer("default_width", domain[1] - domain[0])
        self.domain_clamping = domain_clamping
        tails: Dict[str, int] = {"total_width": 1} if identity_tails else {"bottom": 1, "left": 1}
        self.parameter_counts: Dict[str, int] = {
            "widths": int(bins), "heights": int(bins), **tails, **(parameter_counts or {})
        }
        self._constrain, self._tails = _TAILS[bool(identity_tails)]
        self._extras = knot_extras(self.parameter_counts)

    def split_parameters(self, parameters: Tensor, split_len: int) -> Params:
        """Split raw ``(B, split_len*P, *S)`` into ``{key: (B, *S, split_len, count)}``."""
        return split_parameters(parameters, split_len, self.parameter_counts)

    def clamp_domain(self, domain: Tensor) -> Tensor:
        """``domain`` unchanged, or ``dc * tanh(domain / dc)`` with ``dc = domain_clamping``."""
        return clamp_domain(domain, self.domain_clamping)

    def constrain_parameters(self, parameters: Params) -> Params:
        """Raw split parameters to bin widths, heights, ``left`` and ``bottom`` (see the class)."""
        return self._constrain(
            parameters, self.default_domain, self.min_bin_sizes, self.default_width,
            self.domain_clamping,
        )

    def binned_spline(
        self, x: Tensor, parameters: Params, spline: SplineFn, rev: bool = False
    ) -> Tuple[Tensor, Tensor]:
        """Apply ``spline`` per element of ``x`` ``(B, n, *S)``; return ``(out, (B,) log-det)``.

        ``spline(x, bin_parameters, rev=rev)`` gets ``left, right, bottom, top`` and, for every
        extra key ``k``, ``k_left``/``k_right`` (the values at the bin's knots), and returns the
        value and the forward log-derivative. The reverse log-det is minus the summed forward
        log-derivatives at the recovered points.
        """
        y, log_det = binned_spline(
            x.movedim(1, -1), parameters, spline, self._tails, rev, self._extras
        )
        return y.movedim(-1, 1), log_det


class BinnedSpline(_BaseCouplingBlock):
    r"""Coupling block whose halves go through per-element binned splines.

    ``y1 = spline1(x1; theta1([x2, c]))``, ``y2 = spline2(x2; theta2([y1, c]))`` (the flow of
    :class:`~invertible.modules.coupling_layers._BaseCouplingBlock`), where the raw parameters
    come from ``subnet1: l2 + cl -> l1 P`` and ``subnet2: l1 + cl -> l2 P`` (built in this order)
    and are split and constrained by the child ``spline_base``
    (:class:`BinnedSplineBase`, which receives ``**kwargs``). Subclasses implement
    :meth:`_spline1`/:meth:`_spline2` and may extend :meth:`constrain_parameters`.

    Args:
        dims_in: one input shape ``[(C, *S)]``.
        dims_c: condition shapes sharing the input's ``S``.
        subnet_constructor: ``f(c_in, c_out) -> nn.Module``.
        split_len: size of half 1 (as in ``_BaseCouplingBlock``).
        **kwargs: arguments of :class:`BinnedSplineBase` (``bins``, ``min_bin_sizes`` ...).
    """

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = None,
        subnet_constructor: Optional[SubnetConstructor] = None,
        split_len: Union[float, int] = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(dims_in, dims_c, clamp=0.0, clamp_activation=identity,
                         split_len=split_len)
        try:
            self.spline_base = BinnedSplineBase(dims_in, dims_c, **kwargs)
        except InvertibleAssertionError as error:
            raise InvertibleAssertionError(f"{type(self).__name__}: {error}") from None
        n_params = sum(self.spline_base.parameter_counts.values())
        self._n_raw = n_params  # raw parameters per transformed channel
        l1, l2, cl = self.split_len1, self.split_len2, self.condition_length
        self._build_subnets(subnet_constructor, subnet1=(l2 + cl, l1 * n_params),
                            subnet2=(l1 + cl, l2 * n_params))

    def _coupling1(self, x1: Tensor, u2: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        return self._coupling("subnet1", x1, u2, self._spline1, rev)

    def _coupling2(self, x2: Tensor, u1: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        return self._coupling("subnet2", x2, u1, self._spline2, rev)

    def _coupling(
        self, name: str, x: Tensor, u: Tensor, spline: SplineFn, rev: bool
    ) -> Tuple[Tensor, Tensor]:
        """Parameters of half ``x`` from subnet ``name`` on ``u``; apply ``spline`` to ``x``."""
        n = x.shape[1]
        raw = self._subnet_out(name, u, n * self._n_raw)
        parameters = self.constrain_parameters(self.spline_base.split_parameters(raw, n))
        return self.spline_base.binned_spline(x, parameters, spline, rev=rev)

    def constrain_parameters(self, parameters: Params) -> Params:
        """Delegates to ``spline_base``; subclasses add their extra constraints."""
        return self.spline_base.constrain_parameters(parameters)

    def _spline1(self, x: Tensor, parameters: Params, rev: bool = False) -> Tuple[Tensor, Tensor]:
        """The bin map of half 1: ``(value, forward log-derivative)`` per element."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _spline1(...)")

    def _spline2(self, x: Tensor, parameters: Params, rev: bool = False) -> Tuple[Tensor, Tensor]:
        """The bin map of half 2: ``(value, forward log-derivative)`` per element."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _spline2(...)")

