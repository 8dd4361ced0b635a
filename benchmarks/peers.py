"""Peers table: invertible against zuko, nflows and normflows on the same dense flows.

    python benchmarks/peers.py [--archs affine,glow] [--libs invertible,zuko,nflows,normflows]
                               [--repeats 21] [--target 0.1] [--clock cpu|wall] [--json PATH]
                               [--dim 64] [--hidden 256] [--blocks 8] [--batch 1024]
                               [--unclamped]

Two architectures, built in every library from its own closest classes (d = ``--dim``, halves
of d/2, every subnet ``Linear(d/2, hidden) - ReLU - Linear(hidden, d)`` giving the scale and
shift of the other half, torch's default initialisation with each subnet's last layer scaled
by 0.1 (see ``shrink_last_layers``), float32, eager, one torch thread):

* ``affine``: ``--blocks`` x (one affine coupling: the second half is scaled and shifted as a
  function of the first; then a fixed random permutation of all d features).
* ``glow``: ``--blocks`` x (a GLOW pair: the second half given the first, then the first half
  given the new second half, each with its own subnet; then a fixed random permutation).

The classes, and why they are the closest equivalent:

* invertible: ``SequenceINN`` of ``AffineCouplingOneSided(clamp=2)`` (affine) or
  ``GLOWCouplingBlock(clamp=2)`` (glow), each followed by ``PermuteRandom``. Scale
  ``exp(0.636 * 2 * atan(a / 2))`` (soft clamp at +-2, FrEIA's default).
* zuko 1.6: ``zuko.flows.Flow`` of ``GeneralCouplingTransform`` (the coupling that zuko's own
  ``NICE``/``RealNVP`` flows stack, with its default ``MonotonicAffineTransform`` and a
  ``zuko.nn.MLP`` with one hidden layer) and ``UnconditionalTransform(PermutationTransform)``;
  base ``DiagNormal(0, 1)`` as in ``NICE``. ``NICE`` itself is not used because it alternates
  checkered masks and has no permutations. Scale ``exp(a / (1 + |a / ln 1e-3|))``. A GLOW pair
  is two couplings with complementary masks. The distribution is rebuilt by ``flow()`` on every
  call, as zuko is used.
* nflows 0.14: ``Flow(CompositeTransform([AffineCouplingTransform, Permutation] ...),
  StandardNormal)``. ``RandomPermutation`` is ``Permutation`` with a drawn order; the order is
  passed in. Scale ``sigmoid(a + 2) + 1e-3``, the only one nflows' affine coupling has. Its
  couplings call the subnet with a context argument, so the subnet is a ``Sequential`` that
  accepts and ignores it. Sampling from given latents calls ``flow._transform.inverse``, which
  is what ``Flow.sample`` does after drawing its own noise; it always computes the log-det too.
* normflows 1.7: ``NormalizingFlow`` of ``AffineCouplingBlock(scale_map="exp")`` (split into
  halves, one ``param_map`` for shift and scale, merge) and ``Permute(mode="shuffle")``; base
  ``DiagGaussian(d, trainable=False)``. ``MaskedAffineFlow`` is not used: it runs two full-width
  nets (d -> d) on the masked input, a different subnet. normflows' ``exp`` map has no clamp
  (one elementwise op fewer than the others). Its flows run from latent to data, so the list is
  built in reverse and scoring runs the blocks' ``inverse``.

Operations: **train** = zero_grad, ``-log_prob(x).mean()`` (standard-normal base), backward,
``Adam(lr=1e-5).step()``; **score** = ``log_prob(x)`` under ``no_grad``; **inverse** = data
from fixed standard-normal latents under ``no_grad`` (no log-det where the library can skip it).
Every model is checked before timing: a round trip x -> z -> x, and the log-det implied by its
``log_prob`` against ``slogdet`` of the autograd Jacobian of x -> z on a few points.

``--unclamped`` adds a row ``invertible-unclamped``: invertible's flow with the log-scale taken
as the raw subnet output (``clamp=1.0, clamp_activation=`` the identity, so one multiplication
by 1.0 remains) instead of FrEIA's soft clamp, i.e. normflows' ``exp`` map. It is not a peer;
its ratio to the fastest peer shows what the clamp costs.

A **floor** column times the subnets alone, called as the flows call them (see ``floor_ops``):
no flow can be faster, so ``inv/floor`` is invertible's whole overhead, and a target below the
fastest peer is reachable only where that peer's overhead over the floor is large enough.

``--profile`` prints, per library, where a training step's self CPU time goes: inside the
subnets or outside them (coupling arithmetic, copies, permutations, loss, autograd bookkeeping,
optimizer), and the top ops (see profiles.py).

Timing: all libraries in one process, alternated within every repeat (order reversed on every
other repeat), each sample a burst of about ``--target`` seconds; the clock is the thread's CPU
time by default (one torch thread: all work runs on the calling thread; time spent waiting while
other processes run is not counted). Reported: median ms per call and IQR, and
invertible / fastest peer as the median and IQR of the per-repeat ratios. glibc's
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` are set to 4 GiB (see malloc_env.py).
"""

from __future__ import annotations

import abc
import argparse
import importlib
import importlib.metadata
import json
import math
import os
import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["LIBRARIES", "Model", "build", "main", "summarise", "verify"]

HERE = Path(__file__).resolve().parent
PEERS = ("zuko", "nflows", "normflows")
OPS = ("train", "score", "inverse")
FLOOR = "floor"
LR = 1e-5
LAST_LAYER_SCALE = 0.1
SUBNET_TAG = "_is_bench_subnet"  # the same name as profiles.SUBNET_TAG
Samples = Dict[Tuple[str, str], List[float]]


def dense(c_in: int, c_out: int, hidden: int) -> nn.Module:
    """``Linear(c_in, hidden) - ReLU - Linear(hidden, c_out)``."""
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out))


class ContextFreeDense(nn.Sequential):
    """:func:`dense` for nflows' couplings, which call ``net(x, context)``: context ignored."""

    def __init__(self, c_in: int, c_out: int, hidden: int) -> None:
        super().__init__(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out))

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """The layers applied to ``x``."""
        return super().forward(x)


def log_normal(z: Tensor) -> Tensor:
    """Standard-normal log density of each row of ``z``."""
    return -0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class Model(abc.ABC):
    """One library's flow: the module holding its parameters, and the calls that are timed."""

    def __init__(self, module: nn.Module) -> None:
        self.module: Any = module  # the peers' modules are untyped

    @abc.abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of each row of ``x``."""

    @abc.abstractmethod
    def latent(self, x: Tensor) -> Tensor:
        """The latent ``z`` of each row of ``x`` (the map the log-det belongs to)."""

    @abc.abstractmethod
    def sample(self, z: Tensor) -> Tensor:
        """Data from latents ``z`` (the inverse map)."""


class InvertibleModel(Model):
    """invertible's ``SequenceINN``: ``(z, log_det) = flow(x)``, ``flow(z, rev=True)``."""

    def log_prob(self, x: Tensor) -> Tensor:
        z, log_det = self.module(x)
        return log_normal(z) + log_det

    def latent(self, x: Tensor) -> Tensor:
        return self.module(x)[0]

    def sample(self, z: Tensor) -> Tensor:
        return self.module(z, rev=True, jac=False)[0]


class ZukoModel(Model):
    """zuko's lazy ``Flow``: ``flow()`` gives a distribution whose transform maps x -> z."""

    def log_prob(self, x: Tensor) -> Tensor:
        return self.module().log_prob(x)

    def latent(self, x: Tensor) -> Tensor:
        return self.module().transform(x)

    def sample(self, z: Tensor) -> Tensor:
        return self.module().transform.inv(z)


class NflowsModel(Model):
    """nflows' ``Flow``: its transform maps x -> z."""

    def log_prob(self, x: Tensor) -> Tensor:
        return self.module.log_prob(x)

    def latent(self, x: Tensor) -> Tensor:
        return self.module.transform_to_noise(x)

    def sample(self, z: Tensor) -> Tensor:
        return self.module._transform.inverse(z)[0]


class NormflowsModel(Model):
    """normflows' ``NormalizingFlow``: ``forward`` maps z -> x, ``inverse`` x -> z."""

    def log_prob(self, x: Tensor) -> Tensor:
        return self.module.log_prob(x)

    def latent(self, x: Tensor) -> Tensor:
        return self.module.inverse(x)

    def sample(self, z: Tensor) -> Tensor:
        return self.module.forward(z)


def raw_log_scale(a: Tensor) -> Tensor:
    """The identity: an unclamped log-scale (``--unclamped``)."""
    return a


def build_invertible(arch: str, dim: int, hidden: int, blocks: int, perms: List[Tensor],
                     clamped: bool = True) -> Model:
    """SequenceINN of AffineCouplingOneSided or GLOWCouplingBlock, each + PermuteRandom.

    ``clamped=False`` (the ``invertible-unclamped`` row of ``--unclamped``) passes
    ``clamp=1.0, clamp_activation=identity``: the log-scale is the raw subnet output (times
    1.0), as in normflows' ``exp`` map, instead of FrEIA's soft clamp at +-2.
    """
    Ff = importlib.import_module("invertible.framework")
    Fm = importlib.import_module("invertible.modules")
    block = Fm.AffineCouplingOneSided if arch == "affine" else Fm.GLOWCouplingBlock
    scale: Dict[str, Any] = ({"clamp": 2.0} if clamped else
                             {"clamp": 1.0, "clamp_activation": raw_log_scale})
    inn = Ff.SequenceINN(dim)
    for k in range(blocks):
        inn.append(block, subnet_constructor=partial(dense, hidden=hidden), **scale)
        inn.append(Fm.PermuteRandom, seed=k)  # its own draw: gathers cost the same for any order
    return InvertibleModel(inn)


def _halves(dim: int) -> Tuple[Tensor, Tensor]:
    """Boolean masks of the first and of the second half of ``dim`` features."""
    first = torch.arange(dim) < dim // 2
    return first, ~first


def build_zuko(arch: str, dim: int, hidden: int, blocks: int, perms: List[Tensor]) -> Model:
    """zuko Flow of GeneralCouplingTransform (+ a second one for glow) and permutations."""
    from zuko.distributions import DiagNormal
    from zuko.flows import (
        Flow,
        GeneralCouplingTransform,
        UnconditionalDistribution,
        UnconditionalTransform,
    )
    from zuko.transforms import PermutationTransform

    first, second = _halves(dim)
    masks = [first] if arch == "affine" else [first, second]  # True: the half that conditions
    transforms: List[Any] = []
    for k in range(blocks):
        transforms += [GeneralCouplingTransform(dim, mask=m, hidden_features=[hidden])
                       for m in masks]
        transforms.append(UnconditionalTransform(PermutationTransform, perms[k], buffer=True))
    base = UnconditionalDistribution(DiagNormal, torch.zeros(dim), torch.ones(dim), buffer=True)
    return ZukoModel(Flow(transforms, base))


def build_nflows(arch: str, dim: int, hidden: int, blocks: int, perms: List[Tensor]) -> Model:
    """nflows Flow of AffineCouplingTransform (+ a second one for glow) and Permutation."""
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import AffineCouplingTransform, CompositeTransform, Permutation

    first, second = _halves(dim)
    masks = [second] if arch == "affine" else [second, first]  # True: the half transformed
    net = partial(ContextFreeDense, hidden=hidden)
    transforms: List[Any] = []
    for k in range(blocks):
        transforms += [AffineCouplingTransform(m.int(), net) for m in masks]
        transforms.append(Permutation(perms[k]))
    return NflowsModel(Flow(CompositeTransform(transforms), StandardNormal([dim])))


def build_normflows(arch: str, dim: int, hidden: int, blocks: int, perms: List[Tensor]) -> Model:
    """normflows NormalizingFlow of AffineCouplingBlock (+ a second for glow) and Permute."""
    import normflows as nf

    half = dim // 2
    modes = ["channel"] if arch == "affine" else ["channel", "channel_inv"]
    data_to_latent: List[Any] = []
    for k in range(blocks):
        data_to_latent += [nf.flows.AffineCouplingBlock(dense(half, dim, hidden), scale_map="exp",
                                                        split_mode=mode) for mode in modes]
        perm = nf.flows.Permute(dim, mode="shuffle")
        perm.perm.copy_(perms[k])
        perm.inv_perm.copy_(torch.argsort(perms[k]))
        data_to_latent.append(perm)
    # normflows runs its list from latent to data, so the data side comes last
    q0 = nf.distributions.DiagGaussian(dim, trainable=False)
    return NormflowsModel(nf.NormalizingFlow(q0=q0, flows=data_to_latent[::-1]))


#: The extra row of ``--unclamped``: invertible without FrEIA's soft clamp (not a peer).
UNCLAMPED = "invertible-unclamped"
LIBRARIES: Dict[str, Callable[..., Model]] = {
    "invertible": build_invertible,
    UNCLAMPED: partial(build_invertible, clamped=False),
    "zuko": build_zuko,
    "nflows": build_nflows,
    "normflows": build_normflows,
}


def build(lib: str, arch: str, dim: int, hidden: int, blocks: int) -> Model:
    """``lib``'s model of ``arch`` after ``torch.manual_seed(0)``; permutations drawn seeded;
    the last layer of every subnet scaled by :data:`LAST_LAYER_SCALE`."""
    gen = torch.Generator().manual_seed(1)
    perms = [torch.randperm(dim, generator=gen) for _ in range(blocks)]
    torch.manual_seed(0)
    model = LIBRARIES[lib](arch, dim, hidden, blocks, perms)
    subnets = blocks * (1 if arch == "affine" else 2)
    found = shrink_last_layers(model.module, LAST_LAYER_SCALE)
    if found != subnets:
        raise ValueError(f"{lib} {arch}: expected {subnets} subnets, found {found}")
    return model


def shrink_last_layers(module: nn.Module, factor: float) -> int:
    """Scale weight and bias of the last layer of every ``Sequential`` subnet (and tag it for
    the profiler); returns how many.

    With torch's default initialisation 16 stacked affine couplings are far from the identity:
    normflows' unclamped GLOW flow overflows to NaN, and the clamped ones reach 1e4 (invertible)
    to 1e15 (zuko) on standard-normal data, so a timing would measure arithmetic on infinities.
    Scaled by 0.1 in every library alike, each coupling starts near (not at) the identity, as
    a flow does early in training, and the correctness checks still see a non-trivial map.
    """
    count = 0
    with torch.no_grad():
        for sub in module.modules():
            last: Any = sub[-1] if isinstance(sub, nn.Sequential) and len(sub) else None
            if isinstance(getattr(last, "weight", None), nn.Parameter):
                last.weight.mul_(factor)
                last.bias.mul_(factor)
                setattr(sub, SUBNET_TAG, True)  # lets --profile label subnet calls
                count += 1
    return count


def verify(model: Model, dim: int, points: int = 3) -> Dict[str, float]:
    """Round-trip error and log-det error (vs. autograd ``slogdet``); raises if either is big.

    The log-det is what ``log_prob`` implies: ``log_prob(x) - log N(z)``. Comparing it with the
    Jacobian of x -> z catches a wrong sign convention as well as a wrong value.
    """
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, dim, generator=gen)
    with torch.no_grad():
        z = model.latent(x)
        back = model.sample(z)
        implied = model.log_prob(x) - log_normal(z)
    round_trip = float((back - x).abs().max())
    errors = []
    for i in range(points):
        jac = torch.autograd.functional.jacobian(partial(_one_latent, model), x[i])
        expected = torch.linalg.slogdet(jac.double())[1]
        errors.append(abs(float(implied[i]) - float(expected)) / (1 + abs(float(expected))))
    result = {"round_trip_max_abs": round_trip, "log_det_rel_error": max(errors)}
    if not (round_trip < 1e-3 and max(errors) < 1e-3):
        raise ValueError(f"not a correct flow: {result}")
    return result


def _one_latent(model: Model, row: Tensor) -> Tensor:
    """``latent`` of a single row (for the Jacobian)."""
    return model.latent(row[None])[0]


def ops(model: Model, x: Tensor, z: Tensor) -> Dict[str, Callable[[], object]]:
    """The timed operations of one model on data ``x`` and latents ``z``."""
    opt = torch.optim.Adam(model.module.parameters(), lr=LR)
    return {"train": partial(_train, model, opt, x), "score": partial(_score, model, x),
            "inverse": partial(_inverse, model, z)}


def _train(model: Model, opt: torch.optim.Optimizer, x: Tensor) -> Tensor:
    """One training step: NLL under the standard-normal base, backward, Adam."""
    opt.zero_grad(set_to_none=True)
    loss = -model.log_prob(x).mean()
    loss.backward()
    opt.step()
    return loss


def _score(model: Model, x: Tensor) -> Tensor:
    """Log-probabilities without autograd."""
    with torch.no_grad():
        return model.log_prob(x)


def _inverse(model: Model, z: Tensor) -> Tensor:
    """Samples from fixed latents without autograd."""
    with torch.no_grad():
        return model.sample(z)


def quartiles(values: Sequence[float]) -> Tuple[float, float]:
    """Median and interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return statistics.median(values), 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q[2] - q[0]


def summarise(samples: Samples, libs: Sequence[str]) -> Dict[str, Any]:
    """Per op: every library's (and the floor's) median/IQR in ms, and invertible over each
    of the others, paired; the fastest peer is the one with the smallest median."""
    out: Dict[str, Any] = {}
    for op in OPS:
        times = {lib: quartiles([s * 1e3 for s in samples[(lib, op)]]) for lib in libs
                 if (lib, op) in samples}
        entry: Dict[str, Any] = {"ms": {lib: {"median": m, "iqr": q} for lib, (m, q)
                                        in times.items()}}
        others = [lib for lib in times if lib != "invertible"]
        for other in others if "invertible" in times else []:
            med, iqr = quartiles([a / b for a, b in zip(samples[("invertible", op)],
                                                        samples[(other, op)])])
            entry[f"invertible/{other}"] = {"median": med, "iqr": iqr}
        peers = [lib for lib in others if lib not in (FLOOR, UNCLAMPED)]
        if "invertible" in times and peers:
            fastest = min(peers, key=lambda p: times[p][0])
            entry["fastest_peer"] = fastest
            entry["invertible/fastest"] = entry[f"invertible/{fastest}"]
            if UNCLAMPED in times:
                med, iqr = quartiles([a / b for a, b in zip(samples[(UNCLAMPED, op)],
                                                            samples[(fastest, op)])])
                entry[f"{UNCLAMPED}/fastest"] = {"median": med, "iqr": iqr}
        out[op] = entry
    return out


def floor_ops(arch: str, dim: int, hidden: int, blocks: int, batch: int
              ) -> Dict[str, Callable[[], object]]:
    """The subnets alone, called as every library's flow calls them: the physical limit.

    One subnet per affine coupling, two per GLOW pair, each on a ``(batch, dim/2)`` input (all
    but the first of which require grad in training, as in a flow) returning ``(batch, dim)``;
    training back-propagates fixed output gradients and takes the same Adam step.
    """
    from measure import Call
    from measure import floor_ops as subnet_floor

    torch.manual_seed(0)
    count = blocks * (1 if arch == "affine" else 2)
    nets = [dense(dim // 2, dim, hidden) for _ in range(count)]
    for net in nets:
        shrink_last_layers(net, LAST_LAYER_SCALE)
    calls = [Call(k, (batch, dim // 2), k > 0, (batch, dim)) for k in range(count)]
    return subnet_floor(nets, calls, calls, torch.device("cpu"))


def format_rows(arch: str, summary: Dict[str, Any], libs: Sequence[str]) -> List[str]:
    """Table rows: median ms (IQR) per library and the floor, the fastest peer, invertible /
    fastest peer (IQR), invertible / floor."""
    rows = []
    for op, entry in summary.items():
        cells = [f"{entry['ms'][lib]['median']:8.2f} ({entry['ms'][lib]['iqr']:5.2f})"
                 if lib in entry["ms"] else f"{'-':>16}" for lib in libs]
        ratio = entry.get("invertible/fastest")
        tail = (f"{entry['fastest_peer']:>10} {ratio['median']:6.3f} ({ratio['iqr']:.3f})"
                if ratio else "")
        if f"invertible/{FLOOR}" in entry:
            tail += f" {entry[f'invertible/{FLOOR}']['median']:8.3f}"
        if f"{UNCLAMPED}/fastest" in entry:
            tail += f"  unclamped/fastest {entry[f'{UNCLAMPED}/fastest']['median']:6.3f}"
        rows.append(f"{arch:<7}{op:<8}" + " ".join(cells) + "  " + tail)
    return rows


def profile_train(arch: str, impls: Dict[str, Dict[str, Callable[[], object]]]
                  ) -> Dict[str, Any]:
    """Print the head of a torch.profiler summary (time inside and outside the subnets, top ops)
    of 5 training steps per library; return the summaries."""
    from profiles import profile_step, summarise

    out = {}
    for lib, table in impls.items():
        text, out[lib] = summarise(profile_step(table["train"]), f"{arch} train, {lib}", 5, 18)
        print("\n" + text.split("\n\ntorch.profiler table")[0])
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default="affine,glow")
    p.add_argument("--libs", default=",".join(lib for lib in LIBRARIES if lib != UNCLAMPED))
    p.add_argument("--unclamped", action="store_true",
                   help=f"also time {UNCLAMPED}: the log-scale without FrEIA's soft clamp")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--target", type=float, default=0.1, help="seconds per sample")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--json", default=str(HERE / "results" / "peers.json"))
    p.add_argument("--profile", action="store_true",
                   help="print a torch.profiler summary of each library's training step")
    return p.parse_args(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build, verify, time and report; exit status 0 when invertible was timed."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(HERE))
    from profile_core import time_all
    from report import machine_info

    torch.set_num_threads(1)
    machine = machine_info(1, torch.device("cpu"))
    libs, skipped = [], {}
    for lib in args.libs.split(",") + ([UNCLAMPED] if args.unclamped else []):
        package = "invertible" if lib == UNCLAMPED else lib  # the row's installed package
        try:
            importlib.import_module(package)
            libs.append(lib)
            machine[lib] = importlib.metadata.version(package)
        except ImportError as exc:  # an optional peer that is not installed
            skipped[lib] = f"not installed ({exc})"
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(args.batch, args.dim, generator=gen)
    z = torch.randn(args.batch, args.dim, generator=gen)
    results: Dict[str, Any] = {}
    print(f"torch {torch.__version__}, 1 thread, {args.clock} clock, load "
          f"{machine['load_average_start']} | "
          + ", ".join(f"{lib} {machine[lib]}" for lib in PEERS if lib in libs))
    header = "arch   op      " + " ".join(f"{lib + ' ms (IQR)':>16}" for lib in [*libs, FLOOR])
    lines = [header + "  fastest peer, inv/fastest (IQR), inv/floor", "-" * (len(header) + 44)]
    for arch in args.archs.split(","):
        impls, checks = {}, {}
        for lib in libs:
            model = build(lib, arch, args.dim, args.hidden, args.blocks)
            checks[lib] = verify(model, args.dim)
            impls[lib] = ops(model, x, z)
        impls[FLOOR] = floor_ops(arch, args.dim, args.hidden, args.blocks, args.batch)
        samples = time_all(impls, OPS, args.repeats, args.target, args.clock)
        summary = summarise(samples, [*libs, FLOOR])
        results[arch] = {"checks": checks, "summary": summary,
                         "samples_ms": {f"{lib}/{op}": [s * 1e3 for s in v]
                                        for (lib, op), v in samples.items()}}
        lines += format_rows(arch, summary, [*libs, FLOOR])
        if args.profile:
            results[arch]["profiles"] = profile_train(arch, impls)
    machine["load_average_end"] = list(os.getloadavg())
    payload = {"suite": "invertible-peers", "machine": machine, "settings": vars(args),
               "skipped": skipped, "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    print("\n".join(lines))
    for lib, why in skipped.items():
        print(f"{lib}: {why}")
    print(f"JSON written to {args.json}")
    return 0 if "invertible" in libs else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from malloc_env import ensure_malloc_env

    ensure_malloc_env(__file__, sys.argv[1:])
    sys.exit(main())
