"""Coupling flows for vectors: RealNVP (affine couplings) and NSF (rational-quadratic splines)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Dict

from .. import modules as Fm
from ..distributions import FlowDistribution
from ..framework import SequenceINN
from ._common import DenseSubnet, check_count, check_hidden, seeded

__all__ = ["NSF", "RealNVP"]

COUPLINGS: Dict[str, Any] = {"glow": Fm.GLOWCouplingBlock, "rnvp": Fm.RNVPCouplingBlock}


def coupling_flow(preset: str, features: int, transforms: int, hidden_features: Sequence[int],
                  context: int, seed: int, block: Any, **options: Any) -> FlowDistribution:
    """``transforms`` couplings ``block`` on ``(features,)`` with a ``PermuteRandom`` between
    each two, dense subnets, each coupling given the ``(context,)`` condition ``c[0]`` if
    ``context > 0``; a standard normal base."""
    check_count(preset, "features", features, 2)
    check_count(preset, "transforms", transforms, 1)
    check_count(preset, "context", context, 0)
    subnet = DenseSubnet(check_hidden(preset, hidden_features))
    cond: Dict[str, Any] = {"cond": 0, "cond_shape": (context,)} if context else {}
    with seeded(seed):
        inn = SequenceINN(features)
        for k in range(transforms):
            if k:
                inn.append(Fm.PermuteRandom, seed=seed + k)
            inn.append(block, subnet_constructor=subnet, **cond, **options)
    return FlowDistribution(inn)


def RealNVP(  # noqa: N802 - named after the architecture
        features: int, transforms: int = 4, hidden_features: Sequence[int] = (64, 64),
        context: int = 0, coupling: str = "glow", clamp: float = 2.0,
        seed: int = 0) -> FlowDistribution:
    r"""A RealNVP density on vectors ``(features,)``: affine couplings and random permutations.

    The network is ``transforms`` affine coupling blocks with a fixed random permutation of the
    features (``PermuteRandom``) between each two. A coupling splits ``x`` into halves and maps
    each by :math:`y_1 = x_1 \odot e^{s(x_2, c)} + t(x_2, c)`, then the other half from
    :math:`y_1` (``GLOWCouplingBlock``: one subnet gives ``s`` and ``t``; ``RNVPCouplingBlock``:
    one subnet each). Subnets are MLPs (``Linear, ReLU`` per width of ``hidden_features``, then
    a ``Linear`` that starts at zero, so the flow starts as the identity). The log-scale is
    soft-clamped to :math:`\pm` ``clamp``. With ``context > 0`` each coupling's subnets also
    get the condition, a ``(context,)`` vector: call ``log_prob(x, c)``, ``sample(n, c)``. The
    base is :math:`\mathcal N(0, I)`.

    Building is deterministic in ``seed`` and leaves torch's global generator as it was: the
    permutations take ``seed + k``, and the subnets' weights are drawn inside
    ``torch.random.fork_rng()`` seeded with ``seed``.

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017;
    Kingma, Dhariwal, "Glow", NeurIPS 2018 (the one-subnet coupling).

    Args:
        features: the dimension ``D >= 2`` of the data.
        transforms: the number of coupling blocks.
        hidden_features: the widths of the subnets' hidden layers.
        context: the size of the condition vector (0: unconditional).
        coupling: ``"glow"`` (``GLOWCouplingBlock``) or ``"rnvp"`` (``RNVPCouplingBlock``).
        clamp: the soft bound of the log-scales.
        seed: the seed of the permutations and the initial weights.

    Returns:
        A :class:`~invertible.distributions.FlowDistribution` (``.inn`` the ``SequenceINN``).

    Raises:
        ValueError: a size out of range or an unknown ``coupling``.
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"RealNVP: coupling must be one of {sorted(COUPLINGS)}, got "
                         f"{coupling!r}.")
    return coupling_flow("RealNVP", features, transforms, hidden_features, context, seed,
                         COUPLINGS[coupling], clamp=clamp)


def NSF(  # noqa: N802 - named after the architecture
        features: int, transforms: int = 4, hidden_features: Sequence[int] = (64, 64),
        bins: int = 8, context: int = 0, bound: float = 3.0,
        seed: int = 0) -> FlowDistribution:
    r"""A neural spline flow on vectors ``(features,)``: coupling splines and permutations.

    As :func:`RealNVP`, with ``RationalQuadraticSpline`` couplings: each half goes through a
    monotone rational-quadratic spline per feature with ``bins`` bins on the fixed square
    :math:`[-B, B]^2` (``bound``), the identity outside it, as in the paper
    (``identity_tails=True, learn_domain=False``): the subnet computes the bins' widths and
    heights (softmaxes of soft-bounded logits times :math:`2B`, so that no bin is 1000 times
    another) and the inner knot derivatives from the other half (and the condition). Choose
    ``B`` so that the data (after any fixed preprocessing) lie inside the square. The subnets
    start at zero, so every spline starts as the identity. Seeding as in :func:`RealNVP`.

    References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019
    (the coupling variant).

    Args:
        features: the dimension ``D >= 2`` of the data.
        transforms: the number of coupling blocks.
        hidden_features: the widths of the subnets' hidden layers.
        bins: the number of spline bins ``K``.
        context: the size of the condition vector (0: unconditional).
        bound: the half width ``B`` of the spline's domain and range.
        seed: the seed of the permutations and the initial weights.

    Returns:
        A :class:`~invertible.distributions.FlowDistribution` (``.inn`` the ``SequenceINN``).

    Raises:
        ValueError: a size out of range (the spline block names bad spline arguments).
    """
    check_count("NSF", "bins", bins, 1)
    b = float(bound)
    return coupling_flow("NSF", features, transforms, hidden_features, context, seed,
                         Fm.RationalQuadraticSpline, bins=bins, default_domain=(-b, b, -b, b),
                         identity_tails=True, learn_domain=False)
