"""The README's recipe: a new coupling written in a few lines on `CouplingBlock`, as a user would,
then checked by the generic property suite (`invertible.testing.check_module`, float64)."""

from __future__ import annotations

from typing import List, Tuple

import pytest
import torch
import torch.nn.functional as F

import invertible.modules as Fm
from invertible.testing import check_module
from subnets import conv1x1_subnet, conv_subnet, dense_subnet

__all__: List[str] = []


# --- the recipe, exactly as the README shows it ------------------------------------------------

class SoftplusCoupling(Fm.CouplingBlock):
    """Each half: y = x * (softplus(a) + 0.1) + b, with (a, b) = subnet(other half, c)."""

    subnets = {"subnet1": 2, "subnet2": 1}  # noqa: RUF012 - subnet name -> the half it sets
    params_per_channel = 2                  # a and b for every channel of that half

    def transform(self, x, params, rev):
        a, b = params[0].chunk(2, dim=1)
        scale = F.softplus(a) + 0.1
        y = (x - b) / scale if rev else x * scale + b
        return y, scale.log()               # forward log|dy/dx| per element


# --- the checks ----------------------------------------------------------------------------------

Shape = Tuple[int, ...]


@pytest.mark.parametrize(("dims", "dims_c", "subnet"), [
    ((4,), [], dense_subnet),
    ((5,), [(2,), (1,)], dense_subnet),
    ((3, 4, 4), [(2, 4, 4)], conv_subnet),
    ((4, 3, 3), [(3,)], conv1x1_subnet),  # a vector condition, broadcast over the image
], ids=["vector", "vector-two-conditions", "image-condition", "image-vector-condition"])
def test_recipe_passes_every_property_check(dims: Shape, dims_c: List[Shape], subnet: object
                                            ) -> None:
    torch.manual_seed(0)
    block = SoftplusCoupling([dims], dims_c, subnet_constructor=subnet)
    report = check_module(block)
    assert report.passed, str(report)
    assert report["conditions"].passed is (True if dims_c else None)


def test_recipe_runs_at_other_image_sizes() -> None:
    """Built at (3, 8, 8), checked at (3, 2, 5) and (3, 11, 6): only channels are fixed."""
    torch.manual_seed(0)
    block = SoftplusCoupling([(3, 8, 8)], [(2, 8, 8)], subnet_constructor=conv_subnet)
    for extents in ((2, 5), (11, 6)):
        report = check_module(block, dims_in=[(3, *extents)], dims_c=[(2, *extents)], batch=2,
                              skip=["state_dict", "pickle"])
        assert report.passed, str(report)


def test_recipe_builds_its_subnets_as_declared() -> None:
    """Declaration order is construction order; sizes follow from the halves (C=5: 2 | 3)."""
    calls: List[Tuple[int, int]] = []

    def record(c_in: int, c_out: int) -> torch.nn.Module:
        calls.append((c_in, c_out))
        return torch.nn.Linear(c_in, c_out)

    block = SoftplusCoupling([(5,)], [(2,)], subnet_constructor=record)
    assert calls == [(2 + 2, 2 * 3), (3 + 2, 2 * 2)]
    assert [k for k in block.state_dict()] == ["subnet1.weight", "subnet1.bias",
                                              "subnet2.weight", "subnet2.bias"]
