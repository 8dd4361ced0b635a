"""Benchmark workloads, built through the FrEIA API so one builder serves FrEIA and invertible.

Every builder takes the two namespaces ``Ff`` (framework) and ``Fm`` (modules) of the package
under test and a subnet constructor, and returns one flow per :class:`FlowSpec` of its workload.
Seeding is done by the caller (:func:`build_flows`), so the same seeds give both packages the same
draws wherever the packages draw alike; weights are then copied across by the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

__all__ = [
    "WORKLOADS",
    "ConvSubnet",
    "DenseSubnet",
    "FlowSpec",
    "SubnetRecorder",
    "Workload",
    "build_flows",
    "make_data",
]

Shape = Tuple[int, ...]
N_BLOCKS = 8
SUBNET_TAG = "_is_bench_subnet"  # the same name as profiles.SUBNET_TAG


class DenseSubnet:
    """``Linear(c_in, hidden) - ReLU - Linear(hidden, c_out)``; ``hidden`` fixed or a factor."""

    def __init__(self, hidden: int = 256, factor: Optional[int] = None) -> None:
        self.hidden, self.factor = hidden, factor

    def __call__(self, c_in: int, c_out: int) -> nn.Module:
        """Build one subnet for ``c_in`` inputs and ``c_out`` outputs."""
        hidden = self.factor * c_in if self.factor is not None else self.hidden
        return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out))


class ConvSubnet:
    """``Conv(k) - ReLU - Conv(k)`` with 'same' padding; ``hidden`` channels fixed or = c_in."""

    def __init__(self, kernel: int = 3, hidden: Optional[int] = 64) -> None:
        self.kernel, self.hidden = kernel, hidden

    def __call__(self, c_in: int, c_out: int) -> nn.Module:
        """Build one subnet for ``c_in`` input and ``c_out`` output channels."""
        hidden = self.hidden if self.hidden is not None else c_in
        pad = self.kernel // 2
        return nn.Sequential(
            nn.Conv2d(c_in, hidden, self.kernel, padding=pad),
            nn.ReLU(),
            nn.Conv2d(hidden, c_out, self.kernel, padding=pad),
        )


class SubnetRecorder:
    """Wraps subnet constructors and keeps every subnet they build (for the floor)."""

    def __init__(self) -> None:
        self.built: List[nn.Module] = []

    def wrap(self, ctor: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
        """A constructor that builds with ``ctor`` and records the result."""
        return _Recording(self, ctor)


class _Recording:
    """Picklable recording constructor (see :class:`SubnetRecorder`)."""

    def __init__(self, recorder: SubnetRecorder, ctor: Callable[[int, int], nn.Module]) -> None:
        self.recorder, self.ctor = recorder, ctor

    def __call__(self, c_in: int, c_out: int) -> nn.Module:
        """Build and record."""
        net = self.ctor(c_in, c_out)
        setattr(net, SUBNET_TAG, True)  # lets the profiler label subnet calls
        self.recorder.built.append(net)
        return net


@dataclass(frozen=True)
class FlowSpec:
    """One flow of a workload: input shape (batch excluded), condition shape or None."""

    dims: Shape
    cond: Optional[Shape] = None


Builder = Callable[[ModuleType, ModuleType, SubnetRecorder], List[nn.Module]]


@dataclass(frozen=True)
class Workload:
    """A named benchmark: its flows, batch size and builder."""

    name: str
    title: str
    batch: int
    flows: Tuple[FlowSpec, ...]
    build: Builder


def aio_chain(Ff: ModuleType, Fm: ModuleType, dims: Shape, subnets: List[Callable],
              cond: Optional[Shape] = None, **kwargs: object) -> nn.Module:
    """A SequenceINN of AllInOneBlocks, block ``k`` using ``subnets[k]``."""
    inn = Ff.SequenceINN(*dims)
    for ctor in subnets:
        if cond is None:
            inn.append(Fm.AllInOneBlock, subnet_constructor=ctor, **kwargs)
        else:
            inn.append(Fm.AllInOneBlock, cond=0, cond_shape=cond, subnet_constructor=ctor,
                       **kwargs)
    return inn


def glow_chain(Ff: ModuleType, Fm: ModuleType, dims: Shape, ctor: Callable) -> nn.Module:
    """A SequenceINN of GLOWCouplingBlock + PermuteRandom pairs."""
    inn = Ff.SequenceINN(*dims)
    for k in range(N_BLOCKS):
        inn.append(Fm.GLOWCouplingBlock, subnet_constructor=ctor, clamp=2.0)
        inn.append(Fm.PermuteRandom, seed=k)
    return inn


def glow_graph(Ff: ModuleType, Fm: ModuleType, dims: Shape, cond: Shape,
               ctor: Callable) -> nn.Module:
    """The GLOW chain as a GraphINN whose ConditionNode feeds every coupling."""
    node = Ff.InputNode(*dims, name="x")
    condition = Ff.ConditionNode(*cond, name="c")
    nodes = [node, condition]
    for k in range(N_BLOCKS):
        coupling = Ff.Node(node, Fm.GLOWCouplingBlock,
                           {"subnet_constructor": ctor, "clamp": 2.0},
                           conditions=condition, name=f"glow{k}")
        node = Ff.Node(coupling, Fm.PermuteRandom, {"seed": k}, name=f"perm{k}")
        nodes += [coupling, node]
    nodes.append(Ff.OutputNode(node, name="z"))
    return Ff.GraphINN(nodes)


def build_w1(Ff: ModuleType, Fm: ModuleType, rec: SubnetRecorder) -> List[nn.Module]:
    """W1: 8 AllInOneBlocks, d=64, dense subnets with 256 hidden units."""
    return [aio_chain(Ff, Fm, (64,), [rec.wrap(DenseSubnet(256))] * N_BLOCKS)]


def build_w2(Ff: ModuleType, Fm: ModuleType, rec: SubnetRecorder) -> List[nn.Module]:
    """W2: 8 AllInOneBlocks on (64, 32, 32), 3x3 conv subnets with 64 hidden channels."""
    return [aio_chain(Ff, Fm, (64, 32, 32), [rec.wrap(ConvSubnet(3, 64))] * N_BLOCKS)]


def build_w3(Ff: ModuleType, Fm: ModuleType, rec: SubnetRecorder) -> List[nn.Module]:
    """W3: 8 x (GLOWCouplingBlock + PermuteRandom), d=64, dense subnets with 256 hidden."""
    return [glow_chain(Ff, Fm, (64,), rec.wrap(DenseSubnet(256)))]


def build_w4(Ff: ModuleType, Fm: ModuleType, rec: SubnetRecorder) -> List[nn.Module]:
    """W4: W3 as a GraphINN with a 32-d condition fed to every coupling."""
    return [glow_graph(Ff, Fm, (64,), (32,), rec.wrap(DenseSubnet(256)))]


FASTFLOW_STAGES: Tuple[Shape, ...] = ((64, 64, 64), (128, 32, 32), (256, 16, 16))
CFLOW_CHANNELS: Tuple[int, ...] = (64, 128, 256)
CFLOW_COND = 128


def build_fastflow(Ff: ModuleType, Fm: ModuleType, rec: SubnetRecorder) -> List[nn.Module]:
    """FastFlow on ResNet-18 stages: per stage 8 AllInOneBlocks, kernels 3,1,3,1,...,
    hidden channels = input channels, clamp 2, hard permutation."""
    kernels = [rec.wrap(ConvSubnet(3 if k % 2 == 0 else 1, None)) for k in range(N_BLOCKS)]
    return [aio_chain(Ff, Fm, stage, kernels, affine_clamping=2.0, permute_soft=False)
            for stage in FASTFLOW_STAGES]


def build_cflow(Ff: ModuleType, Fm: ModuleType, rec: SubnetRecorder) -> List[nn.Module]:
    """CFlow decoders for ResNet-18 layers 1-3: 8 conditional AllInOneBlocks each, subnet
    Linear(c_in, 2 c_in)-ReLU-Linear, clamp 1.9, SOFTPLUS global affine, soft permutation."""
    ctor = rec.wrap(DenseSubnet(factor=2))
    return [aio_chain(Ff, Fm, (ch,), [ctor] * N_BLOCKS, cond=(CFLOW_COND,), affine_clamping=1.9,
                      global_affine_type="SOFTPLUS", permute_soft=True)
            for ch in CFLOW_CHANNELS]


WORKLOADS: Dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("W1", "8 AllInOne, d=64, dense 256", 1024, (FlowSpec((64,)),), build_w1),
        Workload("W2", "8 AllInOne, (64,32,32), conv3x3 64", 8, (FlowSpec((64, 32, 32)),),
                 build_w2),
        Workload("W3", "8 GLOW+PermuteRandom, d=64", 1024, (FlowSpec((64,)),), build_w3),
        Workload("W4", "W3 as conditional GraphINN, c=32", 1024,
                 (FlowSpec((64,), (32,)),), build_w4),
        Workload("FF", "FastFlow ResNet-18, 3 stages", 2,
                 tuple(FlowSpec(s) for s in FASTFLOW_STAGES), build_fastflow),
        Workload("CF", "CFlow decoders d=64/128/256, c=128", 64,
                 tuple(FlowSpec((ch,), (CFLOW_COND,)) for ch in CFLOW_CHANNELS), build_cflow),
    )
}


def build_flows(workload: Workload, Ff: ModuleType, Fm: ModuleType,
                seed: int = 0) -> Tuple[nn.ModuleList, List[nn.Module]]:
    """Seed torch and numpy, build the workload's flows; returns them and their subnets."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    rec = SubnetRecorder()
    flows = nn.ModuleList(workload.build(Ff, Fm, rec))
    return flows, rec.built


def make_data(workload: Workload, batch: int, device: torch.device,
              seed: int = 1) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """Seeded standard-normal inputs and conditions, one pair per flow."""
    gen = torch.Generator().manual_seed(seed)
    data = []
    for spec in workload.flows:
        x = torch.randn(batch, *spec.dims, generator=gen).to(device)
        c = None if spec.cond is None else torch.randn(batch, *spec.cond, generator=gen)
        data.append((x, None if c is None else c.to(device)))
    return data
