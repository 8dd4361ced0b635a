"""Mixed precision: under ``torch.autocast`` the containers accumulate the log-det in float32.

Outside autocast the accumulator keeps the input's dtype (a float64 flow stays float64). The
end-to-end check compares the negative log-likelihood of a bf16-autocast forward with the
float32 one; its tolerances come from measurement (10 seeds of the flow below: mean NLL
relative error <= 1.4e-3, per-sample relative error <= 1.4e-2), with a margin of about 3.5x.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

import invertible.modules as Fm
from invertible.framework.graph_inn import GraphINN, InputNode, Node, OutputNode
from invertible.framework.sequence_inn import SequenceINN
from subnets import conv_subnet, dense_subnet

BF16 = torch.bfloat16
THIRD_BF16 = float(torch.tensor(1 / 3, dtype=BF16))  # 0.333984375


class ThirdLogDet(Fm.InvertibleModule):
    """Identity with a bf16 log-det of 1/3 per sample (a block computing in low precision)."""

    def forward(self, x: Sequence[Tensor], rev: bool = False, jac: bool = True) -> Any:
        log_det = torch.full((x[0].shape[0],), -1 / 3 if rev else 1 / 3, dtype=BF16)
        return (x[0],), log_det

    def output_dims(self, input_dims: Any) -> Any:
        return input_dims


def third_chain(n: int = 64) -> SequenceINN:
    inn = SequenceINN(2)
    for _ in range(n):
        inn.append(ThirdLogDet)
    return inn


def third_graph(n: int = 64) -> GraphINN:
    nodes = [InputNode(2, name="x")]
    for k in range(n):
        nodes.append(Node(nodes[-1], ThirdLogDet, name=f"third{k}"))
    return GraphINN([*nodes, OutputNode(nodes[-1])])


@pytest.mark.parametrize("build", [third_chain, third_graph])
def test_log_det_is_summed_in_float32_under_autocast(build: Any) -> None:
    """64 x bf16(1/3) = 21.375 exactly in float32; a bf16 sum would be off by up to 0.125."""
    net = build()
    for dtype in (torch.float32, BF16):
        with torch.autocast("cpu", dtype=BF16):
            _, log_det = net(torch.randn(3, 2, dtype=dtype))
        assert log_det.dtype == torch.float32
        assert torch.equal(log_det, torch.full((3,), 64 * THIRD_BF16))


@pytest.mark.parametrize("build", [third_chain, third_graph])
def test_accumulator_keeps_input_dtype_outside_autocast(build: Any) -> None:
    net = build(2)
    for dtype in (torch.float64, torch.float32, BF16):
        assert net(torch.randn(3, 2, dtype=dtype))[1].dtype == dtype
    with torch.autocast("cpu", dtype=BF16):
        assert net(torch.randn(3, 2, dtype=torch.float64))[1].dtype == torch.float64


def nll(z: Tensor, log_det: Tensor) -> Tensor:
    """Per-sample negative log-likelihood under a standard normal (without the constant)."""
    return 0.5 * z.float().pow(2).flatten(1).sum(1) - log_det


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_nll_close_to_float32(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    inn = SequenceINN(16)
    for k in range(4):
        inn.append(Fm.AllInOneBlock, cond=0, cond_shape=(4,), subnet_constructor=dense_subnet)
        inn.append(Fm.GLOWCouplingBlock, subnet_constructor=dense_subnet)
        inn.append(Fm.PermuteRandom, seed=k)
    x, c = torch.randn(256, 16), torch.randn(256, 4)
    with torch.no_grad():
        reference = nll(*inn(x, c=[c]))
        with torch.autocast("cpu", dtype=BF16):
            z, log_det = inn(x, c=[c])
        got = nll(z, log_det)
    assert log_det.dtype == torch.float32
    assert float((got.mean() - reference.mean()).abs() / reference.mean().abs()) <= 5e-3
    assert float(((got - reference).abs() / reference.abs()).max()) <= 5e-2


def test_bf16_nll_of_an_image_graph() -> None:
    """A conv flow as a GraphINN fed bf16 input (the accumulator is still float32); measured
    per-sample relative error <= 3.2e-3 (5e-5 for a float32 input), bound 1e-2."""
    torch.manual_seed(0)
    nodes = [InputNode(4, 8, 8, name="x")]
    for _ in range(4):
        nodes.append(Node(nodes[-1], Fm.AllInOneBlock, {"subnet_constructor": conv_subnet}))
    net = GraphINN([*nodes, OutputNode(nodes[-1])])
    x = torch.randn(32, 4, 8, 8)
    with torch.no_grad():
        reference = nll(*net(x))
        with torch.autocast("cpu", dtype=BF16):
            z, log_det = net(x.to(BF16))
    assert log_det.dtype == torch.float32
    assert float(((nll(z, log_det) - reference).abs() / reference.abs()).max()) <= 1e-2
