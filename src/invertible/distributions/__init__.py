"""Distributions over the inputs and outputs of invertible networks."""

from __future__ import annotations

from .normal import StandardNormalDistribution
from .transformed import PullBackDistribution, PushForwardDistribution

__all__ = ["PullBackDistribution", "PushForwardDistribution", "StandardNormalDistribution"]
