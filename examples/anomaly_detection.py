"""One-class anomaly detection, the way anomalib's flows score: train on one digit, rank by NLL.

Run ``python examples/anomaly_detection.py [--fast] [--normal-class K] [--plot DIR]`` (needs
scikit-learn; no download). A convolutional SequenceINN (blocks and training shared with
``multiscale_image_flow.py``) learns the density of one digit class of scikit-learn's 8x8
digits; every test image is scored by its bits/dim (negative log-likelihood, averaged over a
few dequantisations). Images of the other nine digits are the anomalies. Prints the
image-level AUROC, the worst per-digit AUROC, and the detection rate at a threshold that flags
5 % of held-out normal images (a validation fifth of the normal training images).
"""

from __future__ import annotations

import argparse
from typing import List, Optional

import numpy as np
import torch
from multiscale_image_flow import N_BINS, Logit, conv_subnet, load_digits, train
from torch import Tensor

from invertible.distributions import FlowDistribution
from invertible.framework import SequenceINN
from invertible.metrics import dequantize, roc_auc
from invertible.modules import ActNorm, AllInOneBlock, IRevNetDownsampling

__all__ = ["anomaly_scores", "main", "make_flow"]


def make_flow(blocks: int) -> SequenceINN:
    """Logit, squeeze to (4, 4, 4), ``blocks`` couplings, squeeze to (16, 2, 2), couplings."""
    inn = SequenceINN(1, 8, 8)
    inn.append(Logit)
    inn.append(IRevNetDownsampling)
    inn.append(ActNorm)
    for k in range(2 * blocks):
        if k == blocks:
            inn.append(IRevNetDownsampling)
        inn.append(AllInOneBlock, subnet_constructor=conv_subnet, permute_soft=True)
    return inn


@torch.no_grad()
def anomaly_scores(
    dist: FlowDistribution, images: Tensor, generator: torch.Generator, repeats: int = 4
) -> Tensor:
    """Per-image bits/dim, averaged over ``repeats`` dequantisations: higher = more anomalous."""
    scores = [
        dist.bits_per_dim(dequantize(images, N_BINS, generator=generator), n_bins=N_BINS,
                          reduction="none")
        for _ in range(repeats)
    ]
    return torch.stack(scores).mean(0)


def plot(scores: Tensor, labels: Tensor, normal_class: int, threshold: Tensor, folder: str) -> None:
    """Write the histograms of normal and anomalous test scores to ``folder/anomaly_scores.png``.

    Shared bins up to the 98th percentile of all scores; larger scores count in the last bin, so
    the long tail of clear anomalies does not squeeze the overlap where the errors are.
    """
    from _plotting import REAL_COLOUR, figure, save

    anomalous = labels != normal_class
    top = float(scores.quantile(0.98))
    bins = torch.linspace(float(scores.min()), top, 50).tolist()
    fig = figure(7.0, 4.2)
    ax = fig.subplots()
    for keep, label, colour in ((~anomalous, f"normal: digit {normal_class}", REAL_COLOUR),
                                (anomalous, "anomalous: other digits", "tab:red")):
        ax.hist(scores[keep].clamp(max=top).tolist(), bins=bins, density=True, alpha=0.55,
                color=colour, label=f"{label} (n={int(keep.sum())})")
    ax.axvline(float(threshold), color="k", linestyle="--", linewidth=1,
               label="threshold: 5 % of held-out normals above")
    ax.set_xlabel("anomaly score = NLL (bits/dim); last bin: all larger scores")
    ax.set_ylabel("density")
    ax.set_title(f"Trained on digit {normal_class}: test scores, "
                 f"image AUROC {roc_auc(scores, anomalous):.4f}")
    ax.set_ylim(0, 1.45 * ax.get_ylim()[1])  # headroom: the legend does not hide bars
    ax.legend(loc="upper right")
    save(fig, folder, "anomaly_scores.png")


def report(scores: Tensor, labels: Tensor, normal_class: int, threshold: Tensor) -> None:
    """Print the mean scores, the AUROCs and the detection rates at ``threshold``."""
    anomalous = labels != normal_class
    per_digit = {}
    for k in range(10):
        if k != normal_class:
            keep = (labels == k) | ~anomalous
            per_digit[k] = roc_auc(scores[keep], anomalous[keep])
    worst = min(per_digit, key=per_digit.__getitem__)
    flagged = scores > threshold
    print(f"test bits/dim normal: {float(scores[~anomalous].mean()):.4f}")
    print(f"test bits/dim anomalous: {float(scores[anomalous].mean()):.4f}")
    print(f"image AUROC: {roc_auc(scores, anomalous):.4f}")
    print(f"worst per-digit AUROC: {per_digit[worst]:.4f} (digit {worst})")
    print(f"anomalies detected (%): {100 * float(flagged[anomalous].float().mean()):.1f}")
    print(f"normal test images flagged (%): {100 * float(flagged[~anomalous].float().mean()):.1f}")


def main(argv: Optional[List[str]] = None) -> int:
    """Train on the normal class, score the test set and print the key numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--normal-class", type=int, default=8, choices=range(10), metavar="K")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--plot", metavar="DIR", default=None, help="write a PNG into DIR")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # AllInOneBlock draws its soft permutations from numpy
    gen = torch.Generator().manual_seed(args.seed)
    train_all, train_labels, test, test_labels = load_digits(args.seed)
    normal = train_all[train_labels == args.normal_class]
    fit, validation = normal[: int(0.8 * len(normal))], normal[int(0.8 * len(normal)) :]

    dist = FlowDistribution(make_flow(2 if args.fast else 3))
    seconds = train(dist, fit, args.epochs or (5 if args.fast else 60), gen, batch=32, lr=2e-3)
    threshold = anomaly_scores(dist, validation, gen).quantile(0.95)
    scores = anomaly_scores(dist, test, gen)
    print(f"normal class: {args.normal_class} ({len(fit)} training images)")
    print(f"training time (s): {seconds:.1f}")
    report(scores, test_labels, args.normal_class, threshold)
    if args.plot:
        plot(scores, test_labels, args.normal_class, threshold, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
