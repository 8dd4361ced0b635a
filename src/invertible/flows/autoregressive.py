"""Masked autoregressive flow (MAF) for vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Dict

from .. import modules as Fm
from ..distributions import FlowDistribution
from ..framework import SequenceINN
from ._common import check_count, check_hidden, seeded

__all__ = ["MAF"]

ORDERS = ("reversed", "random")


def MAF(  # noqa: N802 - named after the architecture
        features: int, transforms: int = 5, hidden_features: Sequence[int] = (64, 64),
        context: int = 0, orders: str = "reversed", seed: int = 0) -> FlowDistribution:
    r"""A masked autoregressive flow on vectors ``(features,)``.

    The network is ``transforms`` ``AutoregressiveAffine`` blocks: each maps
    :math:`z_i = (x_i - \mu_i) e^{-\alpha_i}` with :math:`(\mu_i, \alpha_i)` from a MADE
    (masked MLP with ``hidden_features``) of the features before ``i`` in its order (and the
    condition). With ``orders="reversed"`` the blocks alternate between the index order and
    its reverse, so consecutive blocks see the features in opposite orders (the same density
    as index-order blocks with a fixed reversal of the features between each two, without the
    reversal's product per block); with ``"random"`` each block draws its own order (seed
    ``seed + k``).
    The MADEs start at zero (the identity flow). The density takes one pass per block;
    sampling ``D`` passes per block. With ``context > 0`` each MADE also sees the
    ``(context,)`` condition. The base is :math:`\mathcal N(0, I)`. Building is deterministic in
    ``seed`` and leaves torch's global generator as it was (blocks get ``seed + k``).

    References: Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017.

    Args:
        features: the dimension ``D`` of the data.
        transforms: the number of autoregressive blocks.
        hidden_features: the widths of the MADEs' hidden layers.
        context: the size of the condition vector (0: unconditional).
        orders: ``"reversed"`` or ``"random"`` (see above).
        seed: the seed of the orders and the initial weights.

    Returns:
        A :class:`~invertible.distributions.FlowDistribution` (``.inn`` the ``SequenceINN``).

    Raises:
        ValueError: a size out of range or an unknown ``orders``.
    """
    check_count("MAF", "features", features, 1)
    check_count("MAF", "transforms", transforms, 1)
    check_count("MAF", "context", context, 0)
    hidden = check_hidden("MAF", hidden_features)
    if orders not in ORDERS:
        raise ValueError(f"MAF: orders must be one of {ORDERS}, got {orders!r}.")
    cond: Dict[str, Any] = {"cond": 0, "cond_shape": (context,)} if context else {}
    with seeded(seed):
        inn = SequenceINN(features)
        for k in range(transforms):
            order = ("sequential", "reversed")[k % 2] if orders == "reversed" else "random"
            inn.append(Fm.AutoregressiveAffine, hidden_features=hidden, order=order,
                       seed=seed + k, **cond)
    return FlowDistribution(inn)
