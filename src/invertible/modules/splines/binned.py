"""Binned-spline bookkeeping (`BinnedSplineBase`) and the spline coupling block (`BinnedSpline`)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

from ..._errors import InvertibleAssertionError
from .._affine import identity
from .._common import Dims, SubnetConstructor
from .._coupling import CouplingBlock
from .._spline_kernels import (
    SplineFn,
    TailsFn,
    affine_tails,
    binned_spline,
    clamp_domain,
    constrain_affine_tails,
    constrain_fixed_square,
    constrain_identity_tails,
    identity_tails,
    knot_extras,
    split_parameters,
)
from ..base import InvertibleModule, parameters_text

__all__ = ["BinnedSpline", "BinnedSplineBase", "check_spline_arguments"]

Params = Dict[str, Tensor]

#: (constrain, tails) kernels by (``identity_tails``, ``learn_domain``); resolved in ``__init__``.
_TAILS: Dict[Tuple[bool, bool], Tuple[Callable[..., Params], TailsFn]] = {
    (False, True): (constrain_affine_tails, affine_tails),
    (True, True): (constrain_identity_tails, identity_tails),
    (True, False): (constrain_fixed_square, identity_tails),
}


def check_spline_arguments(
    block: str, bins: int, min_bin_sizes: Sequence[float], domain: Sequence[float]
) -> None:
    """FrEIA's spline argument checks, as ``InvertibleAssertionError`` (FrEIA asserted, with
    unformatted messages; these name the block and the values)."""
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


def _check_fixed_square(block: str, identity_tails: bool, domain_clamping: Optional[float],
                        default_domain: Tuple[float, float, float, float]) -> None:
    """``learn_domain=False`` needs identity tails, no domain clamping and a centred square
    ``(-B, B, -B, B)``: the fixed square is ``[-B, B]^2``, so any other domain would be
    silently moved."""
    left, right, bottom, top = (float(v) for v in default_domain)
    if not identity_tails or domain_clamping is not None:
        raise ValueError(
            f"{block}: learn_domain=False fixes the square of identity tails; it needs "
            f"identity_tails=True and domain_clamping=None, got identity_tails="
            f"{identity_tails!r}, domain_clamping={domain_clamping!r}."
        )
    if not (left == bottom == -right == -top):
        raise ValueError(
            f"{block}: learn_domain=False fixes the square [-B, B]^2; default_domain must be "
            f"(-B, B, -B, B), got {tuple(default_domain)}."
        )


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
    * identity tails with ``learn_domain=False`` (Durkan et al.'s fixed square, an
      ``invertible`` option): ``T = default_width`` fixed, no ``total_width`` parameter,
      ``w = T softmax(b(raw_w))``, ``h = T softmax(b(raw_h))`` with the logits soft-bounded
      (``b(u) = u / (1 + 2|u| / ln R)``) so that no two widths or heights differ by a factor
      ``R = 1000`` or more; the identity outside.

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
        learn_domain: ``False`` (identity tails only) fixes the square at the default domain's
            width, with bounded bin ratios: for data that fill a known box this fits better
            than a learned domain (see the NSF row of the training benchmark in README).

    Raises:
        AssertionError: (``InvertibleAssertionError``, also ``ValueError``) ``bins < 1``,
            negative minimum sizes, an empty domain or one too small for ``bins`` minimum bins.
        ValueError: ``learn_domain=False`` without ``identity_tails``, with
            ``domain_clamping``, or with a ``default_domain`` other than a centred square
            ``(-B, B, -B, B)``.
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
        learn_domain: bool = True,
    ) -> None:
        super().__init__(dims_in, dims_c)
        check_spline_arguments(type(self).__name__, bins, min_bin_sizes, default_domain)
        if not learn_domain:
            _check_fixed_square(type(self).__name__, identity_tails, domain_clamping,
                                default_domain)
        domain = torch.tensor(default_domain, dtype=torch.float32)
        self.register_buffer("bins", torch.tensor(bins, dtype=torch.int32))
        self.register_buffer("min_bin_sizes", torch.tensor(min_bin_sizes, dtype=torch.float32))
        self.register_buffer("default_domain", domain)
        self.register_buffer("identity_tails", torch.tensor(bool(identity_tails)))
        self.register_buffer("default_width", domain[1] - domain[0])
        self.domain_clamping = domain_clamping
        tails: Dict[str, int] = ({"total_width": 1} if learn_domain else {}) if identity_tails \
            else {"bottom": 1, "left": 1}
        self.parameter_counts: Dict[str, int] = {
            "widths": int(bins), "heights": int(bins), **tails, **(parameter_counts or {})
        }
        self.learn_domain = bool(learn_domain)
        self._constrain, self._tails = _TAILS[(bool(identity_tails), self.learn_domain)]
        self._extras = knot_extras(list(self.parameter_counts))

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
        """Apply ``spline`` per element of ``x`` ``(B, n, *S)``: ``(out, log-derivatives)``.

        ``spline(x, left=, right=, bottom=, top=, rev=)`` also gets ``k_left``/``k_right`` (the
        values at the bin's knots) for every extra key ``k``, and returns the value and the
        forward log-derivative. The second result holds the forward map's log-derivative of
        every element (at the recovered points when ``rev``), channels last.
        """
        y, log_jac = binned_spline(
            x.movedim(1, -1), parameters, spline, self._tails, rev, self._extras
        )
        return y.movedim(-1, 1), log_jac


class BinnedSpline(CouplingBlock):
    r"""Coupling block whose halves go through per-element binned splines.

    ``y1 = S(x1; theta1([x2, c]))``, ``y2 = S(x2; theta2([y1, c]))`` (the flow of
    :class:`~invertible.modules.CouplingBlock`), where the raw parameters come from
    ``subnet1: l2 + cl -> l1 P`` and ``subnet2: l1 + cl -> l2 P`` (built in this order) and are
    split and constrained by the child ``spline_base`` (:class:`BinnedSplineBase`, which
    receives ``**kwargs``). Subclasses set :meth:`spline`, the map inside one bin, and may
    extend :meth:`constrain_parameters`.

    Args:
        dims_in: one input shape ``[(C, *S)]``.
        dims_c: condition shapes ``(k, *S)``, or vectors ``(k,)`` for an image input.
        subnet_constructor: ``f(c_in, c_out) -> nn.Module``.
        split_len: size of half 1 (as in :class:`~invertible.modules.CouplingBlock`).
        **kwargs: arguments of :class:`BinnedSplineBase` (``bins``, ``min_bin_sizes`` ...).
    """

    subnets = {"subnet1": 1, "subnet2": 2}  # noqa: RUF012 - a class-level declaration

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = None,
        subnet_constructor: Optional[SubnetConstructor] = None,
        split_len: Union[float, int] = 0.5,
        **kwargs: Any,
    ) -> None:
        InvertibleModule.__init__(self, dims_in, dims_c)
        self._setup(0.0, identity, split_len)
        options = inspect.signature(BinnedSplineBase.__init__).parameters
        unknown = [key for key in kwargs if key not in options or key in ("dims_in", "dims_c")]
        if unknown:  # the keywords pass through **kwargs: name the public class and its options
            own = parameters_text(BinnedSpline.__init__, ("self", "kwargs"))
            spline = parameters_text(BinnedSplineBase.__init__, (
                "self", "dims_in", "dims_c", "parameter_counts"))
            raise TypeError(
                f"{type(self).__name__}: got an unexpected keyword argument {unknown[0]!r}; it "
                f"takes {type(self).__name__}({own}, {spline})."
            )
        try:
            self.spline_base = BinnedSplineBase(dims_in, dims_c, **kwargs)
        except InvertibleAssertionError as error:  # name the public class
            raise InvertibleAssertionError(f"{type(self).__name__}: {error}") from None
        self.params_per_channel = sum(self.spline_base.parameter_counts.values())
        self._build_subnets(subnet_constructor)

    def transform(self, x: Tensor, params: Tuple[Tensor, ...], rev: bool) -> Tuple[Tensor, Tensor]:
        """Split and constrain the raw parameters of ``x``'s channels; apply the spline."""
        parameters = self.constrain_parameters(
            self.spline_base.split_parameters(params[0], x.shape[1]))
        return self.spline_base.binned_spline(x, parameters, self.spline, rev=rev)

    def constrain_parameters(self, parameters: Params) -> Params:
        """Delegates to ``spline_base``; subclasses add their extra constraints."""
        return self.spline_base.constrain_parameters(parameters)

    def spline(self, x: Tensor, *, rev: bool = False, **bin_parameters: Tensor
               ) -> Tuple[Tensor, Tensor]:
        """The map inside one bin: ``(value, forward log-derivative)`` per element."""
        raise NotImplementedError(f"{type(self).__name__} does not implement spline(...)")
