"""The presets of `invertible.flows`: shapes, change of variables by hand, round trip, training,
seeding and conditions."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor

from invertible import flows
from invertible.distributions import FlowDistribution, LearnedPrior

Factory = Callable[..., FlowDistribution]

VECTOR: Dict[str, Tuple[Factory, Dict[str, Any]]] = {
    "RealNVP-glow": (flows.RealNVP, {"transforms": 3, "hidden_features": (16, 16)}),
    "RealNVP-rnvp": (flows.RealNVP, {"transforms": 3, "hidden_features": (16,),
                                     "coupling": "rnvp"}),
    "NSF": (flows.NSF, {"transforms": 2, "hidden_features": (16, 16), "bins": 4}),
    "MAF-reversed": (flows.MAF, {"transforms": 3, "hidden_features": (16, 16)}),
    "MAF-random": (flows.MAF, {"transforms": 3, "hidden_features": (16,), "orders": "random"}),
}


def build(name: str, context: int = 0, seed: int = 0) -> FlowDistribution:
    factory, kwargs = VECTOR[name]
    return factory(2, context=context, seed=seed, **kwargs)


def two_moons(n: int, generator: torch.Generator) -> torch.Tensor:
    """Two interleaved noisy half circles, standardised roughly to unit scale."""
    t = torch.rand(n, generator=generator) * math.pi
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(t), 1.0 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    data = torch.stack([x - 0.5, y - 0.25], 1) * 1.5
    return data + 0.05 * torch.randn(n, 2, generator=generator)


def perturb(dist: FlowDistribution, scale: float = 0.3) -> None:
    """Move every parameter off its (often zero) start, with a local generator."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in dist.parameters():
            if p.requires_grad and p.is_floating_point():
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def by_hand(dist: FlowDistribution, x: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
    """Standard normal log-density of the latents plus the log-det, through ``.inn``."""
    z, log_det = dist.inn(x) if c is None else dist.inn(x, [c])
    zs = z if isinstance(z, (list, tuple)) else [z]
    total = log_det
    for zk, base in zip(zs, dist.bases):
        if base is None:
            flat = zk.flatten(1)
            total = total - 0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)
        else:
            src = None if base.source is None else zs[base.source]
            total = total + base.log_prob(zk, src)
    return total


@pytest.mark.parametrize("context", [0, 3])
@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vector_preset_density_and_round_trip(name: str, context: int) -> None:
    dist = build(name, context).double()
    perturb(dist)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 2, generator=g, dtype=torch.float64)
    c = torch.randn(7, context, generator=g, dtype=torch.float64) if context else None
    lp = dist.log_prob(x, c)
    assert lp.shape == (7,) and torch.isfinite(lp).all()
    torch.testing.assert_close(lp, by_hand(dist, x, c), rtol=0, atol=1e-9)
    z, _ = dist.inn(x) if c is None else dist.inn(x, [c])
    x_back, _ = dist.inn(z, rev=True) if c is None else dist.inn(z, [c], rev=True)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-9)
    assert dist.sample(5, c[:5] if c is not None else None).shape == (5, 2)


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vector_preset_float32_round_trip(name: str) -> None:
    dist = build(name)
    perturb(dist)
    x = torch.randn(9, 2, generator=torch.Generator().manual_seed(1))
    z, _ = dist.inn(x)
    torch.testing.assert_close(dist.inn(z, rev=True)[0], x, rtol=0, atol=1e-5)



def nll_before_and_after_training(dist: FlowDistribution, data: Tensor, lr: float,
                                  steps: int = 20) -> Tuple[float, float]:
    """The mean NLL of ``data`` before and after ``steps`` full-batch Adam steps on it."""
    opt = torch.optim.Adam(dist.parameters(), lr=lr)
    with torch.no_grad():
        before = dist.nll(data).item()
    for _ in range(steps):
        opt.zero_grad()
        dist.nll(data).backward()
        opt.step()
    with torch.no_grad():
        return before, dist.nll(data).item()

@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vector_preset_trains(name: str) -> None:
    dist = build(name)
    data = two_moons(256, torch.Generator().manual_seed(0))
    before, after = nll_before_and_after_training(dist, data, lr=5e-3)
    assert after < before - 0.05, (before, after)


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vector_preset_seeded(name: str) -> None:
    state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, b, other = build(name, 2, seed=5), build(name, 2, seed=5), build(name, 2, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    so = other.state_dict()
    assert any(not torch.equal(sa[k], so[k]) for k in sa)


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vector_preset_uses_context(name: str) -> None:
    dist = build(name, context=3).double()
    perturb(dist)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    c = torch.randn(6, 3, generator=g, dtype=torch.float64)
    assert not torch.allclose(dist.log_prob(x, c), dist.log_prob(x, c + 1.0))
    assert dist.sample(6, c).shape == (6, 2)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: flows.RealNVP(1), "RealNVP: features"),
    (lambda: flows.RealNVP(2, coupling="nice"), "RealNVP: coupling"),
    (lambda: flows.NSF(2, bins=0), "NSF: bins"),
    (lambda: flows.MAF(2, hidden_features=()), "MAF: hidden_features"),
    (lambda: flows.MAF(2, orders="forward"), "MAF: orders"),
])
def test_bad_arguments_name_the_preset(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


GLOW_SHAPES = [(1, 8, 8), (4, 8, 8)]


def glow(shape: Tuple[int, ...], context: int = 0, seed: int = 0, **kwargs: Any
         ) -> FlowDistribution:
    return flows.Glow(shape, levels=2, steps=2, hidden_channels=8, context=context, seed=seed,
                      **kwargs)


def images(n: int, shape: Tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Small random images with structure: a random low-rank pattern per sample, plus noise."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    rows, cols = torch.randn(n, c, h, 1, generator=g), torch.randn(n, c, 1, w, generator=g)
    return 0.5 * torch.tanh(rows * cols) + 0.05 * torch.randn(n, c, h, w, generator=g)


@pytest.mark.parametrize("squeeze", ["irevnet", "haar"])
@pytest.mark.parametrize("context", [0, 3])
@pytest.mark.parametrize("shape", GLOW_SHAPES)
def test_glow_density_and_round_trip(shape: Tuple[int, ...], context: int, squeeze: str
                                     ) -> None:
    dist = glow(shape, context, squeeze=squeeze).double()
    x = images(6, shape).double()
    c = torch.randn(6, context, dtype=torch.float64) if context else None
    dist.log_prob(x, c)  # initialises ActNorm from data
    perturb(dist, 0.05)
    lp = dist.log_prob(x, c)
    assert lp.shape == (6,) and torch.isfinite(lp).all()
    assert dist.output_shapes == [(2 * shape[0], 4, 4), (8 * shape[0], 2, 2)]
    assert isinstance(dist.bases[0], LearnedPrior) and dist.bases[0].source == 1
    torch.testing.assert_close(lp, by_hand(dist, x, c), rtol=0, atol=1e-9)
    z, _ = dist.inn(x) if c is None else dist.inn(x, [c])
    x_back, _ = dist.inn(z, rev=True) if c is None else dist.inn(z, [c], rev=True)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-9)
    assert dist.sample(4, c[:4] if c is not None else None).shape == (4, *shape)


@pytest.mark.parametrize("shape", GLOW_SHAPES)
def test_glow_float32_round_trip_and_training(shape: Tuple[int, ...]) -> None:
    dist = glow(shape)
    data = images(64, shape)
    z, _ = dist.inn(data)
    torch.testing.assert_close(dist.inn(z, rev=True)[0], data, rtol=0, atol=1e-5)
    before, after = nll_before_and_after_training(dist, data, lr=2e-3)
    assert after < before - 0.5, (before, after)


def test_glow_seeded() -> None:
    state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, b, other = glow((4, 8, 8), 2, seed=3), glow((4, 8, 8), 2, seed=3), glow((4, 8, 8), 2)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], so[k]) for k in sa)


def test_glow_uses_context() -> None:
    dist = glow((1, 8, 8), context=3).double()
    x = images(5, (1, 8, 8)).double()
    c = torch.randn(5, 3, dtype=torch.float64)
    dist.log_prob(x, c)
    perturb(dist, 0.05)
    assert not torch.allclose(dist.log_prob(x, c), dist.log_prob(x, c + 1.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shape": (1, 6, 8)}, "Glow: shape"),
    ({"shape": (8, 8)}, "Glow: shape"),
    ({"shape": (1, 8, 8), "squeeze": "pixel"}, "Glow: squeeze"),
    ({"shape": (1, 8, 8), "levels": 0}, "Glow: levels"),
])
def test_glow_bad_arguments(kwargs: Dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flows.Glow(**kwargs)
