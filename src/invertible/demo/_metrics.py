"""Metrics of the demos, in the demos' terms, on top of `invertible.metrics`."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..distributions._flow_calls import standard_normal_log_prob
from ..metrics import bits_per_dim as _bits_per_dim
from ..metrics import roc_auc

__all__ = ["auroc", "bits_per_dim", "standard_normal_nll"]


def standard_normal_nll(z: Tensor, log_det: Tensor) -> Tensor:
    r"""Per-sample NLL in nats of a flow to N(0, I): ``½‖z‖² + (D/2) ln 2π − log|det J|``."""
    return -(standard_normal_log_prob(z) + log_det)


def bits_per_dim(nll_nats: Tensor, dims: int) -> Tensor:
    """Convert a per-sample NLL in nats over ``dims`` dimensions to bits per dimension."""
    return _bits_per_dim(-nll_nats, dims, reduction="none")


def auroc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """Area under the ROC curve when a higher score means "anomalous" (ties count one half)."""
    normal = torch.as_tensor(np.asarray(normal_scores, dtype=np.float64).ravel())
    anomalous = torch.as_tensor(np.asarray(anomaly_scores, dtype=np.float64).ravel())
    if not (normal.numel() and anomalous.numel()):
        raise ValueError("auroc: needs at least one normal and one anomalous score")
    labels = torch.cat([torch.zeros(normal.numel()), torch.ones(anomalous.numel())])
    return roc_auc(torch.cat([normal, anomalous]), labels)
