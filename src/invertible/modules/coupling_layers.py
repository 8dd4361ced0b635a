"""Affine coupling blocks: NICE, RealNVP, Glow, GIN, one-sided and condition-only affine maps.

Each is a :class:`~invertible.modules.CouplingBlock` that declares its subnets (FrEIA's names,
sizes and construction order) and, where it differs from Glow's clamped affine map, its
transform of one part. Constructor arguments are those of :class:`CouplingBlock`.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor

from ._affine import affine, centre_channels, identity
from ._common import Dims, SubnetConstructor
from ._coupling import CouplingBlock, Params

__all__ = ["AffineCouplingOneSided", "ConditionalAffineTransform", "CouplingBlock",
           "GINCouplingBlock", "GLOWCouplingBlock", "NICECouplingBlock", "RNVPCouplingBlock"]

#: FrEIA's name of the coupling base, kept importable for existing code (isinstance checks,
#: annotations). FrEIA's hooks ``_coupling1``/``_coupling2`` are replaced by ``transform``.
_BaseCouplingBlock = CouplingBlock


class NICECouplingBlock(CouplingBlock):
    r"""Additive coupling: ``y1 = x1 + F([x2, c])``, ``y2 = x2 + G([y1, c])``; log-det 0.

    Volume preserving. Subnets, built in this order: ``F: l2 + cl -> l1`` and
    ``G: l1 + cl -> l2`` (``l1``/``l2`` the half sizes, ``cl`` the condition channels); the
    base's ``clamp`` is 0.0 and ``f_clamp`` the identity.

    References: Dinh, Krueger, Bengio, "NICE: Non-linear Independent Components Estimation",
    ICLR 2015 workshop (arXiv:1410.8516).
    """

    subnets = {"F": 1, "G": 2}  # noqa: RUF012 - a class-level declaration, never mutated

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = [],  # noqa: B006 - FrEIA's default, never mutated
        subnet_constructor: Optional[SubnetConstructor] = None,
        split_len: Union[float, int] = 0.5,
    ) -> None:
        super().__init__(dims_in, dims_c, subnet_constructor, 0.0, identity, split_len)

    def transform(self, x: Tensor, params: Params, rev: bool) -> Tuple[Tensor, float]:
        """Shift by the subnet output (subtract it when ``rev``)."""
        return (x - params[0] if rev else x + params[0]), 0.0


class RNVPCouplingBlock(CouplingBlock):
    r"""RealNVP coupling with separate scale and shift subnets.

    ``y1 = x1 * exp(s2) + t2`` with ``s2 = clamp * f_clamp(subnet_s2([x2, c]))``,
    ``t2 = subnet_t2([x2, c])``; then ``y2 = x2 * exp(s1) + t1`` from ``[y1, c]`` through
    ``subnet_s1``/``subnet_t1``. ``log|det J| = sum(s1) + sum(s2)``. Subnets, built in this
    order: ``subnet_s1, subnet_t1: l1 + cl -> l2``; ``subnet_s2, subnet_t2: l2 + cl -> l1``.

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017
    (arXiv:1605.08803).
    """

    subnets = {"subnet_s1": 2, "subnet_t1": 2, "subnet_s2": 1, "subnet_t2": 1}  # noqa: RUF012

    def transform(self, x: Tensor, params: Params, rev: bool) -> Tuple[Tensor, Tensor]:
        """The clamped affine map with log-scale and shift from two subnets."""
        return affine(x, self.clamped(params[0]), params[1], rev)


class GLOWCouplingBlock(CouplingBlock):
    r"""Glow's affine coupling: one subnet per half predicts log-scale and shift together.

    ``[s2_raw, t2] = subnet2([x2, c])`` (the first ``l1`` channels are the raw log-scale, the
    rest the shift), ``y1 = x1 * exp(clamp * f_clamp(s2_raw)) + t2``; then the same for half 2
    from ``[y1, c]`` through ``subnet1``. ``log|det J|`` is the sum of both log-scales.
    Subnets, built in this order: ``subnet1: l1 + cl -> 2 l2``, ``subnet2: l2 + cl -> 2 l1``.
    The transform is the base's default.

    References: Kingma, Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    NeurIPS 2018 (arXiv:1807.03039).
    """

    subnets = {"subnet1": 2, "subnet2": 1}  # noqa: RUF012 - a class-level declaration
    params_per_channel = 2


class GINCouplingBlock(CouplingBlock):
    r"""GIN: Glow's coupling with the log-scale centred over channels, so volume preserving.

    As :class:`GLOWCouplingBlock`, but after clamping ``s <- s - mean(s, dim=1)``: the mean is
    over the channel axis only, separately for every sample and spatial position. Each half's
    log-scale then sums to 0 at every position and ``log|det J| = 0`` exactly (returned as
    ``(B,)`` zeros). Not the same as ``AllInOneBlock(gin_block=True)``, which centres over all
    non-batch dims. Subnets as in :class:`GLOWCouplingBlock`.

    References: Sorrenson, Rother, Koethe, "Disentanglement by Nonlinear ICA with General
    Incompressible-flow Networks (GIN)", ICLR 2020 (arXiv:2001.04872).
    """

    subnets = {"subnet1": 2, "subnet2": 1}  # noqa: RUF012 - a class-level declaration
    params_per_channel = 2

    def transform(self, x: Tensor, params: Params, rev: bool) -> Tuple[Tensor, float]:
        """Glow's map with the clamped log-scale centred over channels."""
        n = x.shape[1]
        s_raw, t = params[0].split_with_sizes((n, n), 1)
        return affine(x, centre_channels(self.clamped(s_raw)), t, rev)[0], 0.0


class AffineCouplingOneSided(CouplingBlock):
    r"""Half a Glow block: only half 2 is transformed, half 1 passes through unchanged.

    ``[s_raw, t] = subnet([x1, c])``, ``s = clamp * f_clamp(s_raw)``,
    ``y = cat(x1, x2 * exp(s) + t)``, ``log|det J| = sum(s)``. One subnet
    ``subnet: l1 + cl -> 2 l2``; the transform is the base's default.

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017
    (arXiv:1605.08803).
    """

    subnets = {"subnet": 2}  # noqa: RUF012 - a class-level declaration
    params_per_channel = 2


class ConditionalAffineTransform(CouplingBlock):
    r"""Affine map of the whole input whose coefficients depend only on the conditions (SPADE-like).

    ``[s_raw, t] = subnet(cat(c, dim=1))``, ``s = clamp * f_clamp(s_raw)``,
    ``y = x * exp(s) + t``, ``log|det J| = sum(s)``. One subnet ``subnet: cl -> 2 C``. Needs at
    least one condition (``ValueError`` otherwise); ``split_len`` is accepted (and validated) but
    irrelevant.

    References: Park, Liu, Wang, Zhu, "Semantic Image Synthesis with Spatially-Adaptive
    Normalization", CVPR 2019 (arXiv:1903.07291).
    """

    subnets = {"subnet": 0}  # noqa: RUF012 - a class-level declaration
    params_per_channel = 2
