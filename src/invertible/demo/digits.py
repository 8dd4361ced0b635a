r"""One-class anomaly detection on scikit-learn's bundled 8x8 digits with a multi-scale INN.

The task, as anomalib's flows do it: train a flow by maximum likelihood on images of one digit
only (the *normal* class), then score every test image by its negative log-likelihood; images of
the other nine digits should score higher. scikit-learn ships the 1,797 images, so nothing is
downloaded.

**Dequantisation and normalisation.** A pixel holds one of ``L = 17`` grey levels
``v ∈ {0, …, 16}``. Training on the integers would let a continuous density grow without bound,
so each pixel gets uniform noise and is scaled to the unit interval,
``x = (v + u) / L`` with ``u ~ U[0, 1)``, then moved to logit space,
``y = logit(α + (1 − 2α) x)`` with ``α = 0.05``, so the flow sees an unbounded variable. With
``D = 64`` dimensions, the flow ``f: y -> z`` and ``z ~ N(0, I)``,

    log p(x) = log N(f(y); 0, I) + log|det ∂f/∂y| + Σ_i log|dy_i/dx_i|,
    dy/dx = (1 − 2α) / (s (1 − s)),  s = α + (1 − 2α) x,

and since the noise fills a cell of volume ``L^-D`` around ``v / L``, the likelihood of the
discrete image is bounded by ``log P(v) >= E_u[log p(x)] − D ln L``. The reported
**bits/dim** is ``−(log p(x) − D ln L) / (D ln 2)`` for one fixed noise draw (an unbiased
estimate of that bound), so it is comparable with other models of 17-level 8x8 images: a model
that ignores the data scores ``log2 17 ≈ 4.09`` bits/dim.

**Network.** ``(1, 8, 8) -Haar-> (4, 4, 4)``, ``blocks`` ``AllInOneBlock`` s with 3x3-conv
subnets, then ``Split`` into 2 + 2 channels: the first half leaves as latent, the second goes
``-Haar-> (8, 2, 2)`` through ``blocks`` more ``AllInOneBlock`` s; both parts are flattened
and concatenated into ``z`` of 64 dimensions (RealNVP's multi-scale architecture, as a GraphINN).

References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017;
Theis, van den Oord, Bethge, "A note on the evaluation of generative models", ICLR 2016.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, Optional, TextIO, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..framework import GraphINN, InputNode, Node, OutputNode, collect_nodes
from ..modules import AllInOneBlock, Concat, Flatten, HaarDownsampling, Split
from ._metrics import auroc, bits_per_dim, standard_normal_nll
from ._train import TrainLog, fit

__all__ = [
    "ALPHA",
    "LEVELS",
    "DigitsResult",
    "conv_subnet",
    "dequantise",
    "digits_bits_per_dim",
    "from_logit",
    "inverse_error",
    "load_digit_images",
    "make_digits_flow",
    "one_class_split",
    "run_digits",
    "sample_digits",
    "to_logit",
]

LEVELS = 17  # grey levels 0..16 of sklearn's digits
ALPHA = 0.05  # logit margin: y = logit(ALPHA + (1 - 2 ALPHA) x)
SHAPE = (1, 8, 8)
DIMS = 64
HIDDEN = 32
TRAIN_FRACTION = 0.7
BATCH_SIZE = 64
SAMPLE_TEMPERATURE = 0.8


def load_digit_images() -> Tuple[Tensor, Tensor]:
    """sklearn's digits as float grey levels ``(1797, 1, 8, 8)`` in 0..16, and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "the digits demo needs scikit-learn: pip install 'invertible[demo]'"
        ) from error
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).reshape(-1, *SHAPE)
    return images, torch.as_tensor(bunch.target, dtype=torch.long)


def dequantise(levels: Tensor, generator: torch.Generator) -> Tensor:
    """``x = (v + u) / L`` in ``[0, 1)`` with uniform noise ``u`` drawn on the CPU."""
    noise = torch.rand(levels.shape, generator=generator).to(levels.device)
    return (levels + noise) / LEVELS


def to_logit(x: Tensor) -> Tuple[Tensor, Tensor]:
    """``y = logit(α + (1 − 2α) x)`` and the per-sample ``Σ log|dy/dx|``."""
    s = ALPHA + (1 - 2 * ALPHA) * x
    y = torch.log(s) - torch.log1p(-s)
    log_det = math.log(1 - 2 * ALPHA) - torch.log(s) - torch.log1p(-s)
    return y, log_det.reshape(len(x), -1).sum(1)


def from_logit(y: Tensor) -> Tensor:
    """The inverse of `to_logit`: ``x = (sigmoid(y) − α) / (1 − 2α)``."""
    return (torch.sigmoid(y) - ALPHA) / (1 - 2 * ALPHA)


def conv_subnet(c_in: int, c_out: int) -> nn.Module:
    """3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv; the last layer starts at zero (identity block)."""
    net = nn.Sequential(
        nn.Conv2d(c_in, HIDDEN, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(HIDDEN, HIDDEN, 1),
        nn.ReLU(),
        nn.Conv2d(HIDDEN, c_out, 3, padding=1),
    )
    for parameter in net[-1].parameters():
        nn.init.zeros_(parameter)
    return net


def _coupling_stack(node: Node, blocks: int, scale: int) -> Node:
    """``blocks`` AllInOneBlocks after ``node``, with learned soft channel mixing."""
    for k in range(blocks):
        kwargs = {"subnet_constructor": conv_subnet, "permute_soft": True}
        node = Node(node, AllInOneBlock, kwargs, name=f"scale{scale}_block{k}")
    return node


def make_digits_flow(blocks: int = 4) -> GraphINN:
    """The two-scale GraphINN ``(1, 8, 8) -> (64,)`` described in the module docstring."""
    x = InputNode(*SHAPE, name="image")
    node = _coupling_stack(Node(x, HaarDownsampling, {}, name="haar1"), blocks, 1)
    split = Node(node, Split, {"section_sizes": [2, 2], "dim": 0}, name="split")
    node = Node((split, 1), HaarDownsampling, {}, name="haar2")
    node = _coupling_stack(node, blocks, 2)
    early = Node((split, 0), Flatten, {}, name="flatten1")
    late = Node(node, Flatten, {}, name="flatten2")
    z = Node([early, late], Concat, {"dim": 0}, name="concat")
    OutputNode(z, name="z")
    return GraphINN(collect_nodes(x))


def digits_bits_per_dim(flow: nn.Module, levels: Tensor, generator: torch.Generator) -> Tensor:
    """Per-image NLL in bits/dim of integer grey levels, dequantisation included (see module)."""
    y, log_det_logit = to_logit(dequantise(levels, generator))
    z, log_det = flow(y)
    nll = standard_normal_nll(z, log_det + log_det_logit) + DIMS * math.log(LEVELS)
    return bits_per_dim(nll, DIMS)


def sample_digits(
    flow: nn.Module, n: int, generator: torch.Generator, temperature: float = SAMPLE_TEMPERATURE
) -> Tensor:
    """``n`` images from the flow, ``z ~ N(0, T² I)``, as grey values in ``[0, 1]``."""
    device = next(flow.parameters()).device
    z = temperature * torch.randn(n, DIMS, generator=generator).to(device)
    y, _ = flow(z, rev=True, jac=False)
    return ((from_logit(y) * LEVELS - 0.5) / (LEVELS - 1)).clamp(0.0, 1.0)


@dataclass
class DigitsResult:
    """What `run_digits` measured; scores are per-image bits/dim (higher = more anomalous)."""

    normal_class: int
    n_train: int
    n_parameters: int
    train_bpd: float
    test_bpd: float
    anomaly_bpd: float
    auroc: float
    auroc_per_digit: Dict[int, float]
    inverse_error: float
    seconds: float
    log: TrainLog
    normal_scores: np.ndarray
    anomaly_scores: np.ndarray
    real: np.ndarray = field(repr=False)
    samples: np.ndarray = field(repr=False)


def one_class_split(
    labels: Tensor, normal_class: int, generator: torch.Generator
) -> Tuple[Tensor, Tensor, Tensor]:
    """Indices: 70 % of the normal class for training, the rest for testing, all other digits."""
    normal = (labels == normal_class).nonzero().squeeze(1)
    normal = normal[torch.randperm(len(normal), generator=generator)]
    n_train = round(TRAIN_FRACTION * len(normal))
    anomalies = (labels != normal_class).nonzero().squeeze(1)
    return normal[:n_train], normal[n_train:], anomalies


def run_digits(
    epochs: int = 200,
    blocks: int = 4,
    normal_class: int = 0,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    stream: Optional[TextIO] = sys.stderr,
) -> DigitsResult:
    """Train on one digit, score all test digits by NLL; see the module docstring.

    Seeds torch's and numpy's global generators with ``seed`` (the blocks draw their
    permutations from them, as in FrEIA); noise and shuffling use local generators.

    Args:
        epochs: passes over the training images (about 125 of them: 2 steps per epoch).
        blocks: ``AllInOneBlock`` s per scale (two scales).
        normal_class: the digit trained on; the nine others are the anomalies.
        seed: seed of the network's initialisation, the data split and the noise.
        device: where the network runs.
        stream: where the progress bar goes (``None``: silent).
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digit_images()
    train_idx, test_idx, anomaly_idx = one_class_split(labels, normal_class, generator)
    images = images.to(device)
    flow = make_digits_flow(blocks).to(device)
    scorer = _Scorer(flow, seed + 1)
    log = fit(
        flow, images[train_idx], _BatchLoss(flow, generator), epochs, BATCH_SIZE, generator,
        evaluate=partial(scorer.mean, images[test_idx]),
        label=f"digit {normal_class}", unit="bits/dim", stream=stream,
    )
    with torch.no_grad():
        normal_scores = scorer(images[test_idx])
        anomaly_scores = scorer(images[anomaly_idx])
        anomaly_labels = labels[anomaly_idx].numpy()
        return DigitsResult(
            normal_class=normal_class,
            n_train=len(train_idx),
            n_parameters=sum(p.numel() for p in flow.parameters() if p.requires_grad),
            train_bpd=scorer.mean(images[train_idx]),
            test_bpd=float(normal_scores.mean()),
            anomaly_bpd=float(anomaly_scores.mean()),
            auroc=auroc(normal_scores, anomaly_scores),
            auroc_per_digit={
                int(d): auroc(normal_scores, anomaly_scores[anomaly_labels == d])
                for d in np.unique(anomaly_labels)
            },
            inverse_error=inverse_error(flow, images, generator),
            seconds=time.perf_counter() - start,
            log=log,
            normal_scores=normal_scores,
            anomaly_scores=anomaly_scores,
            real=(images[test_idx][:32] / (LEVELS - 1)).squeeze(1).cpu().numpy(),
            samples=sample_digits(flow, 32, generator).squeeze(1).cpu().numpy(),
        )


class _BatchLoss:
    """Training loss: mean bits/dim of a batch under fresh dequantisation noise."""

    def __init__(self, flow: nn.Module, generator: torch.Generator) -> None:
        self.flow = flow
        self.generator = generator

    def __call__(self, batch: Tensor) -> Tensor:
        """The mean bits/dim of ``batch``."""
        return digits_bits_per_dim(self.flow, batch, self.generator).mean()


class _Scorer:
    """Per-image bits/dim under the same noise at every call (comparable evaluations)."""

    def __init__(self, flow: nn.Module, seed: int) -> None:
        self.flow = flow
        self.seed = seed

    def __call__(self, levels: Tensor) -> np.ndarray:
        """Scores of ``levels`` in eval mode, as a numpy array."""
        was_training = self.flow.training
        self.flow.eval()
        try:
            with torch.no_grad():
                generator = torch.Generator().manual_seed(self.seed)
                return digits_bits_per_dim(self.flow, levels, generator).cpu().numpy()
        finally:
            self.flow.train(was_training)

    def mean(self, levels: Tensor) -> float:
        """The mean score of ``levels``."""
        return float(self(levels).mean())


def inverse_error(flow: nn.Module, levels: Tensor, generator: torch.Generator) -> float:
    """``max |y − f⁻¹(f(y))|`` over the logit-space inputs ``y`` of all images (eval mode)."""
    flow.eval()
    with torch.no_grad():
        y, _ = to_logit(dequantise(levels, generator))
        z, _ = flow(y, jac=False)
        y_again, _ = flow(z, rev=True, jac=False)
    return float((y - y_again).abs().max())
