"""Distributions over the inputs and outputs of invertible networks."""

from __future__ import annotations

from .bases import ConditionalDiagGaussian, DiagGaussian, FlowBase, GaussianMixture, LearnedPrior
from .flow import FlowDistribution
from .normal import StandardNormalDistribution
from .transformed import PullBackDistribution, PushForwardDistribution

__all__ = [
    "ConditionalDiagGaussian",
    "DiagGaussian",
    "FlowBase",
    "FlowDistribution",
    "GaussianMixture",
    "LearnedPrior",
    "PullBackDistribution",
    "PushForwardDistribution",
    "StandardNormalDistribution",
]
