"""Test-session settings: one intra-op thread (tiny float64 tensors; threads only add overhead),
and the hypothesis profiles: ``ci`` (default, fast) and ``long`` (``HYPOTHESIS_PROFILE=long``)."""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile(
    "ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
