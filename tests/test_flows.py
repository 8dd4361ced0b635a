"""The presets of `invertible.flows`: shapes, change of variables by hand, round trip, training,
seeding and conditions."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import pytest
import torch

from invertible import flows
from invertible.distributions import FlowDistribution

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


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vector_preset_trains(name: str) -> None:
    dist = build(name)
    data = two_moons(256, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(dist.parameters(), lr=5e-3)
    with torch.no_grad():
        before = dist.nll(data).item()
    for _ in range(20):
        opt.zero_grad()
        dist.nll(data).backward()
        opt.step()
    with torch.no_grad():
        after = dist.nll(data).item()
    assert after < before - 0.05, (before, after)


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vector_preset_seeded(name: str) -> None:
    state = torch.get_rng_state()
    a, b, other = build(name, 2, seed=5), build(name, 2, seed=5), build(name, 2, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
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
