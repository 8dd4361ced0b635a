"""Density estimation in 2-D: fit a flow to two moons by maximum likelihood, then sample.

Run ``python examples/density_estimation_2d.py [--fast] [--plot DIR]``. Prints the test NLL of
the flow next to that of the best Gaussian, the inverse error and how many samples land on the
data.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import List, Optional, cast

import numpy as np
import torch
from torch import Tensor, nn

from invertible.distributions import FlowDistribution
from invertible.framework import SequenceINN
from invertible.modules import AllInOneBlock

__all__ = ["gaussian_fit_nll", "main", "make_flow", "mlp", "report", "train", "two_moons"]

LIMIT = 2.5  # the plot shows [-LIMIT, LIMIT]^2


def two_moons(n: int, generator: torch.Generator, noise: float = 0.08) -> Tensor:
    """``n`` points on two interleaved half circles with Gaussian noise, shape ``(n, 2)``."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(angle), 1.0 - torch.cos(angle)) - 0.5
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle)) - 0.25
    return torch.stack([x, y], dim=1) * 1.5 + noise * torch.randn(n, 2, generator=generator)


def mlp(c_in: int, c_out: int) -> nn.Module:
    """Coupling subnet: a two-hidden-layer MLP."""
    return nn.Sequential(
        nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, c_out)
    )


def make_flow(blocks: int) -> SequenceINN:
    """``blocks`` AllInOneBlocks with soft permutations on 2-D points."""
    inn = SequenceINN(2)
    for _ in range(blocks):
        inn.append(AllInOneBlock, subnet_constructor=mlp, permute_soft=True)
    return inn


def gaussian_fit_nll(train: Tensor, test: Tensor) -> float:
    """Test NLL (nats/sample) of the maximum-likelihood Gaussian of ``train``: the baseline."""
    fit = torch.distributions.MultivariateNormal(train.mean(0), train.T.cov())
    return float(-fit.log_prob(test).mean())


def plot(dist: FlowDistribution, data: Tensor, samples: Tensor, folder: str) -> None:
    """Write the test data, the learned density and the samples to ``folder/density_2d.png``."""
    from _plotting import REAL_COLOUR, SAMPLE_COLOUR, figure, plane, save

    grid = torch.linspace(-LIMIT, LIMIT, 200)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        density = dist.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
        nll = float(dist.nll(data))
    fig = figure(12.0, 4.3)
    left, middle, right = fig.subplots(1, 3)
    left.scatter(*data[:2000].T, s=2, alpha=0.5, color=REAL_COLOUR)
    shown = middle.imshow(density.reshape(200, 200), origin="lower", cmap="magma",
                          extent=(-LIMIT, LIMIT, -LIMIT, LIMIT))
    fig.colorbar(shown, ax=middle, shrink=0.8, label="p(x)")
    right.scatter(*samples[:2000].T, s=2, alpha=0.5, color=SAMPLE_COLOUR)
    titles = ("data: two moons (test set)", f"learned density (test NLL {nll:.3f} nats)",
              "samples from the flow")
    for ax, title in zip((left, middle, right), titles):
        plane(ax, LIMIT, title)
    fig.suptitle("Density estimation in 2-D with a SequenceINN of AllInOneBlocks")
    save(fig, folder, "density_2d.png")


def train(dist: FlowDistribution, data: Tensor, steps: int, gen: torch.Generator) -> float:
    """Maximum likelihood with Adam on batches of 256; returns the seconds it took."""
    optimiser = torch.optim.Adam(dist.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        loss = dist.nll(data[torch.randint(len(data), (256,), generator=gen)])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % max(steps // 5, 1) == 0:
            print(f"step {step:5d}/{steps}  train NLL {loss.item():.3f} nats")
    dist.eval()
    return time.perf_counter() - start


@torch.no_grad()
def report(dist: FlowDistribution, train_data: Tensor, test: Tensor, samples: Tensor) -> None:
    """Print test NLL (flow and Gaussian baseline), bits/dim, inverse error, sample quality."""
    z, _ = dist.inn(test)
    inverse_error = float((dist.inn(z, rev=True)[0] - test).abs().max())
    near = torch.cdist(samples, test).min(1).values < 0.25
    print(f"test NLL flow (nats/sample): {float(dist.nll(test)):.4f}")
    print(f"test NLL Gaussian fit (nats/sample): {gaussian_fit_nll(train_data, test):.4f}")
    print(f"test bits/dim: {float(dist.bits_per_dim(test)):.4f}")
    print(f"inverse error max|x - f^-1(f(x))|: {inverse_error:.2e}")
    print(f"samples within 0.25 of a test point (%): {100 * float(near.float().mean()):.1f}")


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
    train_data, test = two_moons(20_000, gen), two_moons(5_000, gen)
    dist = FlowDistribution(make_flow(2 if args.fast else 8))
    seconds = train(dist, train_data, args.steps or (60 if args.fast else 3000), gen)
    samples = cast(Tensor, dist.sample(5_000, generator=gen))
    print(f"training time (s): {seconds:.1f}")
    report(dist, train_data, test, samples)
    if args.plot:
        plot(dist, test, samples, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
