"""Conditional INN: a class-conditional flow p(x | y) on a 2-D pinwheel, used three ways.

Run ``python examples/conditional_inn.py [--fast] [--plot DIR]``. One flow, conditioned on the
one-hot class, gives (1) the conditional NLL, (2) a generative classifier
argmax_y log p(x | y) + log p(y), (3) class-conditional samples, checked against the labels of
their nearest test points.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import List, Optional, Tuple, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import one_hot

from invertible.distributions import FlowDistribution
from invertible.framework import SequenceINN
from invertible.modules import AllInOneBlock

__all__ = [
    "class_log_likelihoods", "main", "make_flow", "mlp", "pinwheel", "report", "train"
]

CLASSES = 5
LIMIT = 2.3  # the plot shows [-LIMIT, LIMIT]^2


def pinwheel(n: int, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    """``n`` points on ``CLASSES`` spiral arms, and their labels."""
    labels = torch.randint(CLASSES, (n,), generator=generator)
    t = torch.rand(n, generator=generator)
    angle = 2 * math.pi * labels / CLASSES + 2.0 * t
    radius = 0.1 + 1.6 * t
    points = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return points + 0.12 * torch.randn(n, 2, generator=generator), labels


def mlp(c_in: int, c_out: int) -> nn.Module:
    """Coupling subnet; it sees half the point and the one-hot condition."""
    return nn.Sequential(
        nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, c_out)
    )


def make_flow(blocks: int) -> SequenceINN:
    """``blocks`` conditional AllInOneBlocks, all reading condition 0 (the one-hot class)."""
    inn = SequenceINN(2)
    for _ in range(blocks):
        inn.append(AllInOneBlock, cond=0, cond_shape=(CLASSES,), subnet_constructor=mlp,
                   permute_soft=True)
    return inn


def class_log_likelihoods(dist: FlowDistribution, x: Tensor) -> Tensor:
    """``log p(x | y)`` for every class ``y``, shape ``(n, CLASSES)``."""
    rows = []
    for k in range(CLASSES):
        c = one_hot(torch.full((len(x),), k), CLASSES).float()
        rows.append(dist.log_prob(x, c))
    return torch.stack(rows, 1)


def plot(dist: FlowDistribution, x: Tensor, y: Tensor, folder: str) -> None:
    """Write test points and 600 conditional samples per class to a PNG in ``folder``."""
    from _plotting import figure, plane, save

    fig = figure(9.5, 4.6)
    left, right = fig.subplots(1, 2)
    for k in range(CLASSES):
        c = one_hot(torch.tensor([k]), CLASSES).float()  # batch 1: expanded to n
        left.scatter(*x[y == k][:600].T, s=2, alpha=0.6, color=f"C{k}", label=f"class {k}")
        right.scatter(*cast(Tensor, dist.sample(600, c=c)).T, s=2, alpha=0.6, color=f"C{k}")
    plane(left, LIMIT, "test data, coloured by class y")
    plane(right, LIMIT, "samples x ~ p(x | y), coloured by the y asked for")
    fig.legend(loc="outside right center", markerscale=5)
    fig.suptitle("Conditional INN on a 5-arm pinwheel: one flow for all classes")
    save(fig, folder, "conditional_samples.png")


def train(
    dist: FlowDistribution, x: Tensor, c: Tensor, steps: int, gen: torch.Generator
) -> float:
    """Conditional maximum likelihood with Adam on batches of 256; returns the seconds."""
    optimiser = torch.optim.Adam(dist.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(len(x), (256,), generator=gen)
        loss = dist.nll(x[idx], c[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % max(steps // 5, 1) == 0:
            print(f"step {step:5d}/{steps}  train NLL {loss.item():.3f} nats")
    dist.eval()
    return time.perf_counter() - start


@torch.no_grad()
def report(dist: FlowDistribution, x: Tensor, y: Tensor, gen: torch.Generator) -> None:
    """Print conditional and marginal NLL, classifier accuracy and conditional sample accuracy."""
    c = one_hot(y, CLASSES).float()
    log_lik = class_log_likelihoods(dist, x)
    marginal_nll = float(-(log_lik.logsumexp(1) - math.log(CLASSES)).mean())
    accuracy = float((log_lik.argmax(1) == y).float().mean())
    samples = cast(Tensor, dist.sample(c=c, generator=gen))  # n inferred from the conditions
    sample_accuracy = float((y[torch.cdist(samples, x).argmin(1)] == y).float().mean())
    print(f"test NLL -log p(x|y) (nats/sample): {float(dist.nll(x, c)):.4f}")
    print(f"test NLL -log p(x) (nats/sample): {marginal_nll:.4f}")
    print(f"generative classifier accuracy (%): {100 * accuracy:.1f}")
    print(f"conditional samples in their class (%): {100 * sample_accuracy:.1f}")


def main(argv: Optional[List[str]] = None) -> int:
    """Train, evaluate and print the key numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny nets: 1)")
    parser.add_argument("--plot", metavar="DIR", default=None, help="write a PNG into DIR")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # AllInOneBlock draws its soft permutations from numpy
    gen = torch.Generator().manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = pinwheel(20_000, gen), pinwheel(3_000, gen)
    dist = FlowDistribution(make_flow(2 if args.fast else 8))
    c_train = one_hot(y_train, CLASSES).float()
    seconds = train(dist, x_train, c_train, args.steps or (60 if args.fast else 3000), gen)
    print(f"training time (s): {seconds:.1f}")
    report(dist, x_test, y_test, gen)
    if args.plot:
        plot(dist, x_test, y_test, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
