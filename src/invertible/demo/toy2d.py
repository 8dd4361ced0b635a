r"""Maximum-likelihood training of a flow on a 2-D density generated in code (two moons).

The flow ``f: x -> z`` is a ``SequenceINN`` of ``AllInOneBlock`` s with MLP subnets; its density
is ``log p(x) = log N(f(x); 0, I) + log|det ∂f/∂x|``. The data are continuous, so the NLL needs
no dequantisation and bits/dim is ``NLL / (2 ln 2)`` (it may be negative: a density can exceed
1). For an anomaly score like the digits demo's, test moons are compared with outliers drawn
uniformly from the plotting box; the AUROC measures how well the NLL separates them.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Optional, TextIO, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..framework import SequenceINN
from ..modules import AllInOneBlock
from ._metrics import auroc, bits_per_dim, standard_normal_nll
from ._train import TrainLog, fit

__all__ = [
    "BOX",
    "MoonsResult",
    "density_grid",
    "make_flow",
    "mlp_subnet",
    "nll_nats",
    "run_moons",
    "two_moons",
]

BOX = (-2.5, 2.5, -1.75, 1.75)  # x_min, x_max, y_min, y_max of the plots and the outliers
N_TRAIN, N_TEST = 20_000, 5_000
BATCH_SIZE = 256


def two_moons(n: int, generator: torch.Generator, noise: float = 0.08) -> Tensor:
    """``n`` points of two interleaved half circles with Gaussian noise, shape ``(n, 2)``."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(angle), 1.0 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    return points + noise * torch.randn(n, 2, generator=generator)


def uniform_box(n: int, generator: torch.Generator) -> Tensor:
    """``n`` points uniform in `BOX`: the outliers of the anomaly score."""
    low = torch.tensor([BOX[0], BOX[2]])
    high = torch.tensor([BOX[1], BOX[3]])
    return low + (high - low) * torch.rand(n, 2, generator=generator)


def mlp_subnet(c_in: int, c_out: int) -> nn.Module:
    """The coupling subnet: a 2-hidden-layer MLP whose last layer starts at zero (identity)."""
    net = nn.Sequential(
        nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, c_out)
    )
    for parameter in net[-1].parameters():
        nn.init.zeros_(parameter)
    return net


def make_flow(n_blocks: int) -> SequenceINN:
    """A ``SequenceINN(2)`` of ``n_blocks`` ``AllInOneBlock`` s with soft permutations."""
    flow = SequenceINN(2)
    for _ in range(n_blocks):
        flow.append(AllInOneBlock, subnet_constructor=mlp_subnet, permute_soft=True)
    return flow


def nll_nats(flow: nn.Module, x: Tensor) -> Tensor:
    r"""Per-sample NLL in nats: :math:`\tfrac12\|z\|^2 + \tfrac d2\ln 2\pi - \log|\det J|`."""
    z, log_det = flow(x)
    return standard_normal_nll(z, log_det)


def _mean_nll(flow: nn.Module, x: Tensor) -> Tensor:
    """The training loss: mean NLL in nats of a batch."""
    return nll_nats(flow, x).mean()


def density_grid(
    flow: nn.Module, resolution: int = 200
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The learned density ``p(x)`` on a ``resolution``² grid over `BOX`: ``(xs, ys, p)``."""
    device = next(flow.parameters()).device
    xs = torch.linspace(BOX[0], BOX[1], resolution)
    ys = torch.linspace(BOX[2], BOX[3], resolution)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    flow.eval()
    with torch.no_grad():
        density = torch.exp(-nll_nats(flow, grid.to(device))).reshape(resolution, resolution)
    return xs.numpy(), ys.numpy(), density.cpu().numpy()


@dataclass
class MoonsResult:
    """What `run_moons` measured (NLL in nats per sample, bits/dim per coordinate)."""

    n_parameters: int
    train_nll: float
    test_nll: float
    test_bpd: float
    auroc: float
    inverse_error: float
    seconds: float
    log: TrainLog
    normal_scores: np.ndarray
    anomaly_scores: np.ndarray
    data: np.ndarray = field(repr=False)
    samples: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)  # p(x) on a grid over BOX, rows = y


def run_moons(
    epochs: int = 12,
    blocks: int = 16,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    stream: Optional[TextIO] = sys.stderr,
) -> MoonsResult:
    """Train on two moons; report NLL, bits/dim, outlier AUROC and the max round-trip error.

    Args:
        epochs: passes over the 20,000 training points (79 steps of 256 each).
        blocks: ``AllInOneBlock`` s in the flow.
        seed: seeds torch's and numpy's global generators (initialisation) and the data.
        device: where the network runs.
        stream: where the progress bar goes (``None``: silent).
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train, test = two_moons(N_TRAIN, generator).to(device), two_moons(N_TEST, generator).to(device)
    outliers = uniform_box(N_TEST, generator).to(device)
    flow = make_flow(blocks).to(device)
    log = fit(
        flow, train, partial(_mean_nll, flow), epochs, BATCH_SIZE, generator, lr=3e-3,
        evaluate=partial(_mean_nll, flow, test),
        label="two moons", unit="nats", stream=stream,
    )
    with torch.no_grad():
        normal_scores = nll_nats(flow, test).cpu().numpy()
        anomaly_scores = nll_nats(flow, outliers).cpu().numpy()
        z, _ = flow(test, jac=False)
        x_again, _ = flow(z, rev=True, jac=False)
        samples, _ = flow(torch.randn(2000, 2, generator=generator).to(device), rev=True)
        return MoonsResult(
            n_parameters=sum(p.numel() for p in flow.parameters() if p.requires_grad),
            train_nll=float(nll_nats(flow, train[:N_TEST]).mean()),
            test_nll=float(normal_scores.mean()),
            test_bpd=float(bits_per_dim(torch.tensor(normal_scores.mean()), 2)),
            auroc=auroc(normal_scores, anomaly_scores),
            inverse_error=float((x_again - test).abs().max()),
            seconds=time.perf_counter() - start,
            log=log,
            normal_scores=normal_scores,
            anomaly_scores=anomaly_scores,
            data=test[:2000].cpu().numpy(),
            samples=samples.cpu().numpy(),
            density=density_grid(flow)[2],
        )

