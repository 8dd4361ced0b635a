"""Maximum-likelihood training of a flow on a 2-D density generated in code (two moons)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor, nn

from ..framework import SequenceINN
from ..modules import AllInOneBlock

__all__ = ["Toy2DResult", "make_flow", "nll_nats", "run_toy2d", "two_moons"]


def two_moons(n: int, generator: torch.Generator, noise: float = 0.08) -> Tensor:
    """``n`` points of two interleaved half circles with Gaussian noise, shape ``(n, 2)``."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(angle), 1.0 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    return points + noise * torch.randn(n, 2, generator=generator)


def mlp_subnet(c_in: int, c_out: int) -> nn.Module:
    """The coupling subnet of the demo: a 2-hidden-layer MLP."""
    return nn.Sequential(
        nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, c_out)
    )


def make_flow(n_blocks: int) -> SequenceINN:
    """A ``SequenceINN(2)`` of ``n_blocks`` ``AllInOneBlock`` s with soft permutations."""
    flow = SequenceINN(2)
    for _ in range(n_blocks):
        flow.append(AllInOneBlock, subnet_constructor=mlp_subnet, permute_soft=True)
    return flow


def nll_nats(flow: nn.Module, x: Tensor) -> Tensor:
    r"""Mean NLL in nats: :math:`\tfrac12\|z\|^2 + \tfrac d2\ln 2\pi - \log|\det J|`."""
    z, log_det = flow(x)
    d = x[0].numel()
    return (0.5 * z.pow(2).sum(1) + 0.5 * d * math.log(2 * math.pi) - log_det).mean()


@dataclass
class Toy2DResult:
    """What the demo measured."""

    train_nll: float
    test_nll: float
    inverse_error: float
    seconds: float
    losses: List[float]


def run_toy2d(
    steps: int = 1000, blocks: int = 8, batch: int = 256, seed: int = 0, log_every: int = 250
) -> Toy2DResult:
    """Train on two moons, report train/test NLL (nats) and the max round-trip error."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, test = two_moons(20_000, gen), two_moons(5_000, gen)
    flow = make_flow(blocks)
    optimiser = torch.optim.Adam(flow.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    losses: List[float] = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(len(train), (batch,), generator=gen)
        loss = nll_nats(flow, train[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if log_every and step % log_every == 0:
            print(
                f"step {step:5d}/{steps}  train NLL {sum(losses[-log_every:]) / log_every:.4f} nats"
            )
    flow.eval()
    with torch.no_grad():
        test_nll = float(nll_nats(flow, test))
        train_nll = float(nll_nats(flow, train[:5000]))
        z, _ = flow(test)
        x_rev, _ = flow(z, rev=True)
        inverse_error = float((x_rev - test).abs().max())
    return Toy2DResult(train_nll, test_nll, inverse_error, time.perf_counter() - start, losses)
