"""Ready-made flows built from the public blocks: RealNVP, NSF, MAF and Glow.

Each function returns a :class:`~invertible.distributions.FlowDistribution` (``.inn`` the
network, ``.log_prob(x, c=None)``, ``.sample(n, c=None)``), built deterministically from
``seed`` without touching torch's global generator. The code is short on purpose: copy a
preset and change it.
"""

from __future__ import annotations

from ._common import ConvSubnet, DenseSubnet
from .autoregressive import MAF
from .coupling import NSF, RealNVP
from .glow import Glow

__all__ = ["MAF", "NSF", "ConvSubnet", "DenseSubnet", "Glow", "RealNVP"]
