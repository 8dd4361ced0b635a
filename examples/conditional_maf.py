"""A conditional MAF: class-conditional densities p(x | class) of 2-D data made in code.

Run ``python examples/conditional_maf.py [--fast] [--epochs N] [--seed S] [--out DIR]``
(``--out`` needs matplotlib). Each of four classes is a two-component Gaussian mixture in the
plane (a round blob near the origin and a long arc-like blob further out, in the class's
direction), so the true density is known. ``invertible.flows.MAF(2, context=4)`` gets the
one-hot class as its condition: one network for all four densities. The script prints train and
test NLL per epoch, then the test NLL next to that of the true density (the best any model can
do), the accuracy of the generative classifier ``argmax_k log p(x | k)`` next to the Bayes
classifier's, and the inverse error; with ``--out DIR`` it writes ``DIR/conditional_maf.png``:
the learned density per class (true density as contours) and samples per class on the test data.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import List, Optional, Tuple, cast

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal
from torch.nn.functional import one_hot

from invertible.distributions import FlowDistribution
from invertible.flows import MAF

__all__ = [
    "CLASSES", "class_log_likelihoods", "components", "main", "make_data", "plot",
    "true_log_prob",
]

CLASSES = 4
LIMIT = 3.0  # the plots show [-LIMIT, LIMIT]^2


def components(k: int) -> Tuple[Tensor, Tensor]:
    """Means ``(2, 2)`` and Cholesky factors ``(2, 2, 2)`` of the two components of class ``k``.

    The inner component is round; the outer one is narrow along the class's direction and wide
    across it.
    """
    angle = 2 * math.pi * k / CLASSES + math.pi / 4
    u = torch.tensor([math.cos(angle), math.sin(angle)])  # radial direction
    v = torch.tensor([-u[1].item(), u[0].item()])  # tangential direction
    means = torch.stack([0.7 * u, 2.0 * u])
    outer = torch.stack([u, v], 1) @ torch.diag(torch.tensor([0.15, 0.6]))
    scales = torch.stack([0.25 * torch.eye(2), torch.linalg.cholesky(outer @ outer.T)])
    return means, scales


def make_data(n: int, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    """``n`` points ``(n, 2)`` with balanced random labels ``(n,)``; components equally likely."""
    labels = torch.randint(CLASSES, (n,), generator=generator)
    component = torch.randint(2, (n,), generator=generator)
    eps = torch.randn(n, 2, generator=generator)
    x = torch.empty(n, 2)
    for k in range(CLASSES):
        means, scales = components(k)
        for j in range(2):
            mask = (labels == k) & (component == j)
            x[mask] = means[j] + eps[mask] @ scales[j].T
    return x, labels


def true_log_prob(x: Tensor, k: int) -> Tensor:
    """The true ``log p(x | class k)``, ``(n,)``."""
    means, scales = components(k)
    parts = [MultivariateNormal(means[j], scale_tril=scales[j]).log_prob(x) for j in range(2)]
    return torch.logsumexp(torch.stack(parts), 0) - math.log(2)


@torch.no_grad()
def class_log_likelihoods(dist: FlowDistribution, x: Tensor) -> Tensor:
    """``log p(x | k)`` of the model for every class, ``(n, CLASSES)``."""
    dist.eval()
    columns = []
    for k in range(CLASSES):
        c = one_hot(torch.full((len(x),), k), CLASSES).float()
        columns.append(dist.log_prob(x, c))
    return torch.stack(columns, 1)


def train_epoch(dist: FlowDistribution, optimiser: torch.optim.Optimizer, x: Tensor,
                labels: Tensor, generator: torch.Generator, batch: int,
                max_steps: Optional[int] = None) -> float:
    """One pass of Adam over shuffled batches; the mean train NLL (nats/sample)."""
    dist.train()
    losses: List[float] = []
    for idx in torch.randperm(len(x), generator=generator).split(batch)[:max_steps]:
        loss = dist.nll(x[idx], one_hot(labels[idx], CLASSES).float())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


@torch.no_grad()
def test_nll(dist: FlowDistribution, x: Tensor, labels: Tensor) -> float:
    """Mean ``-log p(x | label)`` of the model in nats/sample."""
    dist.eval()
    return float(dist.nll(x, one_hot(labels, CLASSES).float()))


def plot(dist: FlowDistribution, test: Tensor, labels: Tensor, folder: str) -> Path:
    """Learned ``p(x | k)`` per class (top, with true contours) and samples per class (bottom)."""
    from _plotting import figure, plane, save
    from matplotlib.lines import Line2D

    grid = torch.linspace(-LIMIT, LIMIT, 150)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)
    learned = class_log_likelihoods(dist, points).exp()
    fig = figure(3.7 * CLASSES, 7.0)
    axes = fig.subplots(2, CLASSES)
    fig.suptitle("Conditional MAF: one flow, conditioned on the one-hot class")
    for k in range(CLASSES):
        top, bottom = axes[0, k], axes[1, k]
        image = top.imshow(learned[:, k].reshape(150, 150), origin="lower", cmap="viridis",
                           extent=(-LIMIT, LIMIT, -LIMIT, LIMIT))
        fig.colorbar(image, ax=top, shrink=0.8, label=f"p(x | class {k})")
        true = true_log_prob(points, k).exp().reshape(150, 150)
        levels = [float(true.max()) * f for f in (0.05, 0.3, 0.7)]
        top.contour(xx, yy, true, levels=levels, colors="white", linewidths=0.7)
        plane(top, LIMIT, f"learned p(x | class {k})")
        samples = cast(Tensor, dist.sample(500, one_hot(torch.tensor([k]), CLASSES).float()))
        bottom.scatter(*test[labels == k][:500].T, s=3, color="0.6", label="test data")
        bottom.scatter(*samples.T, s=3, color=f"C{k}", label="MAF samples")
        plane(bottom, LIMIT, f"class {k}: samples vs test data")
        bottom.legend(loc="best", fontsize=8, markerscale=3)
    axes[0, 0].legend(handles=[Line2D([], [], color="white", lw=0.7, label="true density")],
                      loc="lower left", fontsize=8, facecolor="0.3", labelcolor="white")
    return save(fig, folder, "conditional_maf.png")


def main(argv: Optional[List[str]] = None) -> int:
    """Train the conditional MAF, print NLL per epoch and the key numbers, plot on request."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true",
                        help="a small data set and a few steps (smoke test)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny nets: 1)")
    parser.add_argument("--out", "--plot", dest="out", metavar="DIR", default=None,
                        help="write conditional_maf.png into DIR (default: no files)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    n_train, n_test = (2_000, 1_000) if args.fast else (20_000, 5_000)
    x_train, y_train = make_data(n_train, gen)
    x_test, y_test = make_data(n_test, gen)
    dist = MAF(2, transforms=2 if args.fast else 5, hidden_features=(64, 64), context=CLASSES,
               seed=args.seed)
    optimiser = torch.optim.Adam(dist.parameters(), lr=1e-3)
    epochs = args.epochs or (2 if args.fast else 20)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train = train_epoch(dist, optimiser, x_train, y_train, gen, batch=256,
                            max_steps=5 if args.fast else None)
        test = test_nll(dist, x_test, y_test)
        print(f"epoch {epoch:3d}/{epochs}  train NLL {train:.3f}  test NLL {test:.3f} nats")
    print(f"training time (s): {time.perf_counter() - start:.1f}")
    model = class_log_likelihoods(dist, x_test)
    truth = torch.stack([true_log_prob(x_test, k) for k in range(CLASSES)], 1)
    with torch.no_grad():
        c = one_hot(y_test, CLASSES).float()
        z = dist.inn(x_test, c=[c])[0]
        inverse_error = float((dist.inn(z, c=[c], rev=True)[0] - x_test).abs().max())
    print(f"test NLL -log p(x|class) MAF (nats/sample): {test_nll(dist, x_test, y_test):.4f}")
    true_nll = float(-truth.gather(1, y_test[:, None]).mean())
    print(f"test NLL -log p(x|class) true density (nats/sample): {true_nll:.4f}")
    accuracy = float((model.argmax(1) == y_test).float().mean())
    bayes = float((truth.argmax(1) == y_test).float().mean())
    print(f"generative classifier accuracy (%): {100 * accuracy:.1f}")
    print(f"Bayes classifier accuracy (%): {100 * bayes:.1f}")
    print(f"inverse error max|x - f^-1(f(x))|: {inverse_error:.2e}")
    if args.out:
        plot(dist, x_test, y_test, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
