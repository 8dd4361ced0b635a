"""Training side by side: invertible's flow presets against zuko, nflows and normflows.

    python benchmarks/train_peers.py [--quick] [--out PATH] [--datasets moons,digits]
                                     [--families realnvp,nsf,maf,glow]
                                     [--libs invertible,zuko,nflows,normflows]
                                     [--epochs 60] [--batch 128] [--lr 1e-3] [--seed 0]
                                     [--transforms 4] [--hidden 64,64] [--bins 8]
                                     [--clock cpu|wall]

Every library trains its own closest equivalent of each ``invertible.flows`` preset on the same
data, and the script prints a markdown table: test NLL, the epoch the model was taken from and
the median training time per epoch.

**Data** (split 60/20/20 into train, validation and test by one seeded permutation):

* ``moons``: two interleaved half circles with Gaussian noise (0.1), made from a seeded
  generator (``--moons`` points), shifted and scaled by 2. Reported: NLL in nats per sample.
* ``digits``: scikit-learn's 1,797 8x8 digits (grey levels 0..16, shipped with the package).
  Dequantised ``y = (v + u) / 17`` with ``u ~ U[0, 1)`` (fresh noise every epoch for training,
  one fixed draw for validation and test, the same for all libraries), then
  ``x = logit(a + (1 - 2a) y)`` with ``a = 0.05``; the flows model ``x``. Reported: NLL of ``y``
  in ``[0, 1)^64`` (the flow's NLL minus the log-det of the logit map, so the number does not
  depend on that choice), in nats per sample and per dimension. Glow sees ``(1, 8, 8)``.

**Models** (``--transforms T``, ``--hidden H``, ``--bins K``; each library's own
initialisation, torch seeded with ``--seed`` before each build):

* realnvp: invertible ``RealNVP(T blocks)``: each block a GLOW coupling (both halves in turn,
  one subnet each, log-scale soft-clamped at 2) with a ``PermuteRandom`` between blocks. Peers:
  ``2T`` one-sided affine couplings with the same subnet ``Linear(D/2, H..)-ReLU..-Linear(.., D)``
  - zuko ``RealNVP(randmask=True)`` (a random mask per coupling), nflows
  ``AffineCouplingTransform`` pairs with complementary masks and a ``RandomPermutation`` between
  pairs, normflows ``AffineCouplingBlock(scale_map="exp")`` pairs and ``Permute("shuffle")``.
* nsf: invertible ``NSF`` (rational-quadratic coupling splines, both halves per block, ``K``
  bins on the fixed square ``[-B, B]^2``, identity outside). ``B = --bound``, by default per
  dataset the smallest integer holding every training input (:func:`spline_bound`: 3 for the
  digits, 4 for the moons), given to every library that takes one. Peers: ``2T`` one-sided
  spline couplings - zuko ``NSF(passes=2, randperm=True)`` (its coupling form; its domain is
  fixed at ``[-5, 5]``, identity outside), nflows
  ``PiecewiseRationalQuadraticCouplingTransform`` (tail bound ``B``, linear tails) with the
  same MLP, normflows ``CoupledRationalQuadraticSpline`` (tail bound ``B``; its conditioner is a
  ``ResidualNet`` with one residual block: 4 linear layers instead of 3).
* maf: ``T`` MADE layers (hidden ``H``, sequential order reversed between layers): invertible
  ``MAF``, zuko ``MAF``, nflows ``MaskedAutoregressiveFlow(use_residual_blocks=False)``,
  normflows ``MaskedAffineAutoregressive(use_residual_blocks=False)`` with reversals.
* glow (digits only): invertible ``Glow((1, 8, 8), levels=2)`` (squeeze, ActNorm, learned 1x1
  convolution, affine coupling per step; the factored-out latent has a learned prior computed
  from the coarser latent); normflows ``MultiscaleFlow`` of ``GlowBlock`` s (ActNorm, LU 1x1
  convolution, affine coupling with a sigmoid scale) with ``Squeeze``/``Merge`` and a learned
  ``GlowBase`` per level (not conditioned on the other latent). Same steps and hidden channels.

**Training**: Adam (``--lr``), ``--batch``, ``--epochs`` for every model; the batches of an
epoch are the same permutation for every library. Models are trained round-robin: epoch ``e``
of every model runs before epoch ``e + 1`` of any, in an order rotated every epoch, so load on
the machine hits all libraries alike. After every epoch the validation NLL is computed; the
state of the best epoch is kept and gives the test NLL. A model whose loss turns non-finite
stops training (reported as diverged; its best earlier state still counts). Time per epoch is
the training loop only (no validation), by the thread's CPU clock (``--clock cpu``, default: time
spent while other processes run is not counted) or wall time; reported is the median over
epochs and its ratio to the fastest peer's. One torch thread; glibc's ``MALLOC_MMAP_THRESHOLD_``
and ``MALLOC_TRIM_THRESHOLD_`` as in ``malloc_env.py``.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import json
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["BUILDERS", "Dataset", "Settings", "main", "make_digits", "make_moons", "train"]

HERE = Path(__file__).resolve().parent
LIBS = ("invertible", "zuko", "nflows", "normflows")
FAMILIES = ("realnvp", "nsf", "maf", "glow")
ALPHA = 0.05  # the logit map's margin on digits
LEVELS = 17  # grey levels of the digits
IMAGE = (1, 8, 8)
#: Peers' warnings that say nothing about this run (nflows' spline initialisation, normflows'
#: use of the deprecated ``torch.lu``).
NOISE = ("Inputs to the softmax are not scaled down", "torch.lu is deprecated")


@dataclass
class Settings:
    """Everything that defines a run (recorded in the JSON)."""

    datasets: Tuple[str, ...] = ("moons", "digits")
    families: Tuple[str, ...] = FAMILIES
    libs: Tuple[str, ...] = LIBS
    epochs: int = 60
    batch: int = 128
    lr: float = 1e-3
    seed: int = 0
    transforms: int = 4
    hidden: Tuple[int, ...] = (64, 64)
    bins: int = 8
    bound: Optional[float] = None  # splines' half width (where the library lets us choose it);
    # None: per dataset, the smallest integer that holds every training input (spline_bound)
    glow_steps: int = 4
    glow_hidden: int = 64
    moons: int = 5000
    digits: Optional[int] = None  # a subset of the digits (None: all)
    clock: str = "cpu"


@dataclass
class Dataset:
    """One dataset: the three splits and how to turn a split into model inputs."""

    name: str
    train: Tensor
    val: Tensor
    test: Tensor
    dequantise: bool  # digits: grey levels, to be noised and logit-mapped
    dims: int = field(init=False)  # scalars per sample

    def __post_init__(self) -> None:
        self.dims = self.train[0].numel()

    def inputs(self, values: Tensor, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
        """Model inputs ``x`` and, per row, the log-det of the map from reported data to ``x``."""
        if not self.dequantise:
            return values, torch.zeros(len(values))
        y = (values + torch.rand(values.shape, generator=generator)) / LEVELS
        p = ALPHA + (1 - 2 * ALPHA) * y
        log_det = (math.log(1 - 2 * ALPHA) - torch.log(p) - torch.log1p(-p)).sum(1)
        return torch.logit(p), log_det


def spline_bound(data: Dataset) -> float:
    """The smallest integer half width ``B`` with every training input in ``[-B, B]``: the
    digits' logit stays within ``logit(1 - ALPHA)`` = 2.94, so 3; the moons' points reach 3.6,
    so 4. A spline whose box misses part of the data (or is far too wide) costs likelihood."""
    if data.dequantise:
        return float(math.ceil(math.log((1 - ALPHA) / ALPHA)))
    return float(math.ceil(float(data.train.abs().max())))


def split(data: Tensor, seed: int) -> Tuple[Tensor, Tensor, Tensor]:
    """A seeded 60/20/20 split into train, validation and test rows."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(0.6 * len(data)), int(0.2 * len(data))
    parts = order.split([n_train, n_val, len(data) - n_train - n_val])
    return data[parts[0]], data[parts[1]], data[parts[2]]


def make_moons(n: int, seed: int) -> Dataset:
    """Two interleaved half circles plus N(0, 0.1^2) noise, shifted to the origin, times 2."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=gen) * math.pi
    upper = torch.rand(n, generator=gen) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    points = torch.stack([x - 0.5, y - 0.25], 1) + 0.1 * torch.randn(n, 2, generator=gen)
    return Dataset("moons", *split(2 * points, seed), dequantise=False)


def make_digits(seed: int, subset: Optional[int] = None) -> Dataset:
    """scikit-learn's 8x8 digits as grey levels ``(n, 64)`` in 0..16 (float32)."""
    from sklearn.datasets import load_digits

    data = torch.as_tensor(load_digits().data, dtype=torch.float32)[:subset]
    return Dataset("digits", *split(data, seed), dequantise=True)


# ---------------------------------------------------------------------------------------------
# Models: one builder per (library, family); each returns a module and its log-density call.


class Model:
    """A library's flow: the module holding its parameters and how it scores data."""

    def __init__(self, module: nn.Module, log_prob: Callable[[Tensor], Tensor],
                 image: bool = False) -> None:
        self.module: Any = module
        self.log_prob_fn = log_prob
        self.image = image

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of each row of ``x`` (rows reshaped to images for image flows)."""
        return self.log_prob_fn(x.view(-1, *IMAGE) if self.image else x)


class ContextFreeMLP(nn.Sequential):
    """``Linear, ReLU`` per hidden width, then ``Linear``; ignores nflows' context argument."""

    def __init__(self, c_in: int, c_out: int, hidden: Sequence[int]) -> None:
        widths = (c_in, *hidden)
        layers: List[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        super().__init__(*layers, nn.Linear(widths[-1], c_out))

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """The layers applied to ``x``."""
        return super().forward(x)


class NflowsNet:
    """nflows' ``transform_net_create_fn``: a :class:`ContextFreeMLP` (picklable, no lambda)."""

    def __init__(self, hidden: Sequence[int]) -> None:
        self.hidden = tuple(hidden)

    def __call__(self, c_in: int, c_out: int) -> nn.Module:
        return ContextFreeMLP(c_in, c_out, self.hidden)


def build_invertible(family: str, d: int, s: Settings) -> Model:
    """The ``invertible.flows`` preset."""
    flows = importlib.import_module("invertible.flows")
    if family == "glow":
        dist = flows.Glow(IMAGE, levels=2, steps=s.glow_steps, hidden_channels=s.glow_hidden,
                          seed=s.seed)
        return Model(dist, dist.log_prob, image=True)
    options: Dict[str, Any] = {"bins": s.bins, "bound": s.bound} if family == "nsf" else {}
    preset = {"realnvp": flows.RealNVP, "nsf": flows.NSF, "maf": flows.MAF}[family]
    dist = preset(d, transforms=s.transforms, hidden_features=s.hidden, seed=s.seed, **options)
    return Model(dist, dist.log_prob)


def build_zuko(family: str, d: int, s: Settings) -> Model:
    """zuko's RealNVP (random masks), coupling NSF (``passes=2``, random orders) or MAF."""
    import zuko

    hidden = {"hidden_features": s.hidden}
    if family == "realnvp":
        flow = zuko.flows.RealNVP(d, transforms=2 * s.transforms, randmask=True, **hidden)
    elif family == "nsf":
        flow = zuko.flows.NSF(d, bins=s.bins, transforms=2 * s.transforms, passes=2,
                              randperm=True, **hidden)
    else:
        flow = zuko.flows.MAF(d, transforms=s.transforms, **hidden)
    return Model(flow, _ZukoLogProb(flow))


class _ZukoLogProb:
    """zuko's lazy flow is called for its distribution on every use, as zuko is used."""

    def __init__(self, flow: nn.Module) -> None:
        self.flow = flow

    def __call__(self, x: Tensor) -> Tensor:
        return self.flow().log_prob(x)


def build_nflows(family: str, d: int, s: Settings) -> Model:
    """nflows' coupling pairs (complementary masks, a random permutation between) or its MAF."""
    from nflows import transforms as T
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow, MaskedAutoregressiveFlow

    if family == "maf":
        flow = MaskedAutoregressiveFlow(d, hidden_features=s.hidden[0], num_layers=s.transforms,
                                        num_blocks_per_layer=len(s.hidden) - 1,
                                        use_residual_blocks=False)
        return Model(flow, flow.log_prob)
    net = NflowsNet(s.hidden)
    second = (torch.arange(d) >= d // 2).int()  # 1: transformed
    layers: List[nn.Module] = []
    for k in range(s.transforms):
        if k:
            layers.append(T.RandomPermutation(d))
        for mask in (second, 1 - second):
            if family == "realnvp":
                layers.append(T.AffineCouplingTransform(mask, net))
            else:
                layers.append(T.PiecewiseRationalQuadraticCouplingTransform(
                    mask, net, num_bins=s.bins, tails="linear", tail_bound=s.bound))
    flow = Flow(T.CompositeTransform(layers), StandardNormal([d]))
    return Model(flow, flow.log_prob)


def build_normflows(family: str, d: int, s: Settings) -> Model:
    """normflows' coupling/MAF equivalents as a ``NormalizingFlow``, or its multi-scale Glow."""
    import normflows as nf

    if family == "glow":
        return _normflows_glow(s)
    data_to_latent: List[nn.Module] = []
    for k in range(s.transforms):
        if k:
            perm = nf.flows.Permute(d, mode="shuffle")
            if family == "maf":  # a reversal, as between MAF layers of the other libraries
                perm.perm.copy_(torch.arange(d).flip(0))
                perm.inv_perm.copy_(torch.arange(d).flip(0))
            data_to_latent.append(perm)
        if family == "maf":
            data_to_latent.append(nf.flows.MaskedAffineAutoregressive(
                d, s.hidden[0], num_blocks=len(s.hidden) - 1, use_residual_blocks=False))
        elif family == "realnvp":
            data_to_latent += [nf.flows.AffineCouplingBlock(
                nf.nets.MLP([d // 2, *s.hidden, d], init_zeros=True), scale_map="exp",
                split_mode=mode) for mode in ("channel", "channel_inv")]
        else:
            data_to_latent += [nf.flows.CoupledRationalQuadraticSpline(
                d, 1, s.hidden[0], num_bins=s.bins, tail_bound=s.bound, reverse_mask=rev)
                for rev in (False, True)]
    # normflows runs its list from latent to data, so the data side comes last
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=False),
                              data_to_latent[::-1])
    return Model(flow, flow.log_prob)


def _normflows_glow(s: Settings) -> Model:
    """normflows' multi-scale Glow with two levels on ``(1, 8, 8)``, as its Glow example."""
    import normflows as nf

    c, h, w = IMAGE
    levels = 2
    q0, flows, merges = [], [], []
    for i in range(levels):  # i = 0 is the coarsest level (latent side)
        channels = c * 2 ** (levels + 1 - i)
        flows.append([*(nf.flows.GlowBlock(channels, s.glow_hidden, split_mode="channel")
                        for _ in range(s.glow_steps)), nf.flows.Squeeze()])
        factor = 2 ** max(levels - i, 1)  # the extents' reduction of this level's latent
        latent = (c * 2 ** (levels - i + (i == 0)), h // factor, w // factor)
        if i:
            merges.append(nf.flows.Merge())
        q0.append(nf.distributions.GlowBase(latent))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
    return Model(model, partial(model.log_prob, y=None), image=True)


BUILDERS: Dict[str, Callable[[str, int, Settings], Model]] = {
    "invertible": build_invertible, "zuko": build_zuko, "nflows": build_nflows,
    "normflows": build_normflows}


def supported(lib: str, family: str, data: Dataset) -> bool:
    """Glow runs on the digits images only, and only invertible and normflows have one."""
    if family == "glow":
        return data.name == "digits" and lib in ("invertible", "normflows")
    return True


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class Run:
    """One model's training record."""

    lib: str
    family: str
    model: Model
    optimiser: torch.optim.Optimizer
    epoch_s: List[float] = field(default_factory=list)
    val_nll: List[float] = field(default_factory=list)
    best_epoch: int = -1
    best_state: Optional[Dict[str, Tensor]] = None
    diverged_at: Optional[int] = None


def nll(model: Model, x: Tensor, log_det: Tensor, batch: int = 2048) -> float:
    """Mean NLL (nats per sample) of the reported data: ``-log p(x) - log|dx/dy|``."""
    model.module.eval()
    with torch.no_grad():
        total = sum(float((-model.log_prob(xb) - ld).sum())
                    for xb, ld in zip(x.split(batch), log_det.split(batch)))
    model.module.train()
    return total / len(x)


def train_epoch(run: Run, x: Tensor, order: Tensor, batch: int, clock: Callable[[], float]
                ) -> float:
    """One pass of Adam over ``x`` in the batches of ``order``; returns the clock's seconds,
    or ``nan`` when a loss turned non-finite."""
    run.model.module.train()
    start = clock()
    for idx in order.split(batch):
        loss = -run.model.log_prob(x[idx]).mean()
        if not torch.isfinite(loss):
            return math.nan
        run.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        run.optimiser.step()
    return clock() - start


def train(data: Dataset, runs: List[Run], s: Settings, log: Callable[[str], None] = print
          ) -> None:
    """Train all ``runs`` round-robin for ``s.epochs`` epochs, keeping each one's best state."""
    clock = time.thread_time if s.clock == "cpu" else time.perf_counter
    fixed = torch.Generator().manual_seed(s.seed + 1)
    x_val, ld_val = data.inputs(data.val, fixed)
    for epoch in range(s.epochs):
        gen = torch.Generator().manual_seed(s.seed * 100_003 + epoch)
        x_train, _ = data.inputs(data.train, gen)
        order = torch.randperm(len(x_train), generator=gen)
        shift = epoch % len(runs)
        for run in runs[shift:] + runs[:shift]:
            if run.diverged_at is not None:
                continue
            seconds = train_epoch(run, x_train, order, s.batch, clock)
            val = nll(run.model, x_val, ld_val) if math.isfinite(seconds) else math.nan
            if not math.isfinite(val):
                run.diverged_at = epoch
                continue
            run.epoch_s.append(seconds)
            run.val_nll.append(val)
            if val <= min(run.val_nll):
                run.best_epoch = epoch
                run.best_state = copy.deepcopy(run.model.module.state_dict())
        if epoch % max(1, s.epochs // 10) == 0 or epoch == s.epochs - 1:
            log(f"{data.name} epoch {epoch}: " + ", ".join(
                f"{r.lib}/{r.family} {r.val_nll[-1]:.3f}" for r in runs if r.val_nll))


def evaluate(data: Dataset, runs: List[Run], s: Settings) -> List[Dict[str, Any]]:
    """Test NLL of each run's best state and its timing summary, one record per run."""
    x_test, ld_test = data.inputs(data.test, torch.Generator().manual_seed(s.seed + 2))
    records = []
    for run in runs:
        if run.best_state is not None:
            run.model.module.load_state_dict(run.best_state)
        test = nll(run.model, x_test, ld_test) if run.best_state is not None else math.nan
        records.append({
            "dataset": data.name, "family": run.family, "lib": run.lib, "test_nll": test,
            "test_nll_per_dim": test / data.dims, "best_epoch": run.best_epoch,
            "epoch_s_median": statistics.median(run.epoch_s) if run.epoch_s else math.nan,
            "epoch_s": run.epoch_s, "val_nll": run.val_nll, "diverged_at": run.diverged_at,
            "parameters": sum(p.numel() for p in run.model.module.parameters()
                              if p.requires_grad)})
    return records


def compare(records: List[Dict[str, Any]]) -> None:
    """Add, per dataset and family, each record's NLL minus the best peer's and its time over
    the fastest peer's (peers: every library but invertible)."""
    for rec in records:
        group = [r for r in records if (r["dataset"], r["family"]) == (rec["dataset"],
                                                                       rec["family"])]
        peers = [r for r in group if r["lib"] != "invertible"]
        nlls = [r["test_nll"] for r in peers if math.isfinite(r["test_nll"])]
        times = [r["epoch_s_median"] for r in peers if math.isfinite(r["epoch_s_median"])]
        rec["nll_minus_best_peer"] = rec["test_nll"] - min(nlls) if nlls else math.nan
        rec["time_over_fastest_peer"] = rec["epoch_s_median"] / min(times) if times else math.nan


def table(records: List[Dict[str, Any]]) -> str:
    """The markdown table of all records."""
    lines = ["| data | family | library | params | test NLL (nats/sample) | nats/dim | "
             "- best peer | best epoch | ms/epoch | / fastest peer |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        note = f" (diverged at {r['diverged_at']})" if r["diverged_at"] is not None else ""
        lines.append(
            f"| {r['dataset']} | {r['family']} | {r['lib']} | {r['parameters']:,} | "
            f"{r['test_nll']:.3f}{note} | {r['test_nll_per_dim']:.4f} | "
            f"{r['nll_minus_best_peer']:+.3f} | {r['best_epoch']} | "
            f"{1e3 * r['epoch_s_median']:.1f} | {r['time_over_fastest_peer']:.2f} |")
    return "\n".join(lines)


def summary(runs: Sequence[List[Dict[str, Any]]]) -> str:
    """One markdown table over several runs (seeds): per model the mean test NLL with its range,
    the mean difference to the best peer of each run with its range, and the median over runs
    of the time over the fastest peer.

    The models are those of the first run. When the runs hold different numbers of rows for
    them (e.g. extra seeds of one family), a ``runs`` column gives each row's count.
    """
    keys = [(r["dataset"], r["family"], r["lib"]) for r in runs[0]]
    rows = {key: [r for records in runs for r in records
                  if (r["dataset"], r["family"], r["lib"]) == key] for key in keys}
    counts = {len(found) for found in rows.values()}
    mean_of = f"mean of {len(runs)}" if counts == {len(runs)} else "mean"
    extra = "" if counts == {len(runs)} else " runs |"
    lines = [f"| data | family | library | test NLL, {mean_of} (min..max) | "
             f"NLL minus best peer, mean (min..max) | time / fastest peer, median |{extra}",
             "|---|---|---|---|---|---|" + ("---|" if extra else "")]
    for key, found in rows.items():
        nll = [r["test_nll"] for r in found]
        gap = [r["nll_minus_best_peer"] for r in found]
        ratio = statistics.median(r["time_over_fastest_peer"] for r in found)
        lines.append(
            f"| {' | '.join(key)} | {statistics.fmean(nll):.3f} ({min(nll):.3f}..{max(nll):.3f}) "
            f"| {statistics.fmean(gap):+.3f} ({min(gap):+.3f}..{max(gap):+.3f}) "
            f"| {ratio:.2f} |" + (f" {len(found)} |" if extra else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


QUICK = {"epochs": 2, "transforms": 1, "hidden": (16,), "bins": 4, "glow_steps": 1,
         "glow_hidden": 8, "moons": 300, "digits": 200, "batch": 64}


def parse_args(argv: Sequence[str]) -> Tuple[Settings, argparse.Namespace]:
    """Settings from the command line (``--quick`` first sets tiny sizes, others override)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke test (seconds)")
    p.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    p.add_argument("--summarise", nargs="+", metavar="JSON",
                   help="print one table over these runs' JSON files (seeds) and exit")
    p.add_argument("--datasets")
    p.add_argument("--families")
    p.add_argument("--libs")
    p.add_argument("--hidden", help="comma-separated hidden widths")
    for name in ("epochs", "batch", "seed", "transforms", "bins", "glow_steps", "glow_hidden",
                 "moons", "digits"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--bound", type=float)
    p.add_argument("--clock", choices=("cpu", "wall"))
    args = p.parse_args(list(argv))
    values: Dict[str, Any] = dict(QUICK) if args.quick else {}
    for key in ("datasets", "families", "libs", "hidden"):
        if getattr(args, key):
            parts = getattr(args, key).split(",")
            values[key] = tuple(int(v) for v in parts) if key == "hidden" else tuple(parts)
    for key in ("epochs", "batch", "seed", "transforms", "bins", "glow_steps", "glow_hidden",
                "moons", "digits", "lr", "bound", "clock"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return Settings(**values), args


def available(libs: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """The libraries that import, and why each other one was skipped."""
    found, skipped = [], {}
    for lib in libs:
        if lib not in BUILDERS:
            raise ValueError(f"unknown library {lib!r}; choose from {sorted(BUILDERS)}")
        try:
            importlib.import_module(lib)
            found.append(lib)
        except ImportError as exc:
            skipped[lib] = f"not installed ({exc})"
    return found, skipped


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train everything, print the table (and the JSON's path); 0 when invertible ran."""
    s, args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.summarise:
        print(summary([json.loads(Path(f).read_text())["records"] for f in args.summarise]))
        return 0
    torch.set_num_threads(1)
    for noise in NOISE:
        warnings.filterwarnings("ignore", message=noise)
    libs, skipped = available(s.libs)
    versions = {lib: importlib.metadata.version(lib) for lib in libs if lib != "invertible"}
    versions["invertible"] = importlib.import_module("invertible").__version__
    load_start = os.getloadavg()
    started = time.perf_counter()
    records: List[Dict[str, Any]] = []
    for name in s.datasets:
        data = make_moons(s.moons, s.seed) if name == "moons" else make_digits(s.seed, s.digits)
        runs = []
        s_data = s if s.bound is not None else replace(s, bound=spline_bound(data))
        for family in s.families:
            for lib in libs:
                if supported(lib, family, data):
                    torch.manual_seed(s.seed)
                    model = BUILDERS[lib](family, data.dims, s_data)
                    opt = torch.optim.Adam(model.module.parameters(), lr=s.lr)
                    runs.append(Run(lib, family, model, opt))
        train(data, runs, s)
        records += evaluate(data, runs, s)
    compare(records)
    print(f"\ntorch {torch.__version__}, 1 thread, {s.clock} clock, load "
          f"{load_start} -> {os.getloadavg()}, "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(table(records))
    print(f"{time.perf_counter() - started:.0f} s wall, {time.process_time():.0f} s CPU")
    for lib, why in skipped.items():
        print(f"{lib}: {why}")
    if args.out:
        payload = {"suite": "invertible-train-peers", "settings": asdict(s),
                   "versions": versions, "skipped": skipped, "torch": torch.__version__,
                   "load_average": [load_start, os.getloadavg()],
                   "seconds": time.perf_counter() - started,
                   "cpu_seconds": time.process_time(), "records": records}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"JSON written to {args.out}")
    return 0 if "invertible" in libs else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from malloc_env import ensure_malloc_env

    ensure_malloc_env(__file__, sys.argv[1:])
    sys.exit(main())
