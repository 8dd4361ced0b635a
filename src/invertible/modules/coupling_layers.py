"""Affine coupling blocks: NICE, RealNVP, Glow, GIN, one-sided and condition-only affine maps."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from ._affine import (
    ClampActivation,
    additive,
    affine,
    centre_channels,
    clamped,
    identity,
    resolve_clamp_activation,
    split_lengths,
    split_scale_shift,
    warn_empty_half,
)
from ._common import (
    Dims,
    ShapeList,
    SubnetConstructor,
    built_subnet,
    cat_conditions,
    channel_input_shape,
    check_condition_shapes,
    check_tensor,
    condition_list,
    module_reference,
    same_shape,
    single_input_tensor,
    zero_log_det,
)
from ._fused import ClampKind, coupling_step, fused_clamp_kind, glow_couple
from .base import InvertibleModule

__all__ = [
    "AffineCouplingOneSided",
    "ConditionalAffineTransform",
    "GINCouplingBlock",
    "GLOWCouplingBlock",
    "NICECouplingBlock",
    "RNVPCouplingBlock",
]

LogDet = Union[Tensor, float]


class _BaseCouplingBlock(InvertibleModule):
    r"""Shared base of the coupling blocks: split, conditions, clamp and the two coupling steps.

    The input ``x`` of shape ``(B, C, *S)`` is split along channels into ``x1`` (the first
    ``split_len1`` channels) and ``x2`` (the rest). With conditions ``c`` (concatenated after the
    data along dim 1) the block computes

        forward:  y1 = g1(x1 | [x2, c]),  y2 = g2(x2 | [y1, c])
        reverse:  x2 = g2^-1(y2 | [y1, c]),  x1 = g1^-1(y1 | [x2, c])

    where ``g1`` is :meth:`_coupling1` and ``g2`` is :meth:`_coupling2`, and returns
    ``cat(y1, y2)`` and ``log|det J| = J1 + J2`` as a ``(B,)`` tensor. Subclasses build their
    subnets and implement the two hooks; everything else lives here. Affine variants clamp their
    raw log-scale as ``s = clamp * f_clamp(s_raw)`` (no division by ``clamp``).

    Args:
        dims_in: one input shape ``[(C, *S)]``.
        dims_c: condition shapes; each must share the input's non-channel dims ``S``.
        clamp: scale of the clamped log-scale, stored as attribute ``clamp``.
        clamp_activation: ``"ATAN"`` (``0.636 * atan``), ``"TANH"``, ``"SIGMOID"``
            (``2 * (sigmoid - 0.5)``) or a callable (make it a module-level function so that
            ``torch.save(model)`` can pickle it). Stored as attribute ``f_clamp``.
        split_len: size of half 1, a fraction in [0, 1] (Python ``round``, half to even) or an
            int in [0, C].
        subnet_constructor: (subclasses) ``f(c_in, c_out) -> nn.Module`` mapping
            ``(B, c_in, *S)`` to ``(B, c_out, *S)``, called with two positional ints.

    Raises:
        ValueError: bad ``split_len`` or unknown ``clamp_activation``; more than one input. At
            call time: not exactly one input, missing/unexpected/extra conditions, an input or
            condition of another shape than declared or on another device than the parameters,
            a subnet output with the wrong channels.
        AssertionError: (an ``InvertibleAssertionError``, also a ``ValueError``) a condition
            whose non-channel dims differ from the input's.
        TypeError: (subclasses) no ``subnet_constructor``, or one that does not return an
            ``nn.Module``; at call time an input or condition whose dtype differs from the
            parameters' outside ``torch.autocast``.

    Warns:
        UserWarning: an empty half (``split_len`` 0 or C) without conditions: the spec keeps it
            valid, but the block is then a learned constant affine map.
    """

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = [],  # noqa: B006 - FrEIA's default, never mutated
        clamp: float = 2.0,
        clamp_activation: Union[str, ClampActivation] = "ATAN",
        split_len: Union[float, int] = 0.5,
    ) -> None:
        super().__init__(dims_in, dims_c)
        block = type(self).__name__
        self.channels = channel_input_shape(block, self.dims_in)[0]
        self.ndims = len(self.dims_in[0])
        self.split_len1, self.split_len2 = split_lengths(block, self.channels, split_len)
        check_condition_shapes(block, self.dims_in, self.dims_c)
        self.conditional = len(self.dims_c) > 0
        self.condition_length = sum(dc[0] for dc in self.dims_c)
        if not self.conditional:
            warn_empty_half(block, split_len, self.split_len1, self.split_len2)
        self.clamp = clamp
        self.f_clamp = resolve_clamp_activation(block, clamp_activation)

    def forward(
        self,
        x: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = [],
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Apply both coupling steps (in reverse order when ``rev``); see the class docstring.

        Args:
            x: a list or tuple holding the one input tensor ``(B, C, *S)``.
            c: one tensor per entry of ``dims_c`` (a single tensor is accepted as ``[c]``).
            rev: run the inverse.
            jac: ignored; the log-det is always computed.
        """
        x_in, cs = self._checked_inputs(x, c)
        return self._couple(x_in, cs, rev)

    def _couple(self, x_in: Tensor, cs: List[Tensor], rev: bool) -> Tuple[Tuple[Tensor], Tensor]:
        """Both coupling steps on the checked input ``x_in`` and conditions ``cs``."""
        x1, x2 = x_in.split_with_sizes([self.split_len1, self.split_len2], 1)
        if not rev:
            y1, j1 = self._coupling1(x1, cat_conditions(x2, cs))
            y2, j2 = self._coupling2(x2, cat_conditions(y1, cs))
        else:
            y2, j2 = self._coupling2(x2, cat_conditions(x1, cs), rev=True)
            y1, j1 = self._coupling1(x1, cat_conditions(y2, cs), rev=True)
        out = torch.cat((y1, y2), dim=1)
        return (out,), zero_log_det(out) + j1 + j2

    def _coupling1(self, x1: Tensor, u2: Tensor, rev: bool = False) -> Tuple[Tensor, LogDet]:
        """Transform half 1 given ``u2 = cat(half 2, *c)``; return it and its log-det."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _coupling1(...)")

    def _coupling2(self, x2: Tensor, u1: Tensor, rev: bool = False) -> Tuple[Tensor, LogDet]:
        """Transform half 2 given ``u1 = cat(half 1, *c)``; return it and its log-det."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _coupling2(...)")

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The output shape equals the input shape (exactly one input)."""
        return same_shape(type(self).__name__, input_dims)

    def _build_subnets(self, subnet_constructor: Optional[SubnetConstructor],
                       **sizes: Tuple[int, int]) -> None:
        """Build ``name = subnet_constructor(c_in, c_out)`` for each keyword, in the given order."""
        for name, (c_in, c_out) in sizes.items():
            setattr(self, name, built_subnet(type(self).__name__, subnet_constructor, c_in, c_out,
                                             name))

    def _subnet_out(self, name: str, u: Tensor, expected: int) -> Tensor:
        """Run subnet ``name`` on ``u``; raise ``ValueError`` if its channel count is wrong."""
        a = getattr(self, name)(u)
        if not torch.jit.is_tracing() and (a.dim() < 2 or a.shape[1] != expected):
            got = f"{a.shape[1]} channels" if a.dim() >= 2 else f"a {a.dim()}-dim tensor"
            raise ValueError(
                f"{type(self).__name__}: subnet {name!r} returned {got} (output shape "
                f"{tuple(a.shape)}), expected {expected} channels (input had {u.shape[1]})."
            )
        return a

    def _clamped(self, s_raw: Tensor) -> Tensor:
        """The clamped log-scale ``clamp * f_clamp(s_raw)``."""
        return clamped(self.f_clamp, s_raw, self.clamp)

    def _scale_shift(self, name: str, u: Tensor, n: int) -> Tuple[Tensor, Tensor]:
        """Clamped log-scale and shift of ``n`` channels from subnet ``name`` (s first, then t)."""
        s_raw, t = split_scale_shift(self._subnet_out(name, u, 2 * n), n)
        return self._clamped(s_raw), t

    def _checked_inputs(
        self, x: Sequence[Tensor], c: Optional[Sequence[Tensor]]
    ) -> Tuple[Tensor, List[Tensor]]:
        """Validate the call with Python ints only: one input and ``len(dims_c)`` conditions,
        each a floating tensor of its declared shape on the parameters' device and (outside
        autocast) of their dtype. Shapes are not compared under ``torch.jit.trace``."""
        block = type(self).__name__
        x_in = single_input_tensor(block, x)
        cs = condition_list(block, c, self.dims_c)
        like = module_reference(self)
        check_tensor(block, "the input", x_in, self.dims_in[0], like)
        for k, (t, shape) in enumerate(zip(cs, self.dims_c)):
            check_tensor(block, f"condition {k}", t, shape, like)
        return x_in, cs


class NICECouplingBlock(_BaseCouplingBlock):
    r"""Additive coupling: ``y1 = x1 + F([x2, c])``, ``y2 = x2 + G([y1, c])``; log-det 0.

    Volume preserving. Subnets, built in this order: ``F: l2 + cl -> l1`` and
    ``G: l1 + cl -> l2`` (``l1``/``l2`` the half sizes, ``cl`` the condition channels). Uses the
    base with ``clamp=0.0`` and the identity as clamp activation. Arguments as in
    :class:`_BaseCouplingBlock`.

    References: Dinh, Krueger, Bengio, "NICE: Non-linear Independent Components Estimation",
    ICLR 2015 workshop (arXiv:1410.8516).
    """

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = [],  # noqa: B006 - FrEIA's default, never mutated
        subnet_constructor: Optional[SubnetConstructor] = None,
        split_len: Union[float, int] = 0.5,
    ) -> None:
        super().__init__(dims_in, dims_c, clamp=0.0, clamp_activation=identity, split_len=split_len)
        l1, l2, cl = self.split_len1, self.split_len2, self.condition_length
        self._build_subnets(subnet_constructor, F=(l2 + cl, l1), G=(l1 + cl, l2))

    def _coupling1(self, x1: Tensor, u2: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        return additive(x1, self._subnet_out("F", u2, self.split_len1), rev)

    def _coupling2(self, x2: Tensor, u1: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        return additive(x2, self._subnet_out("G", u1, self.split_len2), rev)


class _AffineCoupling(_BaseCouplingBlock):
    """Shared constructor of the clamped affine couplings (FrEIA's common signature).

    Builds ``name = subnet_constructor(c_in, c_out)`` for each entry of :meth:`_subnet_sizes`,
    in its order (Appendix B). Arguments as in :class:`_BaseCouplingBlock`. Glow, one-sided
    and condition-only couplings with a built-in clamp run large tensors through the eager
    fused kernels of ``_fused.py`` (first-order gradients only; ``fused_kernels = False`` on a
    block or class restores plain autograd ops and higher-order gradients).
    """

    #: Use the eager fused kernels of ``_fused.py`` where they are faster (first order only).
    fused_kernels: bool = True

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = [],  # noqa: B006 - FrEIA's default, never mutated
        subnet_constructor: Optional[SubnetConstructor] = None,
        clamp: float = 2.0,
        clamp_activation: Union[str, ClampActivation] = "ATAN",
        split_len: Union[float, int] = 0.5,
    ) -> None:
        super().__init__(dims_in, dims_c, clamp, clamp_activation, split_len=split_len)
        self._build_subnets(subnet_constructor, **self._subnet_sizes())

    def _subnet_sizes(self) -> Dict[str, Tuple[int, int]]:
        """``{name: (c_in, c_out)}`` of the subnets, in construction order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _subnet_sizes()")

    def _fused_kind(self, x: Tensor, rev: bool, halves: int = 2) -> Optional[ClampKind]:
        """The fused form of ``f_clamp`` if this call on ``x`` (split into ``halves`` halves)
        should take ``_fused.py``'s kernels (see :func:`fused_clamp_kind`), else None."""
        if not self.fused_kernels or (halves == 2 and 0 in (self.split_len1, self.split_len2)):
            return None
        return fused_clamp_kind(self.f_clamp, x, rev, halves)

    def _subnet_on(self, name: str, cs: List[Tensor], n: int, x: Tensor) -> Tensor:
        """Subnet ``name`` on ``cat(x, *cs)``, checked to return ``2 n`` channels."""
        return self._subnet_out(name, cat_conditions(x, cs), 2 * n)


class RNVPCouplingBlock(_AffineCoupling):
    r"""RealNVP coupling with separate scale and shift subnets.

    ``y1 = x1 * exp(s2) + t2`` with ``s2 = clamp * f_clamp(subnet_s2([x2, c]))``,
    ``t2 = subnet_t2([x2, c])``; then ``y2 = x2 * exp(s1) + t1`` from ``[y1, c]`` through
    ``subnet_s1``/``subnet_t1``. ``log|det J| = sum(s1) + sum(s2)``. Subnets, built in this order:
    ``subnet_s1, subnet_t1: l1 + cl -> l2``; ``subnet_s2, subnet_t2: l2 + cl -> l1``.
    Arguments as in :class:`_BaseCouplingBlock`.

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017
    (arXiv:1605.08803).
    """

    def _subnet_sizes(self) -> Dict[str, Tuple[int, int]]:
        """``subnet_s1``, ``subnet_t1``: ``l1 + cl -> l2``; ``subnet_s2``, ``subnet_t2``: back."""
        l1, l2, cl = self.split_len1, self.split_len2, self.condition_length
        return {"subnet_s1": (l1 + cl, l2), "subnet_t1": (l1 + cl, l2),
                "subnet_s2": (l2 + cl, l1), "subnet_t2": (l2 + cl, l1)}

    def _coupling1(self, x1: Tensor, u2: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        s = self._clamped(self._subnet_out("subnet_s2", u2, self.split_len1))
        return affine(x1, s, self._subnet_out("subnet_t2", u2, self.split_len1), rev)

    def _coupling2(self, x2: Tensor, u1: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        s = self._clamped(self._subnet_out("subnet_s1", u1, self.split_len2))
        return affine(x2, s, self._subnet_out("subnet_t1", u1, self.split_len2), rev)


class _GlowLayoutCoupling(_AffineCoupling):
    """Shared layout of GLOW and GIN: one subnet per half predicts ``[s_raw, t]`` together.

    Subclasses choose the per-half transform in :meth:`_transform`.
    """

    def _subnet_sizes(self) -> Dict[str, Tuple[int, int]]:
        """``subnet1: l1 + cl -> 2 l2``, ``subnet2: l2 + cl -> 2 l1``."""
        l1, l2, cl = self.split_len1, self.split_len2, self.condition_length
        return {"subnet1": (l1 + cl, 2 * l2), "subnet2": (l2 + cl, 2 * l1)}

    def _transform(self, x: Tensor, s: Tensor, t: Tensor, rev: bool) -> Tuple[Tensor, Tensor]:
        """The affine map of one half and its log-det."""
        raise NotImplementedError

    def _coupling1(self, x1: Tensor, u2: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        s, t = self._scale_shift("subnet2", u2, self.split_len1)
        return self._transform(x1, s, t, rev)

    def _coupling2(self, x2: Tensor, u1: Tensor, rev: bool = False) -> Tuple[Tensor, Tensor]:
        s, t = self._scale_shift("subnet1", u1, self.split_len2)
        return self._transform(x2, s, t, rev)


class GLOWCouplingBlock(_GlowLayoutCoupling):
    r"""Glow's affine coupling: one subnet per half predicts log-scale and shift together.

    ``[s2_raw, t2] = subnet2([x2, c])`` (the first ``l1`` channels are the raw log-scale, the
    rest the shift), ``y1 = x1 * exp(clamp * f_clamp(s2_raw)) + t2``; then the same for half 2
    from ``[y1, c]`` through ``subnet1``. ``log|det J|`` is the sum of both log-scales.
    Subnets, built in this order: ``subnet1: l1 + cl -> 2 l2``, ``subnet2: l2 + cl -> 2 l1``.
    Arguments as in :class:`_BaseCouplingBlock`.

    References: Kingma, Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    NeurIPS 2018 (arXiv:1807.03039).
    """

    def _transform(self, x: Tensor, s: Tensor, t: Tensor, rev: bool) -> Tuple[Tensor, Tensor]:
        return affine(x, s, t, rev)

    def _couple(self, x_in: Tensor, cs: List[Tensor], rev: bool) -> Tuple[Tuple[Tensor], Tensor]:
        """Both affine halves, through the fused kernels where :meth:`_fused_kind` allows."""
        kind = self._fused_kind(x_in, rev)
        if kind is None:
            return super()._couple(x_in, cs, rev)
        l1, l2 = self.split_len1, self.split_len2
        x1, x2 = x_in.split_with_sizes([l1, l2], 1)
        out, log_det = glow_couple(
            x1, x2, partial(self._subnet_on, "subnet1", cs, l2),
            partial(self._subnet_on, "subnet2", cs, l1), kind, self.clamp, rev,
        )
        return (out,), log_det


class GINCouplingBlock(_GlowLayoutCoupling):
    r"""GIN: Glow's coupling with the log-scale centred over channels, so volume preserving.

    As :class:`GLOWCouplingBlock`, but after clamping ``s <- s - mean(s, dim=1)``: the mean is
    over the channel axis only, separately for every sample and spatial position. Each half's
    log-scale then sums to 0 at every position and ``log|det J| = 0`` exactly (returned as
    ``(B,)`` zeros). Not the same as ``AllInOneBlock(gin_block=True)``, which centres over all
    non-batch dims. Subnets and arguments as in :class:`GLOWCouplingBlock`.

    References: Sorrenson, Rother, Koethe, "Disentanglement by Nonlinear ICA with General
    Incompressible-flow Networks (GIN)", ICLR 2020 (arXiv:2001.04872).
    """

    def _transform(self, x: Tensor, s: Tensor, t: Tensor, rev: bool) -> Tuple[Tensor, Tensor]:
        y = affine(x, centre_channels(s), t, rev)[0]
        return y, zero_log_det(y)


class AffineCouplingOneSided(_AffineCoupling):
    r"""Half a Glow block: only half 2 is transformed, half 1 passes through unchanged.

    ``[s_raw, t] = subnet([x1, c])``, ``s = clamp * f_clamp(s_raw)``,
    ``y = cat(x1, x2 * exp(s) + t)``, ``log|det J| = sum(s)``. One subnet
    ``subnet: l1 + cl -> 2 l2``. Arguments as in :class:`_BaseCouplingBlock`.

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017
    (arXiv:1605.08803).
    """

    def _subnet_sizes(self) -> Dict[str, Tuple[int, int]]:
        """``subnet: l1 + cl -> 2 l2``."""
        return {"subnet": (self.split_len1 + self.condition_length, 2 * self.split_len2)}

    def forward(
        self,
        x: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = [],
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Transform half 2 given ``[x1, c]`` (inverse when ``rev``); log-det always computed."""
        x_in, cs = self._checked_inputs(x, c)
        x1, x2 = x_in.split_with_sizes([self.split_len1, self.split_len2], 1)
        kind = self._fused_kind(x_in, rev)
        if kind is None:
            s, t = self._scale_shift("subnet", cat_conditions(x1, cs), self.split_len2)
            y2, log_det = affine(x2, s, t, rev)
            return (torch.cat((x1, y2), dim=1),), log_det
        r = self._subnet_on("subnet", cs, self.split_len2, x1)
        y2, log_det = coupling_step(kind, self.clamp, x2, r, rev, other=None if rev else x1)
        return ((torch.cat((x1, y2), dim=1) if rev else y2),), log_det


class ConditionalAffineTransform(_AffineCoupling):
    r"""Affine map of the whole input whose coefficients depend only on the conditions (SPADE-like).

    ``[s_raw, t] = subnet(cat(c, dim=1))``, ``s = clamp * f_clamp(s_raw)``,
    ``y = x * exp(s) + t``, ``log|det J| = sum(s)``. One subnet ``subnet: cl -> 2 C``. Needs at
    least one condition; ``split_len`` is accepted (and validated) but irrelevant. Arguments as
    in :class:`_BaseCouplingBlock`.

    References: Park, Liu, Wang, Zhu, "Semantic Image Synthesis with Spatially-Adaptive
    Normalization", CVPR 2019 (arXiv:1903.07291).

    Raises:
        ValueError: without a condition.
    """

    def _subnet_sizes(self) -> Dict[str, Tuple[int, int]]:
        """``subnet: cl -> 2 C``; ``ValueError`` without a condition."""
        if not self.conditional:
            raise ValueError(
                "ConditionalAffineTransform must have a condition (pass dims_c=[(channels, ...)])."
            )
        return {"subnet": (self.condition_length, 2 * self.channels)}

    def forward(
        self,
        x: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = [],
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Apply the condition-driven affine map (its inverse when ``rev``)."""
        x_in, cs = self._checked_inputs(x, c)
        cond = cs[0] if len(cs) == 1 else torch.cat(cs, dim=1)
        kind = self._fused_kind(x_in, rev, halves=1)
        if kind is None:
            s, t = self._scale_shift("subnet", cond, self.channels)
            y, log_det = affine(x_in, s, t, rev)
            return (y,), log_det
        r = self._subnet_out("subnet", cond, 2 * self.channels)
        y, log_det = coupling_step(kind, self.clamp, x_in, r, rev)
        return (y,), log_det
