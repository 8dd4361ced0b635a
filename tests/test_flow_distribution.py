"""Tests of `FlowDistribution` and `invertible.metrics`: closed-form densities, bits/dim."""

from __future__ import annotations

import io
import math
from typing import Any, List, Optional, Sequence, Tuple

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, MultivariateNormal, Normal

from invertible import metrics
from invertible.distributions.flow import FlowDistribution
from invertible.distributions.normal import StandardNormalDistribution
from invertible.distributions.transformed import PullBackDistribution
from invertible.framework import ConditionNode, GraphINN, InputNode, Node, OutputNode, SequenceINN
from invertible.modules import InvertibleModule
from invertible.modules.coupling_layers import GLOWCouplingBlock
from invertible.modules.fixed_transforms import FixedLinearTransform
from invertible.modules.graph_topology import Concat, Split
from subnets import conv1x1_subnet, dense_subnet

F64 = torch.float64
M = torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.5, -0.3], [0.4, 0.0, 0.8]], dtype=F64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=F64)


def affine_flow() -> SequenceINN:
    """``z = M x + b``: under N(0, I) latents, x ~ N(-M⁻¹b, M⁻¹M⁻ᵀ)."""
    inn = SequenceINN(3)
    inn.append(FixedLinearTransform, M=M, b=B)
    return inn


def affine_density() -> MultivariateNormal:
    """The closed-form density of :func:`affine_flow`."""
    m_inv = torch.linalg.inv(M)
    return MultivariateNormal(-(m_inv @ B), covariance_matrix=m_inv @ m_inv.T)


def glow_flow(cond: bool = False) -> SequenceINN:
    """Two GLOW couplings on (4,), the second conditioned on a (3,) vector when ``cond``."""
    torch.manual_seed(0)
    inn = SequenceINN(4)
    inn.append(GLOWCouplingBlock, subnet_constructor=dense_subnet)
    kwargs = {"cond": 0, "cond_shape": (3,)} if cond else {}
    inn.append(GLOWCouplingBlock, subnet_constructor=dense_subnet, **kwargs)
    return inn.to(F64)


class CondShift(InvertibleModule):
    """Data to latent ``z = x - c``, so ``p(x | c) = N(x; c, I)``."""

    def forward(self, x: Sequence[Tensor], c: Sequence[Tensor], rev: bool = False,
                jac: bool = True) -> Tuple[Tuple[Tensor], Tensor]:
        y = x[0] + c[0] if rev else x[0] - c[0]
        return (y,), x[0].new_zeros(x[0].shape[0])

    def output_dims(self, input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        return input_dims


class NoJac(InvertibleModule):
    """An identity that never returns a log-det."""

    def forward(self, x: Sequence[Tensor], rev: bool = False,
                jac: bool = True) -> Tuple[Tuple[Tensor], Optional[Tensor]]:
        return (x[0],), None

    def output_dims(self, input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        return input_dims


def two_output_graph() -> GraphINN:
    """x (4,) -> z = M4 x -> split into (1,) and (3,)."""
    m4 = torch.eye(4, dtype=F64) * 2.0 + 0.1
    inp = InputNode(4, name="x")
    lin = Node(inp, FixedLinearTransform, {"M": m4}, name="lin")
    split = Node(lin, Split, {"section_sizes": [1, 3]}, name="split")
    nodes = [inp, lin, split, OutputNode(split.out0, name="z1"), OutputNode(split.out1, name="z2")]
    return GraphINN(nodes)


# --- closed-form densities ---------------------------------------------------------------------


def test_log_prob_of_affine_flow_is_the_closed_form_gaussian() -> None:
    x = torch.randn(6, 3, dtype=F64)
    expected = affine_density().log_prob(x)
    for inn in (affine_flow(), FixedLinearTransform([(3,)], M=M, b=B)):
        dist = FlowDistribution(inn)
        torch.testing.assert_close(dist.log_prob(x), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(dist.nll(x), -expected.mean(), rtol=0, atol=1e-12)
        torch.testing.assert_close(dist.nll(x, reduction="none"), -expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(dist(x), expected, rtol=0, atol=1e-12)


def test_samples_of_affine_flow_have_the_closed_form_moments() -> None:
    dist, target = FlowDistribution(affine_flow()), affine_density()
    gen = torch.Generator().manual_seed(1)
    for t in (1.0, 0.5):
        x = dist.sample(40_000, temperature=t, generator=gen)
        assert x.shape == (40_000, 3) and x.dtype == F64
        torch.testing.assert_close(x.mean(0), target.mean, rtol=0, atol=0.03)
        torch.testing.assert_close(x.T.cov(), t**2 * target.covariance_matrix, rtol=0, atol=0.04)


def test_temperature_zero_gives_the_mode_and_log_prob_ignores_temperature() -> None:
    dist, target = FlowDistribution(affine_flow()), affine_density()
    x = dist.sample(5, temperature=0.0)
    torch.testing.assert_close(x, target.mean.expand(5, 3), rtol=0, atol=1e-12)
    x, lp = dist.sample_and_log_prob(8, temperature=0.3)
    torch.testing.assert_close(lp, target.log_prob(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(dist.log_prob(x), target.log_prob(x), rtol=0, atol=1e-12)


def test_agrees_with_pull_back_distribution_and_sample_and_log_prob() -> None:
    inn = glow_flow()
    x = torch.randn(7, 4, dtype=F64)
    pull_back = PullBackDistribution(StandardNormalDistribution(4, dtype=F64), inn)
    torch.testing.assert_close(FlowDistribution(inn).log_prob(x), pull_back.log_prob(x))
    xs, lp = FlowDistribution(inn).sample_and_log_prob(9)
    torch.testing.assert_close(lp, FlowDistribution(inn).log_prob(xs))


# --- bits per dimension -------------------------------------------------------------------------


def test_bits_per_dim_of_standard_normal_is_its_entropy_in_bits() -> None:
    dist = FlowDistribution(SequenceINN(3, 2, 2))
    x = torch.randn(40_000, 3, 2, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    analytic = 0.5 * math.log(2 * math.pi * math.e) / math.log(2)
    assert metrics.gaussian_bits_per_dim() == pytest.approx(analytic, abs=1e-12)
    assert dist.n_dims == 12
    assert float(dist.bits_per_dim(x)) == pytest.approx(analytic, abs=0.01)
    per_sample = dist.bits_per_dim(x[:5], reduction="none")
    expected = -dist.log_prob(x[:5]) / (12 * math.log(2))
    torch.testing.assert_close(per_sample, expected, rtol=0, atol=1e-12)


def test_bits_per_dim_dequantisation_term() -> None:
    dist = FlowDistribution(SequenceINN(5))
    x = torch.rand(4, 5, dtype=F64)
    plain = dist.bits_per_dim(x, reduction="none")
    torch.testing.assert_close(dist.bits_per_dim(x, n_bins=256, reduction="none"), plain + 8.0)
    torch.testing.assert_close(
        dist.bits_per_dim(x, n_bins=256, data_width=2.0, reduction="none"), plain + 7.0
    )
    torch.testing.assert_close(dist.bits_per_dim(x, n_bins=256, reduction="sum"),
                               (plain + 8.0).sum())


def test_dequantize_matches_the_bits_per_dim_convention() -> None:
    k = torch.tensor([[0, 255], [17, 128]])
    x = metrics.dequantize(k, 256, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.get_default_dtype()
    assert bool(((x >= k / 256) & (x < (k + 1) / 256)).all())
    y = metrics.dequantize(k.double(), 256, data_width=2.0, offset=-1.0)
    assert y.dtype == F64 and bool((y >= -1).all() & (y < 1).all())


def test_count_dims_and_roc_auc() -> None:
    assert metrics.count_dims((3, 32, 32)) == 3072
    assert metrics.count_dims([(2, 4, 4), (8,)]) == 40
    assert metrics.count_dims([torch.Size([3, 2])]) == 6
    with pytest.raises(ValueError, match="one shape or a list of shapes"):
        metrics.count_dims([(2, 4), 8])
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.4, 0.9])
    labels = torch.tensor([0, 0, 1, 1, 1, 0])
    # 9 (positive, negative) pairs; wins: 0.35 > 0.1; 0.8 > 0.1, 0.4; 0.4 > 0.1 and a tie 0.4 = 0.4
    assert metrics.roc_auc(scores, labels) == pytest.approx(4.5 / 9)
    assert metrics.roc_auc(torch.arange(4.0), torch.tensor([0, 0, 1, 1])) == 1.0


# --- gradients ----------------------------------------------------------------------------------


def test_rsample_gradients_reach_every_parameter_and_sample_has_none() -> None:
    dist = FlowDistribution(glow_flow())
    dist.rsample(16).pow(2).sum().backward()
    for name, p in dist.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    s = dist.sample(16)
    assert not s.requires_grad and s.grad_fn is None
    x, lp = dist.sample_and_log_prob(4)
    assert x.requires_grad and lp.requires_grad


def test_module_behaviour_state_dict_pickle_and_dtype() -> None:
    dist = FlowDistribution(glow_flow())
    assert all(k.startswith("inn.") for k in dist.state_dict())
    buffer = io.BytesIO()
    torch.save(dist, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(3, 4, dtype=F64)
    torch.testing.assert_close(loaded.log_prob(x), dist.log_prob(x))
    assert dist.sample(2).dtype == F64
    assert dist.float().sample(2).dtype == torch.float32


# --- conditions -------------------------------------------------------------------------------


def test_conditional_density_and_sampling() -> None:
    inn = SequenceINN(2)
    inn.append(CondShift, cond=0, cond_shape=(2,))
    dist = FlowDistribution(inn)
    c = torch.tensor([[1.0, -1.0], [3.0, 0.5], [0.0, 2.0]], dtype=F64)
    x = torch.randn(3, 2, dtype=F64)
    expected = Independent(Normal(c, torch.ones_like(c)), 1).log_prob(x)
    torch.testing.assert_close(dist.log_prob(x, c), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(dist.log_prob(x, [c]), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(dist.sample(c=c, temperature=0.0), c)  # n inferred, mode = c
    assert dist.sample(3, c=c).shape == (3, 2)
    many = dist.sample(20_000, c=c[1:2], generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(many.mean(0), c[1], rtol=0, atol=0.04)


def test_conditional_coupling_flow_uses_its_condition() -> None:
    dist = FlowDistribution(glow_flow(cond=True))
    c = torch.randn(5, 3, dtype=F64)
    x = torch.randn(5, 4, dtype=F64)
    assert not torch.allclose(dist.log_prob(x, c), dist.log_prob(x, c + 1.0))
    gen = torch.Generator()
    a = dist.sample(c=c, generator=gen.manual_seed(4))
    b = dist.sample(c=[c + 1.0], generator=gen.manual_seed(4))
    assert a.shape == (5, 4) and not torch.allclose(a, b)


def test_graph_with_condition_node() -> None:
    inp, cond = InputNode(4, name="x"), ConditionNode(3, name="c")
    glow = Node(inp, GLOWCouplingBlock, {"subnet_constructor": dense_subnet}, conditions=cond)
    graph = GraphINN([inp, cond, glow, OutputNode(glow)]).to(F64)
    dist = FlowDistribution(graph)
    c = torch.randn(6, 3, dtype=F64)
    x = dist.sample(c=c)
    z, log_det = graph(x, c=[c])
    expected = StandardNormalDistribution(4, dtype=F64).log_prob(z) + log_det
    torch.testing.assert_close(dist.log_prob(x, c), expected)


# --- several inputs and outputs ---------------------------------------------------------------


def test_two_output_graph_sums_one_base_per_output() -> None:
    graph = two_output_graph()
    loc, scale = torch.tensor([0.5, -1.0, 2.0], dtype=F64), torch.tensor([0.5, 2.0, 1.0], dtype=F64)
    base2 = Independent(Normal(loc, scale), 1)
    dist = FlowDistribution(graph, base=[None, base2])
    assert dist.output_shapes == [(1,), (3,)]
    x = torch.randn(5, 4, dtype=F64)
    (z1, z2), log_det = graph(x)
    expected = Normal(0.0, 1.0).log_prob(z1).sum(1) + base2.log_prob(z2) + log_det
    torch.testing.assert_close(dist.log_prob(x), expected, rtol=0, atol=1e-12)
    expected_log_det = 3 * math.log(2.0) + math.log(2.4)  # eigenvalues of 2 I + 0.1: 2, 2, 2, 2.4
    torch.testing.assert_close(log_det, torch.full((5,), expected_log_det, dtype=F64))
    x0 = dist.sample(3, temperature=0.0)
    z1, z2 = graph(x0)[0]
    torch.testing.assert_close(z1, torch.zeros_like(z1))
    torch.testing.assert_close(z2, loc.expand(3, 3))


def test_two_input_graph_takes_and_returns_tuples_and_counts_all_dims() -> None:
    a, b = InputNode(2, name="a"), InputNode(3, name="b")
    cat = Node([a, b], Concat, {}, name="cat")
    lin = Node(cat, FixedLinearTransform, {"M": torch.eye(5, dtype=F64) * 3.0})
    graph = GraphINN([a, b, cat, lin, OutputNode(lin)])
    dist = FlowDistribution(graph)
    assert dist.n_dims == 5
    xa, xb = dist.sample(4)
    assert xa.shape == (4, 2) and xb.shape == (4, 3)
    expected = StandardNormalDistribution(5, dtype=F64).log_prob(3 * torch.cat([xa, xb], 1))
    torch.testing.assert_close(dist.log_prob([xa, xb]), expected + 5 * math.log(3.0))
    bpd = dist.bits_per_dim((xa, xb), reduction="none")
    torch.testing.assert_close(bpd, -dist.log_prob((xa, xb)) / (5 * math.log(2)))


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"n": True}, "n must be a positive integer"),
        ({}, "n .* is required"),
        ({"n": 3, "temperature": -1.0}, "temperature must be a finite number >= 0"),
        ({"n": 3, "temperature": float("nan")}, "temperature"),
        ({"n": 3, "temperature": "hot"}, "temperature"),
    ],
)
def test_bad_sampling_arguments(kwargs: Any, match: str) -> None:
    dist = FlowDistribution(affine_flow())
    for method in (dist.sample, dist.rsample, dist.sample_and_log_prob):
        with pytest.raises(ValueError, match=match):
            method(**kwargs)


def test_n_must_match_the_condition_batch() -> None:
    inn = SequenceINN(2)
    inn.append(CondShift, cond=0, cond_shape=(2,))
    with pytest.raises(ValueError, match=r"n=5 samples requested, but the conditions have batch"):
        FlowDistribution(inn).sample(5, c=torch.zeros(3, 2, dtype=F64))
    with pytest.raises(TypeError, match="c must be a tensor"):
        FlowDistribution(inn).log_prob(torch.zeros(3, 2), c="class 1")


def test_a_fully_convolutional_flow_scores_images_of_another_size() -> None:
    """Built for (4, 8, 8) with 1x1-conv subnets, every pixel is transformed on its own, so the
    log-density of a (4, 8, 8) image is the sum of those of its four (4, 4, 4) quadrants."""
    torch.manual_seed(0)
    inn = SequenceINN(4, 8, 8)
    inn.append(GLOWCouplingBlock, subnet_constructor=conv1x1_subnet)
    inn.append(GLOWCouplingBlock, subnet_constructor=conv1x1_subnet)
    dist = FlowDistribution(inn.to(F64))
    x = torch.randn(3, 4, 8, 8, dtype=F64)
    quadrants = [x[:, :, i : i + 4, j : j + 4] for i in (0, 4) for j in (0, 4)]
    whole = dist.log_prob(x)
    assert torch.allclose(whole, sum(dist.log_prob(q) for q in quadrants), atol=1e-10)
    assert dist.n_dims == 256
    small = quadrants[0]
    bits = -dist.log_prob(small) / (64 * math.log(2.0))  # D of the (4, 4, 4) data, not 256
    assert torch.allclose(dist.bits_per_dim(small, reduction="none"), bits)
    with pytest.raises(ValueError, match=r"x\[0\] must have shape \(batch, \*\(4, 8, 8\)\) \(any"):
        dist.log_prob(torch.randn(3, 2, 8, 8, dtype=F64))  # the channel count is fixed
    fixed_base = FlowDistribution(inn, base=StandardNormalDistribution(4, 8, 8, dtype=F64))
    with pytest.raises(ValueError, match=r"z\[0\] must have shape \(batch, \*\(4, 8, 8\)\), got"):
        fixed_base.log_prob(small)  # a custom base keeps its event shape


def test_bad_data_arguments() -> None:
    dist = FlowDistribution(affine_flow())
    with pytest.raises(ValueError, match=r"x\[0\] must have shape \(batch, \*\(3,\)\), got \(4, 2"):
        dist.log_prob(torch.zeros(4, 2, dtype=F64))
    with pytest.raises(ValueError, match="needs 1 tensor"):
        dist.log_prob([torch.zeros(4, 3), torch.zeros(4, 3)])
    with pytest.raises(TypeError, match="x must be a tensor"):
        dist.log_prob([[0.0, 1.0, 2.0]])
    two = FlowDistribution(two_output_graph())
    with pytest.raises(ValueError, match="different batch sizes"):
        two.base_log_prob([torch.zeros(2, 1), torch.zeros(3, 3)])
    with pytest.raises(ValueError, match="reduction must be one of"):
        dist.nll(torch.zeros(2, 3, dtype=F64), reduction="avg")


def test_bad_metric_arguments() -> None:
    dist = FlowDistribution(affine_flow())
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        dist.bits_per_dim(x, n_bins=0)
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        dist.bits_per_dim(x, n_bins=255.5)
    with pytest.raises(ValueError, match=r"data_width=2\.0 only applies to discrete data"):
        dist.bits_per_dim(x, data_width=2.0)
    with pytest.raises(ValueError, match="data_width must be a positive"):
        dist.bits_per_dim(x, n_bins=256, data_width=0.0)
    with pytest.raises(ValueError, match="n_dims must be a positive integer"):
        metrics.bits_per_dim(torch.zeros(2), 0)
    with pytest.raises(ValueError, match="needs both classes"):
        metrics.roc_auc(torch.zeros(3), torch.zeros(3))


def test_bad_construction_arguments() -> None:
    with pytest.raises(TypeError, match="needs an invertible module with dims_in"):
        FlowDistribution(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="got 1 base distributions, but the INN has 2 outputs"):
        FlowDistribution(two_output_graph(), base=[None])
    plain = Normal(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"event_shape \(\) and batch_shape \(3,\).*Independent"):
        FlowDistribution(affine_flow(), base=plain)
    with pytest.raises(TypeError, match="must be a distribution with log_prob and sample"):
        FlowDistribution(affine_flow(), base="normal")


def test_custom_base_limits_and_missing_log_det() -> None:
    dist = FlowDistribution(affine_flow(), base=StandardNormalDistribution(3, dtype=F64))
    with pytest.raises(ValueError, match=r"generator=.*not StandardNormalDistribution"):
        dist.sample(2, generator=torch.Generator())
    assert dist.sample(2, temperature=0.0).shape == (2, 3)
    no_jac = FlowDistribution(NoJac([(3,)]))
    with pytest.raises(ValueError, match="returned no log-det although called with jac=True"):
        no_jac.log_prob(torch.zeros(2, 3))
    assert no_jac.sample(2).shape == (2, 3)


def test_roc_auc_agrees_with_scikit_learn() -> None:
    sk_metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 6, (200,), generator=gen).double()  # many ties
    labels = torch.randint(0, 2, (200,), generator=gen)
    expected = sk_metrics.roc_auc_score(labels.numpy(), scores.numpy())
    assert metrics.roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)


class MeanlessBase(torch.distributions.Distribution):
    """A (3,) standard normal that does not implement ``mean``."""

    arg_constraints: dict = {}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__(torch.Size(), torch.Size([3]), validate_args=False)

    def sample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        return torch.randn(*sample_shape, 3, dtype=F64)

    def log_prob(self, value: Tensor) -> Tensor:
        return StandardNormalDistribution(3, dtype=F64).log_prob(value)


def test_custom_base_temperature_needs_a_mean_and_rsample_reaches_base_parameters() -> None:
    dist = FlowDistribution(affine_flow(), base=MeanlessBase())
    assert dist.sample(4).shape == (4, 3)
    with pytest.raises(ValueError, match=r"temperature=0\.5 needs the base's mean"):
        dist.sample(4, temperature=0.5)
    loc = torch.zeros(3, dtype=F64, requires_grad=True)
    base = Independent(Normal(loc, torch.ones(3, dtype=F64)), 1)
    learned = FlowDistribution(affine_flow(), base=base)
    learned.rsample(8, temperature=0.5).sum().backward()
    assert loc.grad is not None and bool(loc.grad.abs().sum() > 0)
    assert not learned.sample(8).requires_grad
