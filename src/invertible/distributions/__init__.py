"""Distributions over the inputs and outputs of invertible networks."""

from __future__ import annotations

from .flow import FlowDistribution
from .normal import StandardNormalDistribution
from .transformed import PullBackDistribution, PushForwardDistribution

__all__ = [
    "FlowDistribution",
    "PullBackDistribution",
    "PushForwardDistribution",
    "StandardNormalDistribution",
]
