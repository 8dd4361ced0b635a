"""Tests of the learnable bases of `invertible.distributions`, alone and inside FlowDistribution."""

from __future__ import annotations

import io
import math
from typing import Callable, Dict, Optional, Tuple

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from invertible.distributions import (
    ConditionalDiagGaussian,
    DiagGaussian,
    FlowBase,
    FlowDistribution,
    GaussianMixture,
    LearnedPrior,
)
from invertible.framework import GraphINN, InputNode, Node, OutputNode, SequenceINN
from invertible.modules.coupling_layers import GLOWCouplingBlock
from invertible.modules.fixed_transforms import FixedLinearTransform
from invertible.modules.graph_topology import Split
from subnets import dense_subnet

F64 = torch.float64
LOC = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
SCALE = torch.tensor([0.5, 2.0, 1.0], dtype=F64)
M = torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.5, -0.3], [0.4, 0.0, 0.8]], dtype=F64)


def diag(trainable: bool = True) -> DiagGaussian:
    """N(LOC, diag SCALE²) on (3,)."""
    base = DiagGaussian((3,), trainable=trainable).double()
    with torch.no_grad():
        base.loc.copy_(LOC)
        base.log_scale.copy_(SCALE.log())
    return base


def mixture(trainable: bool = True) -> GaussianMixture:
    """Three components on (3,) with unequal weights, means and scales."""
    base = GaussianMixture((3,), 3, trainable=trainable).double()
    with torch.no_grad():
        base.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        base.means.copy_(torch.tensor([[0.0, 0.0, 0.0], [3.0, -2.0, 1.0], [-2.0, 4.0, 0.5]]))
        base.log_scales.copy_(torch.tensor([[0.0, 0.3, -0.2], [-0.5, 0.0, 0.1], [0.2, -0.1, 0.0]]))
    return base


def mixture_reference(base: GaussianMixture) -> MixtureSameFamily:
    """The same mixture in torch.distributions."""
    comp = Independent(Normal(base.means.detach(), base.log_scales.detach().exp()), 1)
    return MixtureSameFamily(Categorical(logits=base.logits.detach()), comp)


def conditional(cond: int = 0) -> ConditionalDiagGaussian:
    """A (3,) Gaussian whose mean and log-scale are a linear map of a (2,) context."""
    torch.manual_seed(0)
    return ConditionalDiagGaussian((3,), nn.Linear(2, 6), cond=cond).double()


def conditional_reference(base: ConditionalDiagGaussian, context: Tensor) -> Independent:
    """The Gaussian the network gives for ``context``, in torch.distributions."""
    out = base.context_net(context)
    return Independent(Normal(out[:, :3], out[:, 3:].exp()), 1)


# --- the bases on their own ---------------------------------------------------------------------


def test_log_prob_agrees_with_torch_distributions() -> None:
    z = torch.randn(7, 3, dtype=F64)
    expected = Independent(Normal(LOC, SCALE), 1).log_prob(z)
    torch.testing.assert_close(diag().log_prob(z), expected, rtol=0, atol=1e-12)
    by_hand = (-0.5 * ((z - LOC) / SCALE) ** 2 - SCALE.log() - 0.5 * math.log(2 * math.pi)).sum(1)
    torch.testing.assert_close(diag().log_prob(z), by_hand, rtol=0, atol=1e-12)
    mix = mixture()
    torch.testing.assert_close(mix.log_prob(z), mixture_reference(mix).log_prob(z), rtol=0,
                               atol=1e-12)
    cond, c = conditional(), torch.randn(7, 2, dtype=F64)
    expected = conditional_reference(cond, c).log_prob(z)
    torch.testing.assert_close(cond.log_prob(z, c), expected, rtol=0, atol=1e-12)


def test_conditional_image_layout_splits_channels_into_mean_and_log_scale() -> None:
    torch.manual_seed(1)
    base = ConditionalDiagGaussian((2, 3, 3), nn.Conv2d(1, 4, 3, padding=1)).double()
    c, z = torch.randn(4, 1, 3, 3, dtype=F64), torch.randn(4, 2, 3, 3, dtype=F64)
    out = base.context_net(c)
    expected = Independent(Normal(out[:, :2], out[:, 2:].exp()), 3).log_prob(z)
    torch.testing.assert_close(base.log_prob(z, c), expected, rtol=0, atol=1e-12)
    assert base.sample(4, c).shape == (4, 2, 3, 3)


@pytest.mark.parametrize("t", [1.0, 0.5])
def test_samples_have_the_right_shape_and_moments(t: float) -> None:
    torch.manual_seed(2)
    n = 100_000
    z = diag().sample(n, temperature=t)
    assert z.shape == (n, 3) and z.dtype == F64 and z.device.type == "cpu"
    torch.testing.assert_close(z.mean(0), LOC, rtol=0, atol=0.03)
    torch.testing.assert_close(z.std(0), t * SCALE, rtol=0.02, atol=0)
    mix = mixture()
    z = mix.sample((n,), temperature=t)  # a torch-style sample shape works too
    ref = mixture_reference(mix)
    weights, means = ref.mixture_distribution.probs, mix.means.detach()
    variance = (weights[:, None] * ((t * mix.log_scales.detach().exp()) ** 2 + means**2)).sum(0)
    torch.testing.assert_close(z.mean(0), ref.mean, rtol=0, atol=0.04)
    torch.testing.assert_close(z.var(0), variance - ref.mean**2, rtol=0.03, atol=0)
    cond, c = conditional(), torch.randn(1, 2, dtype=F64)
    z = cond.sample(n, c, temperature=t)
    ref_c = conditional_reference(cond, c)
    torch.testing.assert_close(z.mean(0), ref_c.mean[0].detach(), rtol=0, atol=0.05)
    torch.testing.assert_close(z.std(0), t * ref_c.stddev[0].detach(), rtol=0.02, atol=0)


def test_temperature_zero_gives_the_means() -> None:
    torch.testing.assert_close(diag().sample(4, temperature=0.0), LOC.expand(4, 3))
    mix = mixture()
    z = mix.sample(50, temperature=0.0)
    assert all(any(torch.equal(row, m) for m in mix.means.detach()) for row in z)
    cond, c = conditional(), torch.randn(5, 2, dtype=F64)
    torch.testing.assert_close(cond.sample(5, c, 0.0), conditional_reference(cond, c).mean)


def test_rsample_carries_gradients_and_sample_does_not() -> None:
    torch.manual_seed(3)
    cases: Dict[str, Tuple[FlowBase, Optional[Tensor]]] = {
        "diag": (diag(), None), "mixture": (mixture(), None),
        "conditional": (conditional(), torch.randn(8, 2, dtype=F64)),
    }
    for name, (base, c) in cases.items():
        base.rsample(8, c).pow(2).sum().backward()
        for pname, p in base.named_parameters():
            if pname == "logits":  # the component draw is not differentiable
                assert p.grad is None, name
            else:
                assert p.grad is not None and bool(p.grad.abs().sum() > 0), (name, pname)
        assert not base.sample(8, c).requires_grad
        base.log_prob(base.sample(8, c), c).sum().backward()  # logits train through log_prob
        assert all(p.grad is not None for p in base.parameters())


def test_trainable_false_gives_buffers_and_state_dict_round_trips() -> None:
    for factory, names in ((diag, {"loc", "log_scale"}),
                           (mixture, {"logits", "means", "log_scales"})):
        fixed = factory(False)
        assert list(fixed.parameters()) == [] and set(dict(fixed.named_buffers())) == names
        assert {n for n, _ in factory(True).named_parameters()} == names
        for trainable in (True, False):
            base = factory(trainable)
            buffer = io.BytesIO()
            torch.save(base.state_dict(), buffer)
            buffer.seek(0)
            fresh = (DiagGaussian((3,), trainable) if factory is diag
                     else GaussianMixture((3,), 3, trainable, seed=5)).double()
            fresh.load_state_dict(torch.load(buffer, weights_only=True))
            z = torch.randn(4, 3, dtype=F64)
            torch.testing.assert_close(fresh.log_prob(z), base.log_prob(z), rtol=0, atol=0)
    a, b = GaussianMixture((3,), 4, seed=7), GaussianMixture((3,), 4, seed=7)
    assert torch.equal(a.means, b.means)  # seeded locally
    cond = conditional()
    assert set(cond.state_dict()) == {"context_net.weight", "context_net.bias"}


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: diag().sample(0), ValueError, "DiagGaussian: n must be a positive integer"),
        (lambda: diag().log_prob(torch.zeros(2, 4)), ValueError, r"z of shape \(batch, \*\(3,\)"),
        (lambda: GaussianMixture((3,), 0), ValueError, "n_components must be a positive"),
        (lambda: conditional().sample(3), ValueError, "needs a context tensor"),
        (lambda: conditional().sample(3, torch.zeros(2, 2, dtype=F64)), ValueError,
         "3 samples need a context with 3 rows or 1 row, got 2"),
        (lambda: ConditionalDiagGaussian((2,), nn.Linear(2, 3)).log_prob(
            torch.zeros(1, 2), torch.zeros(1, 2)), ValueError, r"2 \* 2 = 4 values per row"),
        (lambda: ConditionalDiagGaussian((2,), "net"), TypeError, "must be an nn.Module"),  # type: ignore[arg-type]
    ],
)
def test_errors_name_the_base(call: Callable[[], object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# --- inside FlowDistribution --------------------------------------------------------------------


def affine_flow() -> SequenceINN:
    """``z = M x``, log-det ``ln|det M|``."""
    inn = SequenceINN(3)
    inn.append(FixedLinearTransform, M=M)
    return inn


def coupling_flow(cond: bool = False) -> SequenceINN:
    """Two GLOW couplings on (2,), the second conditioned on a (2,) vector when ``cond``."""
    torch.manual_seed(4)
    inn = SequenceINN(2)
    inn.append(GLOWCouplingBlock, subnet_constructor=dense_subnet)
    kwargs = {"cond": 0, "cond_shape": (2,)} if cond else {}
    inn.append(GLOWCouplingBlock, subnet_constructor=dense_subnet, **kwargs)
    return inn.double()


def toy_data(n: int = 256) -> Tuple[Tensor, Tensor]:
    """Two 2-D clusters, made in code; the condition is the one-hot-like cluster centre."""
    gen = torch.Generator().manual_seed(6)
    centre = 4.0 * (torch.rand(n, 1, generator=gen, dtype=F64) < 0.5).to(F64) - 2.0
    c = torch.cat([centre, -centre], 1)
    return c + 0.3 * torch.randn(n, 2, generator=gen, dtype=F64), c


@pytest.mark.parametrize("factory", [diag, mixture])
def test_flow_log_prob_is_base_log_prob_plus_log_det(factory: Callable[[], FlowBase]) -> None:
    base = factory()
    dist = FlowDistribution(affine_flow(), base=base)
    x = torch.randn(6, 3, dtype=F64)
    z, log_det = dist.inn(x)
    torch.testing.assert_close(log_det, torch.linalg.slogdet(M)[1].expand(6))
    torch.testing.assert_close(dist.log_prob(x), base.log_prob(z) + log_det)
    assert {n for n, _ in dist.named_parameters()} == {f"base_modules.0.{n}"
                                                       for n, _ in base.named_parameters()}
    x0 = dist.sample(5, temperature=0.5)
    assert x0.shape == (5, 3) and x0.dtype == F64 and torch.isfinite(dist.log_prob(x0)).all()
    if isinstance(base, DiagGaussian):  # T = 0: the flow's inverse of the base's mean
        torch.testing.assert_close(dist.sample(2, temperature=0.0) @ M.T, LOC.expand(2, 3))
    loaded = FlowDistribution(affine_flow(), base=factory())
    with torch.no_grad():
        for p in loaded.parameters():
            p.add_(1.0)
    loaded.load_state_dict(dist.state_dict())
    torch.testing.assert_close(loaded.log_prob(x), dist.log_prob(x), rtol=0, atol=0)


@pytest.mark.parametrize("base", ["diag", "mixture", "conditional"])
def test_nll_decreases_with_adam(base: str) -> None:
    x, c = toy_data()
    torch.manual_seed(8)
    bases = {"diag": DiagGaussian((2,)), "mixture": GaussianMixture((2,), 2),
             "conditional": ConditionalDiagGaussian((2,), nn.Linear(2, 4))}
    cond = base == "conditional"
    dist = FlowDistribution(coupling_flow(cond), base=bases[base].double())
    cs = c if cond else None
    optimiser = torch.optim.Adam(dist.parameters(), lr=1e-2)
    before = float(dist.nll(x, cs).detach())
    for _ in range(30):
        optimiser.zero_grad()
        dist.nll(x, cs).backward()
        optimiser.step()
    assert float(dist.nll(x, cs).detach()) < before - 0.1
    samples = dist.sample(c=cs, temperature=0.7) if cond else dist.sample(16, temperature=0.7)
    assert samples.shape == ((256, 2) if cond else (16, 2))


def test_conditional_base_with_a_conditional_inn() -> None:
    inn = coupling_flow(cond=True)
    torch.manual_seed(11)
    base = ConditionalDiagGaussian((2,), nn.Linear(2, 4)).double()
    dist = FlowDistribution(inn, base=base)
    x, c = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    z, log_det = inn(x, c=[c])
    out = base.context_net(c)
    expected = Independent(Normal(out[:, :2], out[:, 2:].exp()), 1).log_prob(z) + log_det
    torch.testing.assert_close(dist.log_prob(x, c), expected, rtol=0, atol=1e-12)
    assert dist.sample(c=c).shape == (5, 2)
    assert dist.sample(7, c=c[:1], temperature=0.5).shape == (7, 2)
    x0 = dist.sample(c=c, temperature=0.0)  # the inverse of the conditional mean
    torch.testing.assert_close(inn(x0, c=[c])[0], out[:, :2])
    xs, lp = dist.sample_and_log_prob(c=c)
    torch.testing.assert_close(lp, dist.log_prob(xs, c))
    dist.rsample(c=c).sum().backward()
    assert base.context_net.weight.grad is not None
    with pytest.raises(ValueError, match=r"base for output 0 is conditioned on c\[0\], but got no"):
        FlowDistribution(affine_flow(), base=conditional()).log_prob(torch.zeros(2, 3, dtype=F64))


def two_output_graph() -> GraphINN:
    """x (4,) -> GLOW coupling -> split into z1 (1,) and z2 (3,)."""
    torch.manual_seed(9)
    inp = InputNode(4, name="x")
    glow = Node(inp, GLOWCouplingBlock, {"subnet_constructor": dense_subnet}, name="glow")
    split = Node(glow, Split, {"section_sizes": [1, 3]}, name="split")
    nodes = [inp, glow, split, OutputNode(split.out0, name="z1"), OutputNode(split.out1, name="z2")]
    return GraphINN(nodes).double()


def test_learned_prior_on_a_two_output_graph() -> None:
    graph = two_output_graph()
    torch.manual_seed(10)
    prior = LearnedPrior((3,), nn.Linear(1, 6), source=0).double()
    dist = FlowDistribution(graph, base=[None, prior])
    x = torch.randn(6, 4, dtype=F64)
    (z1, z2), log_det = graph(x)
    out = prior.context_net(z1)
    expected = (Normal(0.0, 1.0).log_prob(z1).sum(1) + log_det
                + Independent(Normal(out[:, :3], out[:, 3:].exp()), 1).log_prob(z2))
    torch.testing.assert_close(dist.log_prob(x), expected, rtol=0, atol=1e-12)
    samples = dist.sample(8, temperature=0.8)
    assert samples.shape == (8, 4) and torch.isfinite(dist.log_prob(samples)).all()
    (z1, z2), _ = graph(dist.sample(3, temperature=0.0))  # z1 = 0, z2 = mu(0)
    torch.testing.assert_close(z1, torch.zeros_like(z1))
    torch.testing.assert_close(z2, prior.context_net.bias[:3].detach().expand(3, 3))
    xs, lp = dist.sample_and_log_prob(5)
    torch.testing.assert_close(lp, dist.log_prob(xs))
    dist.nll(x).backward()
    assert prior.context_net.weight.grad is not None


def test_learned_prior_sampling_order_and_bad_sources() -> None:
    graph = two_output_graph()
    prior = LearnedPrior((1,), nn.Linear(3, 2), source=1).double()  # output 0 given output 1
    dist = FlowDistribution(graph, base=[prior, DiagGaussian((3,)).double()])
    assert dist.order == [1, 0]
    assert dist.sample(4).shape == (4, 4)
    for source, match in ((0, "must be the index of another"), (2, "must be the index")):
        with pytest.raises(ValueError, match=match):
            FlowDistribution(graph, base=[LearnedPrior((1,), nn.Linear(3, 2), source), None])
    cycle = [LearnedPrior((1,), nn.Linear(3, 2), 1), LearnedPrior((3,), nn.Linear(1, 6), 0)]
    with pytest.raises(ValueError, match="form a cycle"):
        FlowDistribution(graph, base=cycle)



@pytest.mark.parametrize("factory", [diag, mixture, conditional])
def test_generator_makes_sampling_reproducible_and_leaves_global_state(
    factory: Callable[[], FlowBase],
) -> None:
    """``sample(generator=g)`` draws every random number of the base from ``g``, alone and
    through ``FlowDistribution``; torch's global generator is not touched."""
    base = factory()
    if isinstance(base, ConditionalDiagGaussian):
        context = torch.randn(1, 2, dtype=F64)

        def draw(seed: int) -> Tensor:
            return base.sample(7, context, generator=torch.Generator().manual_seed(seed))
    else:
        dist = FlowDistribution(affine_flow(), base=base)

        def draw(seed: int) -> Tensor:
            return dist.sample(7, generator=torch.Generator().manual_seed(seed))
    before = torch.get_rng_state()
    a, b, other = draw(3), draw(3), draw(4)
    assert torch.equal(torch.get_rng_state(), before)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (7, 3) and not torch.equal(a, other)
