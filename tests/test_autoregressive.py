"""Autoregressive blocks: a Jacobian triangular in the block's order, MADE's masks, seeded
orders, the IAF orientation's cheap direction, the clamp, the spline's shared parametrisation,
memory-efficient training, compile.

The generic properties (round trips both ways, log-det vs autograd, gradients, state_dict,
pickling, batch independence, conditions used) run in the property suite on the cases of
``tests/cases/autoregressive.py``.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, List, Optional, Tuple

import pytest
import torch
from torch import Tensor, nn

from cases.autoregressive import perturbed
from invertible.framework import SequenceINN
from invertible.modules import (
    AutoregressiveAffine,
    AutoregressiveRQSpline,
    PermuteRandom,
    RationalQuadraticSpline,
)
from invertible.modules.autoregressive import MADE, autoregressive_order
from subnets import dense_subnet
from test_memory_efficient import assert_same_gradients, gradients

D64 = torch.float64
VARIANTS = [
    pytest.param({}, id="maf"),
    pytest.param({"order": "random", "seed": 3}, id="maf-random"),
    pytest.param({"order": "reversed"}, id="maf-reversed"),
    pytest.param({"inverse_autoregressive": True, "order": "random", "seed": 4}, id="iaf-random"),
    pytest.param({"dims_c": [(2,)], "order": "random", "seed": 5}, id="maf-cond"),
    pytest.param({"dims_c": [(2,)], "inverse_autoregressive": True}, id="iaf-cond"),
]
BLOCKS = pytest.mark.parametrize("block_class", [AutoregressiveAffine, AutoregressiveRQSpline],
                                 ids=["affine", "rqs"])


def _data(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _block(features: int = 5, block_class: Any = AutoregressiveAffine, **kwargs: Any) -> Any:
    torch.manual_seed(0)
    return perturbed(block_class, [(features,)], hidden_features=(9, 9), **kwargs).double()


def _jacobian(block: nn.Module, x: Tensor, c: Optional[List[Tensor]], rev: bool) -> Tensor:
    def one(v: Tensor) -> Tensor:
        return block([v[None]], c, rev=rev)[0][0][0]
    return torch.autograd.functional.jacobian(one, x)


@BLOCKS
@pytest.mark.parametrize("kwargs", VARIANTS)
@pytest.mark.parametrize("rev", [False, True], ids=["forward", "reverse"])
def test_jacobian_is_triangular_in_the_order(block_class: Any, kwargs: Any, rev: bool) -> None:
    block = _block(5, block_class, **kwargs)
    c = [_data(1, 2, seed=2)] if "dims_c" in kwargs else None
    x = _data(5)
    if rev:
        x = block([x[None]], c)[0][0][0].detach()
    jac = _jacobian(block, x, c, rev)
    order = block.made.order
    in_order = jac[order][:, order]
    assert torch.equal(torch.triu(in_order, 1), torch.zeros_like(in_order))
    assert bool((torch.tril(in_order, -1) != 0).any())  # not merely diagonal
    _, log_det = block([x[None]], c, rev=rev)
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jac)[1])


def test_made_outputs_see_only_earlier_features_and_all_conditions() -> None:
    torch.manual_seed(0)
    order = autoregressive_order(6, "random", torch.Generator().manual_seed(2))
    made = MADE(6, 3, [11, 7], 3, order).double()
    with torch.no_grad():
        made.layers[-1].weight.normal_()  # the last layer starts at zero
    assert {n for n, _ in made.named_buffers()} >= {"order", "layers.0.mask", "layers.2.mask"}
    assert not any("mask" in n for n, _ in made.named_parameters())
    x, c = _data(6), _data(3, seed=2)
    jac_x = torch.autograd.functional.jacobian(lambda v: made(v[None], c[None])[0], x)
    jac_c = torch.autograd.functional.jacobian(lambda v: made(x[None], v[None])[0], c)
    position = torch.empty(6, dtype=torch.long)
    position[order] = torch.arange(6)
    for unit in range(18):
        feature = unit // 3
        later = position >= position[feature]
        assert torch.equal(jac_x[unit, later], torch.zeros_like(jac_x[unit, later])), unit
        assert bool((jac_c[unit] != 0).all()), f"output {unit} does not see every condition"
    masks = [layer.mask for layer in made.layers]  # paths through the masks: every pair allowed
    paths = masks[2] @ masks[1] @ masks[0][:, :6]
    allowed = position[None, :] < position.repeat_interleave(3)[:, None]
    assert torch.equal(paths > 0, allowed)
    assert bool((masks[0][:, 6:] == 1).all())  # conditions enter unmasked


def test_seeded_random_order_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = AutoregressiveAffine([(8,)], order="random", seed=3)
    b = AutoregressiveAffine([(8,)], order="random", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert sorted(a.made.order.tolist()) == list(range(8))
    assert not torch.equal(a.made.order, torch.arange(8))
    other = AutoregressiveAffine([(8,)], order="random", seed=4)
    assert not torch.equal(a.made.order, other.made.order)
    sequential = AutoregressiveAffine([(8,)], seed=3)
    assert torch.equal(sequential.made.order, torch.arange(8))
    backwards = AutoregressiveAffine([(8,)], order="reversed", seed=3)
    assert torch.equal(backwards.made.order, torch.arange(8).flip(0))
    torch.manual_seed(0)  # seed=None: torch's global generator, reproducible under manual_seed
    first = AutoregressiveAffine([(8,)], order="random")
    torch.manual_seed(0)
    assert torch.equal(AutoregressiveAffine([(8,)], order="random").made.order, first.made.order)


def _made_calls(block: Any, x: Tensor, rev: bool) -> int:
    calls: List[int] = []
    handle = block.made.register_forward_hook(lambda *args: calls.append(1))
    try:
        block([x], rev=rev)
    finally:
        handle.remove()
    return len(calls)


@BLOCKS
def test_iaf_orientation_swaps_the_cheap_direction(block_class: Any) -> None:
    maf = _block(6, block_class)
    iaf = block_class([(6,)], hidden_features=(9, 9), inverse_autoregressive=True)
    iaf = iaf.double()
    iaf.load_state_dict(maf.state_dict())
    x = _data(4, 6)
    assert (_made_calls(maf, x, False), _made_calls(maf, x, True)) == (1, 6)
    assert (_made_calls(iaf, x, False), _made_calls(iaf, x, True)) == (6, 1)
    (z_iaf,), ld_iaf = iaf([x])  # IAF's forward is MAF's inverse
    (z_maf,), ld_maf = maf([x], rev=True)
    torch.testing.assert_close(z_iaf, z_maf, rtol=0, atol=0)
    torch.testing.assert_close(ld_iaf, ld_maf, rtol=0, atol=0)


@pytest.mark.parametrize("clamp", [0.5, 2.0])
def test_clamp_bounds_the_log_scale(clamp: float) -> None:
    block = _block(4, clamp=clamp)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.mul_(1e4)
    x = _data(16, 4)
    with torch.no_grad():
        _, log_scale = block.transform(x, block.made(x), False)
        (z,), log_det = block([x])
    bound = clamp * 0.636 * torch.pi / 2
    assert float(log_scale.abs().max()) <= bound
    assert float(log_scale.abs().max()) > 0.9 * bound  # saturated, not merely small
    assert float(log_det.abs().max()) <= 4 * bound


def test_spline_parameters_are_those_of_the_coupling_spline() -> None:
    """Raw parameters map to the same spline as in ``RationalQuadraticSpline``, both ways."""
    torch.manual_seed(0)
    block = AutoregressiveRQSpline([(4,)], bins=5, domain_clamping=4.0).double()
    coupling = RationalQuadraticSpline([(8,)], subnet_constructor=dense_subnet, bins=5,
                                       domain_clamping=4.0).double()
    x, raw = 2 * _data(6, 4), _data(6, 4 * 16, seed=2)
    for rev in (False, True):
        got = block.transform(x, raw, rev)
        expected = coupling.transform(x, (raw,), rev)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_spline_starts_as_the_identity() -> None:
    block = AutoregressiveRQSpline([(5,)], dims_c=[(2,)], seed=0).double()
    x = 2 * _data(7, 5)
    (z,), log_det = block([x], [_data(7, 2, seed=2)])
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(log_det, torch.zeros(7, dtype=D64))


def _chain(memory_efficient: bool = False) -> SequenceINN:
    torch.manual_seed(0)
    inn = SequenceINN(5, memory_efficient=memory_efficient)
    inn.append(perturbed(AutoregressiveAffine, [(5,)], hidden_features=(8,)))
    inn.append(PermuteRandom, seed=0)
    inn.append(perturbed(AutoregressiveAffine, [(5,)], [(2,)], hidden_features=(8,),
                         order="random", seed=1, inverse_autoregressive=True),
               cond=0, cond_shape=(2,))
    inn.append(perturbed(AutoregressiveRQSpline, [(5,)], [(2,)], hidden_features=(8,), bins=4,
                         order="random", seed=2), cond=0, cond_shape=(2,))
    inn.append(perturbed(AutoregressiveRQSpline, [(5,)], hidden_features=(8,), bins=3,
                         inverse_autoregressive=True))
    return inn.double()


@pytest.mark.parametrize("rev", [False, True], ids=["forward", "reverse"])
def test_memory_efficient_gradients_equal_standard_backprop(rev: bool) -> None:
    net = _chain()
    x, c = [_data(4, 5)], [_data(4, 2, seed=2)]
    if rev:
        with torch.no_grad():
            x = [net(x[0], c=c)[0]]
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    assert_same_gradients(gradients(net, x, c, rev), gradients(efficient, x, c, rev))


def test_errors_name_the_block() -> None:
    with pytest.raises(ValueError, match=r"AutoregressiveAffine works on vectors \(d,\) only"):
        AutoregressiveAffine([(3, 4, 4)])
    with pytest.raises(ValueError, match="AutoregressiveAffine: condition 0 must be a vector"):
        AutoregressiveAffine([(4,)], [(2, 3)])
    with pytest.raises(ValueError, match="AutoregressiveAffine: order must be one of"):
        AutoregressiveAffine([(4,)], order="backwards")
    with pytest.raises(ValueError, match="AutoregressiveAffine"):
        AutoregressiveAffine([(4,)])([torch.zeros(2, 5)])
    with pytest.raises(ValueError, match=r"AutoregressiveRQSpline works on vectors \(d,\) only"):
        AutoregressiveRQSpline([(3, 4)])
    with pytest.raises(ValueError, match=r"AutoregressiveRQSpline: .*bins must be >= 1"):
        AutoregressiveRQSpline([(4,)], bins=0)
    with pytest.raises(TypeError, match="AutoregressiveRQSpline"):
        AutoregressiveRQSpline([(4,)], tails="linear")  # type: ignore[call-arg]


def _roundtrip(net: SequenceINN, x: Tensor, c: List[Tensor]) -> Tuple[Tensor, ...]:
    z, log_det = net(x, c=c)
    x_rev, log_det_rev = net(z, c=c, rev=True)
    return z, log_det, x_rev, log_det_rev


@pytest.mark.slow
def test_compiles_fullgraph_and_matches_eager() -> None:
    torch.compiler.reset()
    net = _chain().float()
    x, c = torch.randn(3, 5), [torch.randn(3, 2)]
    compiled = torch.compile(functools.partial(_roundtrip, net), fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, c), _roundtrip(net, x, c), rtol=1e-5, atol=1e-5)
    torch.compiler.reset()
