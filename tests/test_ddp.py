"""Distributed training: 2 gloo processes on CPU train flows under DDP and stay identical.

ActNorm's data-dependent initialisation all-reduces its statistics, so both ranks start from
the statistics of the union of their (different, unequally sized) first batches; DDP then keeps
every parameter and buffer equal. A GraphINN is trained the same way.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from invertible.framework.graph_inn import GraphINN, InputNode, Node, OutputNode
from invertible.framework.sequence_inn import SequenceINN
from invertible.modules.all_in_one_block import AllInOneBlock
from invertible.modules.graph_topology import Concat, Split
from invertible.modules.invertible_resnet import ActNorm

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available",
)

WORLD = 2
BATCH = {0: 24, 1: 40}  # unequal per-rank batch sizes
SHAPE = (4,)


def subnet(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(c_in, 16), nn.Tanh(), nn.Linear(16, c_out))


def build_sequence() -> SequenceINN:
    inn = SequenceINN(*SHAPE)
    inn.append(ActNorm)
    for _ in range(3):
        inn.append(AllInOneBlock, subnet_constructor=subnet, permute_soft=True)
    return inn


def build_graph() -> GraphINN:
    inp = InputNode(*SHAPE, name="x")
    norm = Node(inp, ActNorm, {}, name="norm")
    split = Node(norm, Split, {"section_sizes": [2, 2]}, name="split")
    a = Node(split.out0, ActNorm, {}, name="norm_a")
    b = Node(split.out1, AllInOneBlock, {"subnet_constructor": subnet}, name="coupling_b")
    cat = Node([a.out0, b.out0], Concat, {}, name="cat")
    top = Node(cat, AllInOneBlock, {"subnet_constructor": subnet}, name="coupling")
    return GraphINN([inp, norm, split, a, b, cat, top, OutputNode(top, name="z")])


def rank_batch(rank: int, step: int) -> Tensor:
    """Different data per rank: shifted and scaled Gaussians."""
    gen = torch.Generator().manual_seed(1000 * rank + step)
    return 1.5 + rank + (2.0 + rank) * torch.randn(BATCH[rank], *SHAPE, generator=gen)


def train(model: nn.Module, rank: int, steps: int) -> Dict[str, Tensor]:
    """A few Adam steps under DDP; returns the first ActNorm's initial state and all state."""
    ddp = nn.parallel.DistributedDataParallel(model)
    optimiser = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    first_norm = next(m for m in model.modules() if isinstance(m, ActNorm))
    result: Dict[str, Tensor] = {}
    for step in range(steps):
        z, log_det = ddp(rank_batch(rank, step))
        if step == 0:
            result["init.loc"] = first_norm.loc.detach().clone()
            result["init.log_scale"] = first_norm.log_scale.detach().clone()
        loss = (0.5 * (z**2).sum(dim=1) - log_det).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    result.update({f"state.{k}": v.detach().clone() for k, v in model.state_dict().items()})
    return result


def worker(rank: int, init_file: str, out_dir: str) -> None:
    """One rank: same seeds (DDP would broadcast rank 0's weights anyway), different data."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        results = {}
        for name, build in (("sequence", build_sequence), ("graph", build_graph)):
            torch.manual_seed(rank)  # deliberately different builds: DDP syncs them
            results[name] = train(build(), rank, steps=4)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        gc.collect()  # free the DDP wrappers before their group (see test_memory_efficient)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> List[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("model", ["sequence", "graph"])
def test_every_parameter_and_buffer_is_identical_across_ranks(rank_results, model) -> None:
    a, b = rank_results[0][model], rank_results[1][model]
    assert set(a) == set(b)
    state_keys = [k for k in a if k.startswith("state.")]
    assert any("is_initialized" in k for k in state_keys)
    for key in state_keys:
        assert torch.equal(a[key], b[key]), f"{model}: {key} differs between the ranks"


@pytest.mark.parametrize("model", ["sequence", "graph"])
def test_actnorm_starts_from_the_union_of_both_first_batches(rank_results, model) -> None:
    union = torch.cat([rank_batch(r, 0) for r in range(WORLD)]).double()
    mean, std = union.mean(dim=0), union.std(dim=0)
    for results in rank_results:
        init = results[model]
        assert torch.allclose(init["init.loc"].double().flatten(), mean, atol=1e-5)
        assert torch.allclose(init["init.log_scale"].double().flatten(), std.log(), atol=1e-5)
    local = rank_batch(0, 0).double()  # the union differs from either rank's own batch
    assert not torch.allclose(local.mean(dim=0), mean, atol=1e-2)
