"""Rational-quadratic splines: the coupling block and the element-wise (non-coupling) block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .._affine import acc_dtype
from .._common import Dims, ShapeList, SubnetConstructor, built_subnet, channel_input_shape
from .._spline_kernels import knot_derivatives, rational_quadratic_spline
from .binned import BinnedSpline, BinnedSplineBase

__all__ = [
    "ElementwiseRationalQuadraticSpline",
    "RationalQuadraticSpline",
    "rational_quadratic_spline",
]

Params = Dict[str, Tensor]


def constrain_deltas(parameters: Params) -> Params:
    """Replace raw ``deltas`` (K-1) by all K+1 knot derivatives ``[H/W, softplus(...), H/W]``."""
    deltas = knot_derivatives(parameters["deltas"], parameters["widths"], parameters["heights"])
    return {**parameters, "deltas": deltas}


class RationalQuadraticSpline(BinnedSpline):
    r"""Coupling block with monotone rational-quadratic splines (Neural Spline Flows).

    A :class:`BinnedSpline` with ``parameter_counts={"deltas": bins - 1}``: ``P = 3K + 1`` raw
    parameters per element (``widths K, heights K, bottom, left, deltas K-1``), or ``3K`` with
    identity tails. Inner knot derivatives are ``softplus(raw + ln(e - 1))`` (1 for raw zeros);
    both boundary derivatives equal the tail slope ``H/W``, so the map is C^1 at the domain
    edges. The bin map is :func:`rational_quadratic_spline`. Other arguments as in
    :class:`BinnedSpline` and :class:`BinnedSplineBase`.

    References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019
    (arXiv:1906.04032).
    """

    def __init__(self, *args: Any, bins: int = 10, **kwargs: Any) -> None:
        super().__init__(*args, bins=bins, parameter_counts={"deltas": bins - 1}, **kwargs)

    def constrain_parameters(self, parameters: Params) -> Params:
        """Bins from ``spline_base``, then the ``K + 1`` knot derivatives."""
        return constrain_deltas(super().constrain_parameters(parameters))

    def spline(self, x: Tensor, *, rev: bool = False, **bin_parameters: Tensor
               ) -> Tuple[Tensor, Tensor]:
        """:func:`rational_quadratic_spline` inside one bin."""
        return rational_quadratic_spline(x, **bin_parameters, rev=rev)


class ElementwiseRationalQuadraticSpline(BinnedSplineBase):
    r"""A rational-quadratic spline on every element, without coupling.

    ``y_i = RQS(x_i; theta_i)`` for each element ``i`` of ``x`` ``(B, C, *S)``, with raw
    parameters ``theta`` of shape ``(B, C P, *S)`` (constraints of
    :class:`RationalQuadraticSpline`). Unconditional: ``theta`` is the learned
    ``spline_parameters (C P, *S)``, zeros at start (the identity map), shared by the batch; a
    ``subnet_constructor`` is then ignored. Conditional: ``theta = subnet(cat(c, dim=1))`` with
    ``subnet: sum(c channels) -> C P``; the conditions keep their dtype (FrEIA cast them to
    float32, which broke float64 models).
    ``log|det J| = sum_i ln dy_i/dx_i``.

    Args:
        dims_in: one input shape ``[(C, *S)]``.
        dims_c: condition shapes (``[]``: unconditional).
        subnet_constructor: ``f(c_in, c_out) -> nn.Module`` (conditional only).
        bins: number of bins ``K``.
        **kwargs: other arguments of :class:`BinnedSplineBase`.

    References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019
    (arXiv:1906.04032).
    """

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = [],  # noqa: B006 - FrEIA's default, never mutated
        subnet_constructor: Optional[SubnetConstructor] = None,
        bins: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(dims_in, dims_c, bins=bins, parameter_counts={"deltas": bins - 1},
                         **kwargs)
        self.channels = channel_input_shape(type(self).__name__, self.dims_in)[0]
        self.condition_length = sum(dc[0] for dc in self.dims_c)
        self.conditional = len(self.dims_c) > 0
        n_params = self.channels * sum(self.parameter_counts.values())
        self._n_raw = n_params  # raw parameters per position, checked against the subnet
        if self.conditional:
            self.subnet = built_subnet(f"{type(self).__name__} with conditions",
                                       subnet_constructor, self.condition_length, n_params,
                                       "subnet")
        else:
            shape = (n_params, *self.dims_in[0][1:])
            self.spline_parameters = nn.Parameter(torch.zeros(shape))
            self.fixed_size = True  # one parameter set per position: the extents are fixed

    def forward(
        self,
        x_or_z: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = None,
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Apply the spline (its inverse when ``rev``); the log-det is always computed."""
        (x,), cs = self._checked(x_or_z, c, rev)
        raw = self._raw_parameters(x, cs)
        parameters = self.constrain_parameters(self.split_parameters(raw, self.channels))
        y, log_jac = self.binned_spline(x, parameters, rational_quadratic_spline, rev=rev)
        log_det = log_jac.sum(tuple(range(1, log_jac.dim())), dtype=acc_dtype(log_jac.dtype))
        return (y,), (-log_det if rev else log_det).to(y.dtype)

    def constrain_parameters(self, parameters: Params) -> Params:
        """Bins as in :class:`BinnedSplineBase`, then the ``K + 1`` knot derivatives."""
        return constrain_deltas(super().constrain_parameters(parameters))

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The output shape equals the input shape."""
        return [tuple(int(d) for d in s) for s in input_dims]

    def _raw_parameters(self, x: Tensor, cs: List[Tensor]) -> Tensor:
        """``(B, C P, *S)`` raw parameters: the subnet's output or the repeated parameters."""
        if not self.conditional:
            return self.spline_parameters.unsqueeze(0).expand(x.shape[0], -1, *x.shape[2:])
        raw = self.subnet(torch.cat(cs, dim=1))
        want = (x.shape[0], self._n_raw, *x.shape[2:])
        if tuple(raw.shape) != want:
            raise ValueError(
                f"{type(self).__name__}: subnet returned raw parameters of shape "
                f"{tuple(raw.shape)}, expected {want}."
            )
        return raw
