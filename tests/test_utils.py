"""invertible.utils: output shapes, per-sample reductions, device moves, batched forward."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from invertible.framework import SequenceINN
from invertible.utils import (
    f_except,
    force_to,
    output_dims_compatible,
    sum_except,
    sum_except_batch,
    tuple_free_batch_forward,
    tuple_free_forward,
)
from toy_blocks import Scale2


def test_output_dims_compatible_for_modules_and_containers() -> None:
    assert output_dims_compatible(Scale2([(3, 4)])) == [(3, 4)]
    inn = SequenceINN(5)
    inn.append(Scale2)
    assert output_dims_compatible(inn) == [(5,)]  # no force_tuple_output needed (FrEIA raised)


def test_reductions() -> None:
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(sum_except_batch(x), x.sum((1, 2)))
    assert torch.equal(sum_except(x, 0, 2), x.sum(1))
    assert torch.equal(f_except(torch.mean, x, -1), x.mean((0, 1)))
    with pytest.raises(ValueError, match="no dimension left"):
        sum_except_batch(torch.ones(3))


def test_force_to_recurses_and_detects_cycles() -> None:
    Pair = namedtuple("Pair", "a b")

    class Holder:
        def __init__(self) -> None:
            self.t = torch.ones(1)

    data = {"x": [torch.ones(1), (torch.ones(1), Pair(torch.ones(1), 3))], "h": Holder()}
    out = force_to(data, torch.float64)
    assert out["x"][0].dtype == torch.float64 and out["x"][1][1].a.dtype == torch.float64
    assert isinstance(out["x"][1][1], Pair) and out["h"].t.dtype == torch.float64
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="self-referential"):
        force_to(loop, torch.float64)


def test_tuple_free_forward_and_batches() -> None:
    block = Scale2([(3,)])
    x = torch.randn(10, 3)
    y, log_det = tuple_free_forward(block, x)
    assert torch.equal(y, 2 * x)
    inn = SequenceINN(3)
    inn.append(Scale2)
    y2, log_det2 = tuple_free_batch_forward(inn, x, batch_size=4)
    assert torch.equal(y2, 2 * x) and log_det2.shape == (10,)
    y3, _ = tuple_free_batch_forward(block, x, batch_size=3)
    assert torch.equal(y3, y) and log_det is not None


def test_tuple_free_batch_forward_on_non_cpu_data() -> None:
    """FrEIA's non-CPU branch was broken; here it splits the data (meta stands in for GPU)."""
    inn = SequenceINN(3)
    inn.append(Scale2)
    data = torch.empty(10, 3, device="meta")
    out, log_det = tuple_free_batch_forward(inn, data, batch_size=4)
    assert out.shape == (10, 3) and out.device.type == "meta" and log_det.shape == (10,)
    with pytest.raises(ValueError, match="loader_kwargs can only be used with CPU data"):
        tuple_free_batch_forward(inn, data, batch_size=4, loader_kwargs={"shuffle": False})
