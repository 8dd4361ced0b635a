"""Test-session settings: one intra-op thread (tiny float64 tensors; threads only add overhead)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
