"""Tests of `invertible.distributions`: change of variables by hand, and FrEIA's own scenario."""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from invertible.distributions.normal import StandardNormalDistribution
from invertible.distributions.transformed import (
    EventShapeError,
    PullBackDistribution,
    PushForwardDistribution,
)
from invertible.framework import SequenceINN
from invertible.modules.base import InvertibleModule
from invertible.modules.inverse import Inverse
from subnets import dense_subnet

F64 = torch.float64
LOG_2PI = math.log(2.0 * math.pi)


class ScaleShift(InvertibleModule):
    """A tiny user module: forward ``x = a * z + b`` element-wise, log-det ``sum ln|a|``.

    With ``none_without_jac`` it returns ``None`` as log-det when ``jac=False`` (as FrEIA's
    InvAutoAct does), so a density computed with ``jac=False`` would be wrong: the distributions
    must always ask for the log-det.
    """

    def __init__(self, dims_in: Any, dims_c: Any = None, a: Sequence[float] = (2.0, -0.5),
                 b: Sequence[float] = (1.0, 3.0), none_without_jac: bool = False) -> None:
        super().__init__(dims_in, dims_c)
        self.a = nn.Parameter(torch.tensor(list(a), dtype=F64))
        self.register_buffer("b", torch.tensor(list(b), dtype=F64))
        self.none_without_jac = none_without_jac
        self.calls: List[Tuple[bool, bool]] = []

    def forward(self, x: Sequence[Tensor], rev: bool = False,
                jac: bool = True) -> Tuple[Tuple[Tensor], Optional[Tensor]]:
        self.calls.append((rev, jac))
        log_det = torch.log(self.a.abs()).sum().expand(x[0].shape[0])
        y = (x[0] - self.b) / self.a if rev else x[0] * self.a + self.b
        if self.none_without_jac and not jac:
            return (y,), None
        return (y,), -log_det if rev else log_det

    def output_dims(self, input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        return input_dims


class CondShift(InvertibleModule):
    """A conditioned user module: ``x = z + c`` (log-det 0)."""

    def forward(self, x: Sequence[Tensor], c: Sequence[Tensor], rev: bool = False,
                jac: bool = True) -> Tuple[Tuple[Tensor], Tensor]:
        y = x[0] - c[0] if rev else x[0] + c[0]
        return (y,), x[0].new_zeros(x[0].shape[0])

    def output_dims(self, input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        return input_dims


class SampleOnlyNormal(Distribution):
    """A base distribution without ``rsample`` (torch's default raises NotImplementedError)."""

    arg_constraints: dict = {}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__(torch.Size(), torch.Size([2]), validate_args=False)

    def sample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        return torch.zeros(*sample_shape, 2, dtype=F64)

    def log_prob(self, value: Tensor) -> Tensor:
        return -0.5 * (value**2).sum(-1) - LOG_2PI


def gaussian_log_density(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Closed form of a diagonal Gaussian's log-density, summed over the last dim."""
    return (-0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI).sum(-1)


def base(dim: int = 2) -> StandardNormalDistribution:
    return StandardNormalDistribution(dim, dtype=F64)


# --- StandardNormalDistribution ----------------------------------------------------------------


def test_standard_normal_shapes_and_density() -> None:
    dist = StandardNormalDistribution(3, 2)
    assert isinstance(dist, Independent) and isinstance(dist.base_dist, Normal)
    assert dist.event_shape == torch.Size([3, 2]) and dist.batch_shape == torch.Size()
    assert dist.sample((5,)).shape == (5, 3, 2)
    assert torch.allclose(dist.log_prob(torch.zeros(4, 3, 2)), torch.full((4,), -3 * LOG_2PI))
    two = StandardNormalDistribution(2)
    assert torch.allclose(two.log_prob(torch.zeros(3, 2)), torch.full((3,), -LOG_2PI))
    x = torch.randn(7, 2)
    assert torch.allclose(two.log_prob(x), Normal(0.0, 1.0).log_prob(x).sum(-1))


def test_standard_normal_dtype_device_and_shape_forms() -> None:
    dist = StandardNormalDistribution(4, device="cpu", dtype=F64, validate_args=False)
    assert dist.base_dist.loc.dtype == F64 and dist.sample((2,)).dtype == F64
    assert dist.base_dist.loc.device.type == "cpu"
    assert not dist.base_dist._validate_args
    assert StandardNormalDistribution((3, 2)).event_shape == torch.Size([3, 2])
    assert StandardNormalDistribution(torch.Size([5])).event_shape == torch.Size([5])
    with pytest.raises(TypeError, match="StandardNormalDistribution"):
        StandardNormalDistribution((3, 2), 4)


# --- PushForward / PullBack: change of variables by hand ----------------------------------------


def test_push_forward_density_is_the_closed_form() -> None:
    """x = a z + b, z ~ N(0, I)  =>  x ~ N(b, diag(a²))."""
    flow = ScaleShift([(2,)])
    dist = PushForwardDistribution(base(), flow)
    x = torch.randn(9, 2, dtype=F64) * 3
    expected = gaussian_log_density(x, flow.b, flow.a.detach().abs())
    assert torch.allclose(dist.log_prob(x), expected, atol=1e-12)
    assert dist.event_shape == [(2,)] and dist.batch_shape == torch.Size()
    assert dist.arg_constraints == {}


def test_pull_back_density_is_the_closed_form() -> None:
    """f(x) = a x + b maps data to N(0, I)  =>  x ~ N(-b / a, diag(1 / a²))."""
    flow = ScaleShift([(2,)])
    dist = PullBackDistribution(base(), flow)
    assert isinstance(dist, PushForwardDistribution)
    assert isinstance(dist.transform, Inverse) and dist.transform.module is flow
    a = flow.a.detach()
    x = torch.randn(9, 2, dtype=F64)
    expected = gaussian_log_density(x, -flow.b / a, 1.0 / a.abs())
    assert torch.allclose(dist.log_prob(x), expected, atol=1e-12)
    samples = dist.sample((4000,))
    assert torch.allclose(samples.mean(0), -flow.b / a, atol=0.1)
    assert torch.allclose(samples.std(0), 1.0 / a.abs(), rtol=0.1)


def test_log_prob_calls_reverse_with_jac_true_d24() -> None:
    """FrEIA passed jac=False; a module that then returns no log-det gave a wrong density."""
    flow = ScaleShift([(2,)], none_without_jac=True)
    dist = PushForwardDistribution(base(), flow)
    x = torch.randn(5, 2, dtype=F64)
    expected = gaussian_log_density(x, flow.b, flow.a.detach().abs())
    assert torch.allclose(dist.log_prob(x), expected, atol=1e-12)
    assert flow.calls[-1] == (True, True)
    inn = SequenceINN(2)
    inn.append(ScaleShift, none_without_jac=True)
    in_container = PushForwardDistribution(base(), inn).log_prob(x)
    assert torch.allclose(in_container, expected, atol=1e-12)


def test_sample_shape_and_no_grad() -> None:
    flow = ScaleShift([(2,)])
    for dist in (PushForwardDistribution(base(), flow), PullBackDistribution(base(), flow)):
        with torch.enable_grad():
            samples = dist.sample((16,))
        assert samples.shape == (16, 2) and not samples.requires_grad
    assert flow.calls[0] == (False, False)  # sampling skips the log-det (jac=False)


def test_rsample_is_differentiable_and_falls_back_to_sample() -> None:
    flow = ScaleShift([(2,)])
    samples = PushForwardDistribution(base(), flow).rsample((8,))
    assert samples.shape == (8, 2) and samples.requires_grad
    samples.sum().backward()
    assert flow.a.grad is not None
    fallback = PushForwardDistribution(SampleOnlyNormal(), flow).rsample((3,))
    assert torch.allclose(fallback, flow.b.expand(3, 2)) and fallback.requires_grad


def test_tuple_convention() -> None:
    """Tuples unless the transform has a false force_tuple_output (containers' default)."""
    x = torch.randn(6, 2, dtype=F64)
    flow = ScaleShift([(2,)])
    reference = PushForwardDistribution(base(), flow).log_prob(x)
    for force in (False, True):
        inn = SequenceINN(2, force_tuple_output=force)
        inn.append(ScaleShift)
        for dist in (PushForwardDistribution(base(), inn), PullBackDistribution(base(), inn)):
            assert isinstance(dist.sample((3,)), Tensor) and dist.sample((3,)).shape == (3, 2)
        assert torch.allclose(PushForwardDistribution(base(), inn).log_prob(x), reference)


def test_conditions_are_passed_only_when_given() -> None:
    x = torch.randn(4, 2, dtype=F64)
    c = torch.randn(4, 2, dtype=F64)
    dist = PushForwardDistribution(base(), CondShift([(2,)], [(2,)]))
    assert torch.allclose(dist.log_prob(x, conditions=[c]), base().log_prob(x - c))
    assert dist.sample((4,), conditions=[c]).shape == (4, 2)
    plain = PushForwardDistribution(base(), ScaleShift([(2,)]))  # forward() has no c at all
    assert plain.log_prob(x).shape == (4,)


def test_wrong_trailing_shape_raises_runtime_error() -> None:
    dist = PullBackDistribution(base(), ScaleShift([(2,)]))
    with pytest.raises(RuntimeError, match=r"\(16, 3\)"):
        dist.log_prob(torch.randn(16, 3, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        dist.log_prob(torch.randn(16, 2, 1, dtype=F64))
    assert issubclass(EventShapeError, RuntimeError) and issubclass(EventShapeError, ValueError)


def test_force_to_moves_base_and_transform() -> None:
    flow = ScaleShift([(2,)])
    dist = PushForwardDistribution(StandardNormalDistribution(2), flow.float())
    assert dist.force_to(F64) is dist
    assert dist.base_distribution.base_dist.loc.dtype == F64
    assert dist.transform.a.dtype == F64
    assert dist.log_prob(torch.randn(3, 2, dtype=F64)).dtype == F64


# --- FrEIA's own distribution scenario: a SequenceINN of one AllInOneBlock on 2-d data -------


@pytest.mark.parametrize("kind", [PullBackDistribution, PushForwardDistribution])
def test_freia_scenario_sequence_inn_with_all_in_one_block(kind: type) -> None:
    all_in_one = pytest.importorskip("invertible.modules.all_in_one_block")
    torch.manual_seed(0)
    inn = SequenceINN(2)
    inn.append(all_in_one.AllInOneBlock, subnet_constructor=dense_subnet)
    dist = kind(StandardNormalDistribution(2), inn)
    log_prob = dist.log_prob(torch.randn(16, 2))
    assert log_prob.shape == (16,) and torch.isfinite(log_prob).all()
    with pytest.raises(RuntimeError):
        dist.log_prob(torch.randn(16, 3))
    samples = dist.sample((16,))
    assert samples.shape == (16, 2) and not samples.requires_grad
