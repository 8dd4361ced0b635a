"""The opt-in NaN guard (`invertible.utils.check_finite`) and a long training run without NaN."""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence, Tuple

import pytest
import torch
from torch import Tensor, nn

from invertible.framework.graph_inn import GraphINN, InputNode, Node, OutputNode
from invertible.framework.sequence_inn import SequenceINN
from invertible.modules.all_in_one_block import AllInOneBlock
from invertible.modules.base import InvertibleModule
from invertible.modules.fixed_transforms import PermuteRandom
from invertible.modules.invertible_resnet import ActNorm
from invertible.utils import NonFiniteError, check_finite
from subnets import dense_subnet


class PoisonAt(InvertibleModule):
    """Identity, except that one output value (or the log-det) becomes inf or NaN.

    ``where`` is ``"output"`` or ``"log_det"``; ``direction`` the one that is poisoned.
    """

    def __init__(
        self, dims_in, dims_c=None, index: Tuple[int, ...] = (1, 2), value: float = math.inf,
        where: str = "output", direction: str = "forward",
    ) -> None:
        super().__init__(dims_in, dims_c)
        self.index, self.value, self.where, self.direction = index, value, where, direction

    def forward(self, x: Sequence[Tensor], rev: bool = False, jac: bool = True):
        y = x[0].clone()
        log_det = y.new_zeros(y.shape[0])
        if (self.direction == "reverse") == rev:
            if self.where == "output":
                y[self.index] = self.value
            else:
                log_det[0] = self.value
        return (y,), log_det

    def output_dims(self, input_dims):
        return input_dims


def chain(poison: Optional[dict] = None, position: int = 2) -> SequenceINN:
    torch.manual_seed(0)
    inn = SequenceINN(4)
    for k in range(4):
        if k == position and poison is not None:
            inn.append(PoisonAt, **poison)
        else:
            inn.append(AllInOneBlock, subnet_constructor=dense_subnet)
    return inn


def test_names_the_first_block_with_an_inf_output() -> None:
    inn = chain({"index": (1, 2)})
    x = torch.randn(3, 4)
    with pytest.raises(NonFiniteError) as info, check_finite(inn):
        inn(x)
    text = str(info.value)
    assert "module_list.2 (PoisonAt)" in text and "forward pass" in text
    assert "output 0 has 1 NaN/inf value(s) of 12" in text and "index (1, 2)" in text


def test_later_blocks_are_not_blamed_and_guard_is_removed() -> None:
    inn = chain({"index": (0, 0)}, position=1)
    with pytest.raises(NonFiniteError, match=r"module_list\.1 \(PoisonAt\)"), check_finite(inn):
        inn(torch.randn(2, 4))
    assert all(not m._forward_hooks for m in inn.module_list) and not inn._forward_pre_hooks
    z, _ = inn(torch.randn(2, 4))  # unguarded again: the inf just propagates
    assert not torch.isfinite(z).all()


def test_reverse_direction_and_log_det() -> None:
    inn = chain({"where": "log_det", "direction": "reverse", "value": math.nan})
    z, _ = inn(torch.randn(2, 4))
    with pytest.raises(NonFiniteError) as info, check_finite(inn):
        inn(z, rev=True)
    assert "reverse pass at module_list.2 (PoisonAt)" in str(info.value)
    assert "log-det has 1 NaN/inf" in str(info.value)


def test_bad_network_input_is_reported_as_input() -> None:
    inn = chain()
    x = torch.randn(2, 4)
    x[1, 3] = math.nan
    needle = r"the input of SequenceINN: input has 1 .* \(1, 3\)"
    with pytest.raises(NonFiniteError, match=needle), check_finite(inn):
        inn(x)


def test_graph_names_the_node() -> None:
    torch.manual_seed(0)
    inp = InputNode(4, name="x")
    a = Node(inp, AllInOneBlock, {"subnet_constructor": dense_subnet}, name="coupling_a")
    bad = Node(a, PoisonAt, {"index": (0, 3)}, name="poisoned")
    b = Node(bad, PermuteRandom, {"seed": 1}, name="perm")
    graph = GraphINN([inp, a, bad, b, OutputNode(b, name="z")])
    x = torch.randn(2, 4)
    needle = r"node 'poisoned' \(PoisonAt, module_list\.1\)"
    with pytest.raises(NonFiniteError, match=needle), check_finite(graph):
        graph(x)
    guard = check_finite(graph)  # outside a with block, GraphINN's RuntimeError chains it
    with pytest.raises(RuntimeError) as info:
        graph(x)
    assert isinstance(info.value.__cause__, NonFiniteError)
    assert "node 'poisoned'" in str(info.value)
    guard.remove()


def test_nested_containers_name_the_inner_block() -> None:
    inner = chain({"index": (0, 1)}, position=1)
    inner.force_tuple_output = True
    outer = SequenceINN(4)
    outer.append(ActNorm)
    outer.append(inner)
    needle = r"module_list\.1\.module_list\.1 \(PoisonAt\)"
    with pytest.raises(NonFiniteError, match=needle), check_finite(outer):
        outer(torch.randn(5, 4))


def test_record_only_mode() -> None:
    inn = chain({"index": (0, 0)})
    guard = check_finite(inn, raise_error=False)
    z, _ = inn(torch.randn(2, 4))
    guard.remove()
    assert not torch.isfinite(z).all()
    assert guard.events[0].block == "module_list.2 (PoisonAt)"
    assert guard.events[0].what == "output 0" and guard.events[0].first_index == (0, 0)
    assert {e.block for e in guard.events[1:]} <= {"module_list.3 (AllInOneBlock)"}


def test_a_finite_network_passes_and_gradients_flow() -> None:
    inn = chain()
    x = torch.randn(8, 4, requires_grad=True)
    with check_finite(inn) as guard:
        z, log_det = inn(x)
        (0.5 * (z**2).sum() - log_det.sum()).backward()
        inn(z.detach(), rev=True)
    assert guard.events == [] and x.grad is not None


# --- a long training run: 32 blocks, 1,000 steps, default clamping, no NaN --------------------


def eight_gaussians(n: int, gen: torch.Generator) -> Tensor:
    """A 2-D toy density: eight narrow Gaussians on a circle of radius 4."""
    angles = torch.randint(0, 8, (n,), generator=gen) * (2 * math.pi / 8)
    centres = 4.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return centres + 0.2 * torch.randn(n, 2, generator=gen)


def wide_subnet(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(c_in, 32), nn.ReLU(), nn.Linear(32, c_out))


@pytest.mark.slow
def test_32_blocks_train_1000_steps_without_nan() -> None:
    """A deep flow with the default affine clamping trains on a toy density, NaN-guarded."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    inn = SequenceINN(2)
    for _ in range(32):
        inn.append(AllInOneBlock, subnet_constructor=wide_subnet, permute_soft=True)
    optimiser = torch.optim.Adam(inn.parameters(), lr=1e-3)
    losses = []
    start = time.perf_counter()
    with check_finite(inn):
        for _ in range(1000):
            z, log_det = inn(eight_gaussians(128, gen))
            loss = (0.5 * (z**2).sum(dim=1) - log_det).mean()
            optimiser.zero_grad()
            loss.backward()
            grads = [p.grad for p in inn.parameters() if p.grad is not None]
            assert all(bool(torch.isfinite(g).all()) for g in grads)
            optimiser.step()
            losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50 - 1.0, "the flow did not learn"
    assert time.perf_counter() - start < 600
