"""Multi-scale image flow on scikit-learn's bundled 8x8 digits, with bits/dim done right.

Run ``python examples/multiscale_image_flow.py [--fast] [--plot DIR]`` (needs scikit-learn; no
download). A GraphINN maps the 1x8x8 image through a logit (a user-written module whose log-det
counts), squeezes it to 4x4x4, couples, lets half the channels exit early (output ``z_fine``),
squeezes the rest to 8x2x2, couples and flattens (output ``z_coarse``); ``FlowDistribution``
puts a standard normal on each output. The pixels take 17 levels (0..16) and are dequantised to
[0, 1), so bits/dim includes log2(17); the script compares with a uniform and a per-pixel
histogram model.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import List, Optional, Sequence, Tuple, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import logsigmoid

from invertible.distributions import FlowDistribution
from invertible.framework.graph_inn import AbstractNode, GraphINN, InputNode, Node, OutputNode
from invertible.metrics import dequantize
from invertible.modules import (
    ActNorm,
    AllInOneBlock,
    Flatten,
    InvertibleModule,
    IRevNetDownsampling,
    Split,
)

__all__ = [
    "N_BINS",
    "Logit",
    "conv_subnet",
    "histogram_bits_per_dim",
    "load_digits",
    "main",
    "make_flow",
    "report",
    "train",
]

N_BINS = 17  # the digits' pixels are integers 0..16


def load_digits(seed: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Integer images ``(n, 1, 8, 8)`` and labels, split 80/20 into train and test."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    images = torch.as_tensor(data.images, dtype=torch.long).reshape(-1, 1, 8, 8)
    labels = torch.as_tensor(data.target)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * len(images))
    train, test = order[:n_train], order[n_train:]
    return images[train], labels[train], images[test], labels[test]


class Logit(InvertibleModule):
    r"""Preprocessing inside the flow: :math:`y = \mathrm{logit}(\alpha + (1 - 2\alpha) x)`.

    Maps data in [0, 1) to the real line. Its log-det
    :math:`\sum \ln(1 - 2\alpha) - \ln s - \ln(1 - s)`, :math:`s = \alpha + (1 - 2\alpha)x`,
    is part of the network's, so likelihoods stay those of the data in [0, 1).
    """

    def __init__(self, dims_in: Sequence[Sequence[int]], alpha: float = 0.05) -> None:
        super().__init__(dims_in)
        self.alpha = alpha

    def forward(
        self, x: Sequence[Tensor], c: Optional[Sequence[Tensor]] = None, rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Forward logit (data to latent side), reverse sigmoid; unconditional (``c`` unused)."""
        a = self.alpha
        if rev:
            y = (torch.sigmoid(x[0]) - a) / (1 - 2 * a)
            log_det = logsigmoid(x[0]) + logsigmoid(-x[0]) - math.log(1 - 2 * a)
        else:
            s = a + (1 - 2 * a) * x[0]
            y = torch.log(s) - torch.log1p(-s)
            log_det = math.log(1 - 2 * a) - torch.log(s) - torch.log1p(-s)
        return (y,), log_det.flatten(1).sum(1)

    def output_dims(self, input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        """Shape-preserving."""
        return input_dims


def conv_subnet(c_in: int, c_out: int) -> nn.Module:
    """3x3 conv subnet, last layer zero so that every block starts as the identity."""
    last = nn.Conv2d(64, c_out, 3, padding=1)
    for parameter in last.parameters():
        nn.init.zeros_(parameter)
    return nn.Sequential(nn.Conv2d(c_in, 64, 3, padding=1), nn.ReLU(), last)


def _blocks(nodes: List[AbstractNode], n: int, name: str) -> AbstractNode:
    """Append ``n`` AllInOneBlocks with conv subnets after ``nodes[-1]``; return the last."""
    for k in range(n):
        args = {"subnet_constructor": conv_subnet, "permute_soft": True}
        nodes.append(Node(nodes[-1], AllInOneBlock, args, name=f"{name}{k}"))
    return nodes[-1]


def make_flow(blocks: int) -> GraphINN:
    """Logit; then scale (4, 4, 4) with an early exit of 2 channels; then (8, 2, 2), flattened."""
    nodes: List[AbstractNode] = [InputNode(1, 8, 8, name="x")]
    nodes.append(Node(nodes[-1], Logit, {}, name="logit"))
    nodes.append(Node(nodes[-1], IRevNetDownsampling, {}, name="squeeze1"))
    nodes.append(Node(nodes[-1], ActNorm, {}, name="actnorm"))
    split = Node(_blocks(nodes, blocks, "fine"), Split, {"section_sizes": [2, 2]}, name="split")
    nodes += [split, Node((split, 0), IRevNetDownsampling, {}, name="squeeze2")]
    flat = Node(_blocks(nodes, blocks, "coarse"), Flatten, {}, name="flatten")
    nodes += [flat, OutputNode((split, 1), name="z_fine"), OutputNode(flat, name="z_coarse")]
    return GraphINN(nodes)


def histogram_bits_per_dim(train: Tensor, test: Tensor) -> float:
    """Bits/dim of independent per-pixel histograms of ``train`` (add-one smoothing) on ``test``."""
    flat_train, flat_test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    counts = torch.stack([torch.bincount(col, minlength=N_BINS) for col in flat_train.T]) + 1.0
    log_p = (counts / counts.sum(1, keepdim=True)).log()  # (pixels, N_BINS)
    picked = log_p.gather(1, flat_test.T)  # (pixels, n_test)
    return float(-picked.mean() / math.log(2))


def plot(real: Tensor, samples: Tensor, folder: str) -> None:
    """Write real test digits above the flow's samples to ``folder/digits_samples.png``."""
    from _plotting import image_rows, save

    rows = [("real: test digits (dequantised)", real[:32, 0].numpy()),
            ("sampled from the flow (temperature 0.8)", samples[:, 0].clamp(0, 1).numpy())]
    save(image_rows(rows, 16, "Multi-scale GraphINN on 8x8 digits: real vs sampled"), folder,
         "digits_samples.png")


def train(
    dist: FlowDistribution, images: Tensor, epochs: int, gen: torch.Generator,
    batch: int = 64, lr: float = 3e-3,
) -> float:
    """Minimise bits/dim of freshly dequantised batches with Adam; returns the seconds."""
    optimiser = torch.optim.Adam(dist.parameters(), lr=lr)
    steps = epochs * math.ceil(len(images) / batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(images), generator=gen).split(batch):
            x = dequantize(images[idx], N_BINS, generator=gen)
            loss = dist.bits_per_dim(x, n_bins=N_BINS)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        if epoch % max(epochs // 5, 1) == 0:
            print(f"epoch {epoch:3d}/{epochs}  train {loss.item():.3f} bits/dim")
    dist.eval()
    return time.perf_counter() - start


@torch.no_grad()
def report(dist: FlowDistribution, train_images: Tensor, test: Tensor, samples: Tensor,
           gen: torch.Generator) -> None:
    """Print test bits/dim of the flow and two baselines, inverse error, sample range."""
    x_test = dequantize(test, N_BINS, generator=gen)
    z = dist.inn(x_test)[0]
    inverse_error = float((dist.inn(z, rev=True)[0] - x_test).abs().max())
    in_range = float(((samples >= 0) & (samples < 1)).float().mean())
    print(f"test bits/dim flow: {float(dist.bits_per_dim(x_test, n_bins=N_BINS)):.4f}")
    print(f"test bits/dim per-pixel histogram: {histogram_bits_per_dim(train_images, test):.4f}")
    print(f"test bits/dim uniform: {math.log2(N_BINS):.4f}")
    print(f"inverse error max|x - f^-1(f(x))|: {inverse_error:.2e}")
    print(f"sampled pixels in [0, 1) (%): {100 * in_range:.1f}")


def main(argv: Optional[List[str]] = None) -> int:
    """Train, evaluate and print the key numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--plot", metavar="DIR", default=None, help="write a PNG into DIR")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # AllInOneBlock draws its soft permutations from numpy
    gen = torch.Generator().manual_seed(args.seed)
    train_images, _, test, _ = load_digits(args.seed)
    dist = FlowDistribution(make_flow(2 if args.fast else 4))
    seconds = train(dist, train_images, args.epochs or (2 if args.fast else 60), gen)
    samples = cast(Tensor, dist.sample(32, temperature=0.8, generator=gen))
    print(f"training time (s): {seconds:.1f}")
    report(dist, train_images, test, samples, gen)
    if args.plot:
        plot(dequantize(test, N_BINS, generator=gen), samples, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
