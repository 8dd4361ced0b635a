"""Metrics of the demos: standard-normal NLL, bits per dimension and the AUROC."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata
from torch import Tensor

__all__ = ["auroc", "bits_per_dim", "standard_normal_nll"]


def standard_normal_nll(z: Tensor, log_det: Tensor) -> Tensor:
    r"""Per-sample NLL in nats of a flow to N(0, I): ``½‖z‖² + (D/2) ln 2π − log|det J|``.

    Args:
        z: latent codes ``(B, ...)``; ``D`` is the number of elements per sample.
        log_det: ``(B,)`` log-determinants of the map from the data to ``z``.
    """
    d = z[0].numel()
    return 0.5 * z.reshape(z.shape[0], -1).pow(2).sum(1) + 0.5 * d * math.log(2 * math.pi) - log_det


def bits_per_dim(nll_nats: Tensor, dims: int) -> Tensor:
    """Convert a per-sample NLL in nats over ``dims`` dimensions to bits per dimension."""
    return nll_nats / (dims * math.log(2.0))


def auroc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """Area under the ROC curve when a higher score means "anomalous".

    The Mann-Whitney form: the probability that a random anomaly scores higher than a random
    normal sample, ties counting one half (average ranks).
    """
    normal = np.asarray(normal_scores, dtype=np.float64).ravel()
    anomalous = np.asarray(anomaly_scores, dtype=np.float64).ravel()
    if not (normal.size and anomalous.size):
        raise ValueError("auroc: needs at least one normal and one anomalous score")
    ranks = rankdata(np.concatenate([normal, anomalous]))
    rank_sum = ranks[normal.size :].sum()
    n_pairs = normal.size * anomalous.size
    return float((rank_sum - anomalous.size * (anomalous.size + 1) / 2) / n_pairs)

