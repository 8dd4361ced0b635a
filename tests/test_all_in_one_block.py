"""Focused tests of `AllInOneBlock`: reference values, RNG order, state layout, errors, legacy."""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from scipy.stats import special_ortho_group
from torch import Tensor, nn

from cases.all_in_one import conv1d_subnet
from invertible._errors import InvertibleAssertionError
from invertible.modules import all_in_one_block as aio_module
from invertible.modules._permutation import (
    channel_matrix_function,
    householder_product,
    matrix_kernel,
    one_hot_matrix,
    one_hot_to_index,
    permute_channels,
)
from invertible.modules.all_in_one_block import AllInOneBlock, softplus_scale
from subnets import Float32Subnet, conv_subnet, dense_subnet

X = torch.tensor([[0.5, -1.0, 2.0, 0.25, -0.75], [1.5, 0.3, -0.2, -1.1, 0.9]], dtype=torch.float64)
C = torch.tensor([[0.2, -0.4], [1.0, 0.5]], dtype=torch.float64)


def lin(i: int, o: int) -> nn.Linear:
    """A deterministic float64 linear subnet (cosine weights, sine biases)."""
    m = nn.Linear(i, o).double()
    with torch.no_grad():
        k = torch.arange(o * i, dtype=torch.float64).reshape(o, i)
        m.weight.copy_(0.1 * torch.cos(k + 1.0))
        m.bias.copy_(0.05 * torch.sin(torch.arange(o, dtype=torch.float64) + 1.0))
    return m


class ChannelMLP(nn.Module):
    """A per-position linear map over channels for inputs of any rank (moves dim 1 last)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


def set_hard(m: AllInOneBlock, perm: List[int]) -> None:
    """Overwrite a hard block's permutation (and its inverse)."""
    p = torch.tensor(perm)
    with torch.no_grad():
        m.w_perm.copy_(p)
        m.w_perm_inv.copy_(torch.argsort(p))


def params_equal(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold identical parameter values."""
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# ------------------------------------------------ reference values: FrEIA HEAD's outputs, float64


def test_freia_reference_default_block() -> None:
    m = AllInOneBlock([(5,)], subnet_constructor=lin, affine_clamping=2.0).double()
    set_hard(m, [2, 0, 4, 1, 3])
    with torch.no_grad():
        m.global_scale.copy_(torch.tensor([[9, 10, 11, 8.5, 10.5]]))
        m.global_offset.copy_(torch.tensor([[0.1, -0.2, 0, 0.3, 0.05]]))
    (y,), log_det = m([X])
    expected = [[2.201631, 0.551105, -0.743012, -1.201343, 0.500872],
                [-0.220163, 1.453314, 0.97101, 0.100403, -0.639004]]
    torch.testing.assert_close(y, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(log_det, torch.tensor([-0.106005, -0.108204], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    (x_rev,), log_det_rev = m([y], rev=True)
    assert float((x_rev - X).detach().abs().max()) < 5e-15
    assert float((log_det + log_det_rev).detach().abs().max()) < 5e-15


def test_freia_reference_conditional_exp_reverse_permutation() -> None:
    m = AllInOneBlock([(5,)], [(2,)], lin, affine_clamping=1.5, global_affine_type="EXP",
                      reverse_permutation=True).double()
    set_hard(m, [4, 3, 2, 1, 0])
    with torch.no_grad():
        m.global_scale.copy_(torch.tensor([[0.1, -0.2, 0, 0.3, 0.05]]))
    (y,), log_det = m([X], c=[C])
    expected = [[0.541604, -1.286276, 2.0, 0.204683, -0.828878],
                [1.565447, 0.391981, -0.2, -0.900604, 0.994654]]
    torch.testing.assert_close(y, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(log_det, torch.tensor([0.224729, 0.252389], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    (x_rev,), log_det_rev = m([y], c=[C], rev=True)
    assert float((x_rev - X).detach().abs().max()) < 5e-15
    assert float((log_det + log_det_rev).detach().abs().max()) < 5e-15


def test_clamp_is_head_formula_not_pypi() -> None:
    """s = κ tanh(a/κ) (HEAD), not PyPI 0.2's κ tanh(a); a = 0.1 * subnet output."""
    m = AllInOneBlock([(2,)], subnet_constructor=nn.Linear, affine_clamping=2.0).double()
    with torch.no_grad():
        m.subnet.weight.zero_()
        m.subnet.bias.copy_(torch.tensor([30.0, 0.0]))  # a_s = 3, t = 0
    _, log_det = m([torch.zeros(1, 2, dtype=torch.float64)])
    s = log_det - torch.log(softplus_scale(m.global_scale)).sum()
    assert math.isclose(float(s.detach()), 2.0 * math.tanh(1.5), abs_tol=1e-12)


# ------------------------------------------------------------------------------ global affine

G0 = {"SIGMOID": -0.197225, "SOFTPLUS": 9.986479, "EXP": 0.0}
NAIVE_G0 = {
    "SIGMOID": lambda v: 2.0 - math.log(10.0 / v - 1.0),
    "SOFTPLUS": lambda v: 2.0 * math.log(math.exp(5.0 * v) - 1.0),
    "EXP": math.log,
}


@pytest.mark.parametrize("kind", sorted(G0))
def test_global_scale_init(kind: str) -> None:
    m = AllInOneBlock([(4, 2, 2)], subnet_constructor=conv_subnet, global_affine_type=kind)
    assert m.global_scale.dtype == torch.float32 and m.global_scale.shape == (1, 4, 1, 1)
    assert math.isclose(float(m.global_scale.data[0, 0]), G0[kind], abs_tol=1e-6)
    for init in (0.3, 1.0, 2.5):
        m = AllInOneBlock([(3,)], subnet_constructor=nn.Linear, global_affine_type=kind,
                          global_affine_init=init)
        want = torch.full((1, 3), NAIVE_G0[kind](init), dtype=torch.float64).float()
        assert torch.equal(m.global_scale.data, want)  # float64 value, stored float32
        scale = m.global_scale_activation(m.global_scale.double())
        torch.testing.assert_close(scale, torch.full_like(scale, init), atol=1e-6, rtol=0)
    assert isinstance(getattr(m, "softplus", None), nn.Softplus) == (kind == "SOFTPLUS")


def test_softplus_activation_matches_torch_softplus_with_threshold() -> None:
    a = torch.tensor([-5.0, 0.0, 9.99, 39.0, 41.0, 100.0], dtype=torch.float64)
    torch.testing.assert_close(softplus_scale(a), 0.1 * nn.Softplus(beta=0.5)(a))
    assert float(softplus_scale(a)[-1]) == 10.0


def test_gin_mode_is_volume_preserving_and_keeps_offset() -> None:
    torch.manual_seed(0)
    m = AllInOneBlock([(3, 4, 4)], subnet_constructor=conv_subnet, gin_block=True).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    (y, ), log_det = m([x])
    assert float(log_det.detach().abs().max()) < 1e-12
    with torch.no_grad():
        m.global_scale.add_(3.0)
    assert torch.equal(m([x])[0][0], y)  # the global scale is unused in GIN mode
    with torch.no_grad():
        m.global_offset.add_(0.5)
    torch.testing.assert_close(m([x])[0][0], y + 0.5)  # ... but the offset applies


# ----------------------------------------------- RNG order: FrEIA's draws, so seeded builds match


@pytest.mark.parametrize("householder", [0, 3])
def test_rng_order_hard(householder: int) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    m = AllInOneBlock([(6,)], subnet_constructor=dense_subnet,
                      learned_householder_permutation=householder)
    numpy_next = np.random.rand()
    torch.manual_seed(5)
    index = torch.randperm(6)
    vk = 0.2 * torch.randn(3, 6) if householder else None
    subnet = dense_subnet(3, 6)
    assert params_equal(m.subnet, subnet)
    np.random.seed(5)
    assert numpy_next == np.random.rand()  # a hard permutation never touches numpy's RNG
    if householder:
        assert torch.equal(m.vk_householder.data, vk)
        assert torch.equal(m.w_0, one_hot_matrix(index, torch.float32))  # FrEIA HEAD crashes
        assert m.w_perm is None and m.w_perm_inv is None
    else:
        assert torch.equal(m.w_perm, index) and torch.equal(m.w_perm_inv, torch.argsort(index))


@pytest.mark.parametrize("householder", [0, 2])
def test_rng_order_soft(householder: int) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    m = AllInOneBlock([(6, 3)], subnet_constructor=conv1d_subnet, permute_soft=True,
                      learned_householder_permutation=householder)
    numpy_next = np.random.rand()
    np.random.seed(5)
    w = special_ortho_group.rvs(6)  # numpy's global generator
    assert numpy_next == np.random.rand()
    torch.manual_seed(5)  # the soft draw leaves torch's generator alone
    vk = 0.2 * torch.randn(2, 6) if householder else None
    subnet = conv1d_subnet(3, 6)
    assert params_equal(m.subnet, subnet)
    w32 = torch.tensor(w, dtype=torch.float32)
    if householder:
        assert torch.equal(m.vk_householder.data, vk)
        assert torch.equal(m.w_0, w32)
    else:
        assert torch.equal(m.w_perm, w32.reshape(6, 6, 1))
        assert torch.equal(m.w_perm_inv, torch.tensor(w.T, dtype=torch.float32).reshape(6, 6, 1))


@pytest.mark.parametrize(("soft", "householder"), [(False, 0), (False, 3), (True, 0), (True, 2)])
def test_seed_draws_freias_values_from_local_generators(soft: bool, householder: int) -> None:
    """``seed=s``: the permutation (or rotation) and Householder vectors FrEIA draws after
    ``np.random.seed(s)`` and ``torch.manual_seed(s)``; numpy's global generator is untouched
    and torch's moves only by the subnet's own initialisation."""
    def build(**kwargs: object) -> AllInOneBlock:
        return AllInOneBlock([(6,)], subnet_constructor=dense_subnet, permute_soft=soft,
                             learned_householder_permutation=householder, **kwargs)

    np.random.seed(0)
    numpy_state = np.random.get_state()[1].copy()
    torch.manual_seed(0)
    seeded = build(seed=7)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    torch.manual_seed(0)
    subnet = dense_subnet(3, 6)  # the subnet alone drew from torch's global generator
    assert params_equal(seeded.subnet, subnet) and seeded.seed == 7
    np.random.seed(7)
    torch.manual_seed(7)
    reference = build()  # FrEIA's way: the global generators, seeded
    for name in ("w_perm", "w_perm_inv", "w_0", "vk_householder"):
        a, b = getattr(seeded, name, None), getattr(reference, name, None)
        assert (a is None and b is None) or torch.equal(a, b), name
    assert not torch.equal(*(build(seed=s).state_dict()[
        "w_perm" if householder == 0 else "vk_householder"] for s in (7, 8)))


# --------------------------------------------------------- state_dict layout: FrEIA's keys

I64, F32 = torch.int64, torch.float32
LAYOUTS: Dict[str, Tuple[dict, Dict[str, Tuple[Tuple[int, ...], torch.dtype]]]] = {
    "hard-image": ({}, {"global_scale": ((1, 4, 1, 1), F32), "global_offset": ((1, 4, 1, 1), F32),
                        "w_perm": ((4,), I64), "w_perm_inv": ((4,), I64)}),
    "soft-image": ({"permute_soft": True},
                   {"global_scale": ((1, 4, 1, 1), F32), "global_offset": ((1, 4, 1, 1), F32),
                    "w_perm": ((4, 4, 1, 1), F32), "w_perm_inv": ((4, 4, 1, 1), F32)}),
    "householder-image": ({"learned_householder_permutation": 3},
                          {"global_scale": ((1, 4, 1, 1), F32),
                           "global_offset": ((1, 4, 1, 1), F32),
                           "vk_householder": ((3, 4), F32), "w_0": ((4, 4), F32)}),
}


@pytest.mark.parametrize("mode", sorted(LAYOUTS))
def test_state_dict_layout(mode: str) -> None:
    kwargs, expected = LAYOUTS[mode]
    m = AllInOneBlock([(4, 3, 3)], subnet_constructor=conv_subnet, **kwargs)
    state = {k: (tuple(v.shape), v.dtype) for k, v in m.state_dict().items()
             if not k.startswith("subnet.")}
    assert state == expected
    assert {k for k in m.state_dict() if k.startswith("subnet.")} == {
        f"subnet.{k}" for k in conv_subnet(2, 4).state_dict()}
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == ({"w_0"} if "vk_householder" in expected else {"w_perm", "w_perm_inv"})


def test_vector_state_dict_shapes() -> None:
    m = AllInOneBlock([(5,)], subnet_constructor=nn.Linear, permute_soft=True)
    assert m.global_scale.shape == (1, 5) and m.w_perm.shape == (5, 5)


def test_attributes() -> None:
    m = AllInOneBlock([(5, 2)], [(3, 2), (1, 2)], conv1d_subnet, affine_clamping=1.5,
                      reverse_permutation=True, learned_householder_permutation=2)
    assert (m.in_channels, m.clamp, m.GIN, m.reverse_pre_permute, m.householder) == (
        5, 1.5, False, True, 2)
    assert (m.splits, m.conditional, m.condition_channels) == ([3, 2], True, 4)
    assert (m.input_rank, m.sum_dims, m.last_jac) == (1, (1, 2), None)
    assert m.subnet[0].in_channels == 7 and m.subnet[-1].out_channels == 4
    assert AllInOneBlock(((2,),), subnet_constructor=nn.Linear).dims_in == [(2,)]
    assert m.output_dims([(5, 2)]) == [(5, 2)]


# -------------------------------------------------------------------------- kernels and paths


def test_hard_path_is_an_index_gather_for_any_rank() -> None:
    m = AllInOneBlock([(3, 2, 2, 2, 2)], subnet_constructor=ChannelMLP).double()
    assert m.permute_function is permute_channels
    x = torch.randn(2, 3, 2, 2, 2, 2, dtype=torch.float64)
    (z,), log_det = m([x])
    (x_rev,), log_det_rev = m([z], rev=True)
    torch.testing.assert_close(x_rev, x)
    torch.testing.assert_close(log_det, -log_det_rev)


@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_matrix_kernel_matches_gather(rank: int) -> None:
    index = torch.tensor([2, 0, 3, 1])
    x = torch.randn(2, 4, *([3] * rank))
    op = channel_matrix_function(rank)
    kernel = matrix_kernel(one_hot_matrix(index, torch.float32), rank)
    torch.testing.assert_close(op(x, kernel), permute_channels(x, index))
    torch.testing.assert_close(permute_channels(x, index), x[:, index])
    assert torch.equal(one_hot_to_index(kernel), index)


def test_one_hot_to_index_rejects_non_permutations() -> None:
    assert one_hot_to_index(torch.eye(3) * 0.5) is None
    assert one_hot_to_index(torch.ones(3, 3)) is None
    assert one_hot_to_index(torch.zeros(3, 4)) is None


def test_householder_product_matches_dense_reflections() -> None:
    torch.manual_seed(0)
    w0 = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0]
    v = torch.randn(3, 5, dtype=torch.float64)
    dense = w0
    for vk in v:
        dense = dense @ (torch.eye(5, dtype=torch.float64) - 2 * torch.outer(vk, vk) / vk.dot(vk))
    w = householder_product(w0, v)
    torch.testing.assert_close(w, dense)
    torch.testing.assert_close(w @ w.T, torch.eye(5, dtype=torch.float64))


def test_householder_matrix_computed_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[int] = []

    def counting(w0: Tensor, v: Tensor) -> Tensor:
        calls.append(1)
        return householder_product(w0, v)

    monkeypatch.setattr(aio_module, "householder_product", counting)
    m = AllInOneBlock([(4,)], subnet_constructor=dense_subnet, reverse_permutation=True,
                      learned_householder_permutation=2)
    z, _ = m([torch.randn(3, 4)])
    m(z, rev=True)
    assert len(calls) == 2
    copy.deepcopy(m)  # no per-call tensor is kept on the module (FrEIA stored W in w_perm)
    assert m.w_perm is None


def test_jac_false_still_returns_batch_log_det() -> None:
    m = AllInOneBlock([(4,)], subnet_constructor=dense_subnet)
    _, log_det = m([torch.randn(3, 4)], jac=False)
    assert log_det.shape == (3,)


@pytest.mark.parametrize("kwargs", [{}, {"permute_soft": True},
                                    {"learned_householder_permutation": 2}])
def test_pickles(kwargs: dict) -> None:  # no lambdas or closures are stored on the module
    m = AllInOneBlock([(4, 3)], subnet_constructor=conv1d_subnet, **kwargs)
    x = torch.randn(2, 4, 3)
    clone = pickle.loads(pickle.dumps(m))
    assert torch.equal(clone([x])[0][0], m([x])[0][0])


# --------------------------------------------------------------------------------------- errors


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match="subnet_constructor"):
        AllInOneBlock([(4,)])
    with pytest.raises(ValueError, match=r'"SIGMOID", "SOFTPLUS" or "EXP".*TANH'):
        AllInOneBlock([(4,)], subnet_constructor=nn.Linear, global_affine_type="TANH")
    with pytest.raises(ValueError, match="global_affine_init"):
        AllInOneBlock([(4,)], subnet_constructor=nn.Linear, global_affine_type="SIGMOID",
                      global_affine_init=10.0)
    for kwargs in ({"permute_soft": True}, {"learned_householder_permutation": 1}):
        with pytest.raises(ValueError, match=r"Data is 5D\. Must be 1D-4D"):
            AllInOneBlock([(2, 2, 2, 2, 2)], subnet_constructor=ChannelMLP, **kwargs)
    with pytest.raises(ValueError, match="1 input"):
        AllInOneBlock([(4,), (4,)], subnet_constructor=nn.Linear)
    with pytest.raises(ValueError, match="learned_householder_permutation"):
        AllInOneBlock([(4,)], subnet_constructor=nn.Linear, learned_householder_permutation=-1)
    with pytest.raises(ValueError, match="channel axis"):
        AllInOneBlock([()], subnet_constructor=nn.Linear)


@pytest.mark.parametrize("dims_c", [[(2, 3, 3)], [(2, 4, 4), (1, 3, 3)], [(2, 4)]])
def test_condition_shape_mismatch_at_construction(dims_c: list) -> None:
    """Conditions share the input's extents or are vectors (broadcast over the image)."""
    with pytest.raises(InvertibleAssertionError, match=r"condition \d") as info:
        AllInOneBlock([(3, 4, 4)], dims_c, subnet_constructor=conv_subnet)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, ValueError)


def test_wrong_channel_count_or_rank_is_runtime_error_both_directions() -> None:
    """FrEIA raised RuntimeError for a wrong input shape; other extents are fine (any size)."""
    m = AllInOneBlock([(5,)], subnet_constructor=dense_subnet)
    for rev, what in ((False, "input"), (True, "reverse input")):
        with pytest.raises(RuntimeError, match=rf"AllInOneBlock: {what} must have shape "
                                               r"\(B, 5\), got shape \(2, 4\)"):
            m([torch.randn(2, 4)], rev=rev)
    image = AllInOneBlock([(3, 4, 4)], subnet_constructor=conv_subnet)
    image([torch.randn(2, 3, 7, 2)])
    with pytest.raises(RuntimeError, match=r"\(B, 3, \*, \*\), got shape \(2, 3, 4\)"):
        image([torch.randn(2, 3, 4)])


def test_call_errors() -> None:
    m = AllInOneBlock([(3, 4, 4)], [(2, 4, 4)], subnet_constructor=conv_subnet)
    x, c = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 4, 4)
    with pytest.raises(ValueError, match=r"AllInOneBlock takes 1 input tensor.*got 2"):
        m([x, x], c=[c])
    with pytest.raises(ValueError, match="bare tensor"):
        m(x, c=[c])
    with pytest.raises(ValueError, match=r"takes 1 condition.*got 0"):
        m([x])
    with pytest.raises(ValueError, match=r"takes 1 condition.*got 2"):
        m([x], c=[c, c])
    with pytest.raises(ValueError, match=r"condition must have shape \(B, 2, \*, \*\)"):
        m([x], c=[torch.randn(2, 1, 4, 4)])
    with pytest.raises(ValueError, match=r"condition 0 .* must have the input's extents"):
        m([x], c=[torch.randn(2, 2, 4, 5)])
    plain = AllInOneBlock([(3, 4, 4)], subnet_constructor=conv_subnet)
    with pytest.raises(ValueError, match="takes no conditions"):
        plain([x], c=[c])
    with pytest.raises(ValueError, match="1 input"):
        plain.output_dims([(3, 4, 4), (3, 4, 4)])


def test_soft_permutation_warns_above_512_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aio_module, "random_rotation", np.eye)  # the real draw is slow
    with pytest.warns(UserWarning, match="soft permutation"):
        AllInOneBlock([(513,)], subnet_constructor=nn.Linear, permute_soft=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AllInOneBlock([(512,)], subnet_constructor=nn.Linear, permute_soft=True)
        AllInOneBlock([(600,)], subnet_constructor=nn.Linear)


# ------------------------------------------------------------------- PyPI 0.2 legacy checkpoints


def legacy_state(state: Dict[str, Tensor], prefix: str, rank: int) -> Dict[str, Tensor]:
    """``state`` with the hard permutation stored as PyPI 0.2 did: one-hot float kernels."""
    out = dict(state)
    for name in ("w_perm", "w_perm_inv"):
        out[prefix + name] = matrix_kernel(one_hot_matrix(state[prefix + name]), rank)
    return out


@pytest.mark.parametrize(("dims", "subnet"), [((4,), dense_subnet), ((4, 3, 3), conv_subnet)])
def test_legacy_one_hot_permutation_loads(dims: Tuple[int, ...], subnet) -> None:
    torch.manual_seed(0)
    old = AllInOneBlock([dims], subnet_constructor=subnet)
    torch.manual_seed(1)
    new = AllInOneBlock([dims], subnet_constructor=subnet)
    new.load_state_dict(legacy_state(old.state_dict(), "", len(dims) - 1))
    assert new.w_perm.dtype == torch.int64 and torch.equal(new.w_perm, old.w_perm)
    assert torch.equal(new.w_perm_inv, old.w_perm_inv)
    x = torch.randn(2, *dims)
    assert torch.equal(new([x])[0][0], old([x])[0][0])


def test_legacy_load_is_prefix_aware() -> None:
    torch.manual_seed(0)
    old = nn.ModuleDict({"flow": nn.ModuleList([nn.Identity(), AllInOneBlock(
        [(4, 3, 3)], subnet_constructor=conv_subnet)])})
    torch.manual_seed(1)
    new = copy.deepcopy(old)
    for p in new.parameters():
        if p.is_floating_point():
            p.data.add_(1.0)
    with torch.no_grad():
        new["flow"][1].w_perm.copy_(torch.arange(4))
    state = legacy_state(old.state_dict(), "flow.1.", 2)
    assert state["flow.1.w_perm"].shape == (4, 4, 1, 1)
    new.load_state_dict(state)
    assert torch.equal(new["flow"][1].w_perm, old["flow"][1].w_perm)


def test_legacy_load_rejects_non_permutation_matrix() -> None:
    m = AllInOneBlock([(4,)], subnet_constructor=dense_subnet)
    state = m.state_dict()
    state["w_perm"] = torch.full((4, 4), 0.25)
    with pytest.raises(RuntimeError, match="w_perm"):
        m.load_state_dict(state)


def test_soft_and_householder_state_loads_unchanged() -> None:
    for kwargs in ({"permute_soft": True}, {"learned_householder_permutation": 2}):
        a = AllInOneBlock([(4,)], subnet_constructor=dense_subnet, **kwargs)
        b = AllInOneBlock([(4,)], subnet_constructor=dense_subnet, **kwargs)
        b.load_state_dict(a.state_dict())
        assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_legacy_clamp_switch_selects_pypi_formula() -> None:
    """``legacy_clamp=True`` clamps as PyPI 0.2 (``κ tanh(a)``); the default is HEAD's."""
    import copy
    import math

    block = AllInOneBlock([(4,)], subnet_constructor=dense_subnet, affine_clamping=2.0)
    assert block.legacy_clamp is False
    a = torch.tensor([1.0])
    assert math.isclose(float(block.clamp_function(a, 2.0)), 2.0 * math.tanh(0.5), rel_tol=1e-6)
    legacy = AllInOneBlock([(4,)], subnet_constructor=dense_subnet, legacy_clamp=True)
    assert legacy.legacy_clamp is True
    assert math.isclose(float(legacy.clamp_function(a, 2.0)), 2.0 * math.tanh(1.0), rel_tol=1e-6)
    assert copy.deepcopy(legacy).legacy_clamp is True
    assert set(legacy.state_dict()) == set(block.state_dict())


# ------------------------------------------------------------------- precision and dtypes


def random_block(dims: Tuple[int, ...], kwargs: Dict, cond: bool) -> AllInOneBlock:
    """A float64 block with a random global affine map (so its gradients are not trivial)."""
    torch.manual_seed(3)
    subnet = dense_subnet if len(dims) == 1 else ChannelMLP
    dims_c = [(2, *dims[1:])] if cond else []
    block = AllInOneBlock([dims], dims_c, subnet_constructor=subnet, **kwargs).double()
    with torch.no_grad():
        block.global_scale.add_(0.3 * torch.randn_like(block.global_scale))
        block.global_offset.normal_()
    return block


def test_compile_fullgraph() -> None:
    """``torch.compile(fullgraph=True)`` traces the block without a graph break, both ways."""
    block = random_block((6,), {}, cond=True).float()
    compiled = torch.compile(block, fullgraph=True, backend="eager")
    x, c = torch.randn(4, 6, requires_grad=True), torch.randn(4, 2)
    (y, ), ld = compiled([x], [c])
    (y_ref,), ld_ref = block([x], [c])
    torch.testing.assert_close((y, ld), (y_ref, ld_ref))
    g = torch.autograd.grad((y.square().sum() - ld.sum()), x)[0]
    g_ref = torch.autograd.grad((y_ref.square().sum() - ld_ref.sum()), x)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        (x_back,), _ = compiled([y_ref], [c], rev=True)
    torch.testing.assert_close(x_back, x.detach(), rtol=1e-5, atol=1e-5)


class Bf16Subnet(nn.Module):
    """A float32 MLP whose output is rounded to bf16, as a bf16 subnet under autocast gives."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = ChannelMLP(c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).to(torch.bfloat16)


def test_bf16_subnet_output_log_det_is_summed_in_float32() -> None:
    """The bf16 log-scale's 2048 elements per sample are summed in float32 (a bf16 sum would
    be off by about 1e-2 relative)."""
    torch.manual_seed(0)
    block = AllInOneBlock([(64, 8, 8)], subnet_constructor=Bf16Subnet)
    x = torch.randn(2, 64, 8, 8)
    (y,), ld = block([x])
    assert y.dtype == ld.dtype == torch.float32
    a = 0.1 * block.subnet(x[:, :32])
    s = block.clamp_function(a[:, :32], 2.0).double()  # bf16 values, as the block has them
    expected = s.sum(dim=(1, 2, 3)) + 64 * torch.log(softplus_scale(block.global_scale)).sum()
    torch.testing.assert_close(ld.double(), expected, rtol=1e-6, atol=1e-5)


def test_autocast_bf16_nll_close_to_float32() -> None:
    """NLL of a bf16-autocast forward vs float32: |ΔNLL| / |NLL| <= 1e-4 (measured 0.5e-6 to
    4e-6 over seeds 0-4 with this 3-block flow); the log-det stays float32."""
    torch.manual_seed(0)
    blocks = [AllInOneBlock([(64,)], subnet_constructor=dense_subnet) for _ in range(3)]
    x = torch.randn(256, 64)

    def nll() -> Tensor:
        z, ld = x, torch.zeros(256)
        for b in blocks:
            (z,), j = b([z])
            ld = ld + j
        assert ld.dtype == torch.float32
        return (0.5 * z.square().sum(1) - ld).mean() / 64

    with torch.no_grad():
        reference = nll()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = nll()
    assert abs(float(low - reference)) <= 1e-4 * abs(float(reference))


def test_dtypes_under_autocast() -> None:
    """bf16 data with float32 parameters under autocast: outputs and log-dets promote like
    PyTorch (float32), with and without gradients, both ways."""
    torch.manual_seed(0)
    block = AllInOneBlock([(8,)], subnet_constructor=Float32Subnet)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (y,), ld = block([x.float().requires_grad_()])
        with torch.no_grad():
            (y0,), ld0 = block([x])
            (x1,), ld1 = block([y0], rev=True)
    assert [t.dtype for t in (y, ld, y0, ld0, x1, ld1)] == [torch.float32] * 6


def test_other_dtype_than_the_parameters_is_rejected_outside_autocast() -> None:
    """As nn.Linear: bf16 data to float32 parameters is a TypeError (no autocast)."""
    block = AllInOneBlock([(8,)], [(2,)], subnet_constructor=Float32Subnet)
    x, c = torch.randn(4, 8), torch.randn(4, 2)
    with pytest.raises(TypeError, match=r"AllInOneBlock: input has dtype torch.bfloat16.*float32"):
        block([x.bfloat16()], [c])
    with pytest.raises(TypeError, match=r"AllInOneBlock: condition has dtype torch.float64"):
        block([x], [c.double()], rev=True)


def test_global_log_det_counts_the_positions_of_the_call() -> None:
    """At any image size the log-det is Σ s + n_pix Σ_c ln Ψ(g_c) with the call's n_pix."""
    block = random_block((3, 4, 4), {}, cond=False)
    for extents in ((4, 4), (2, 7), (1, 1)):
        x = torch.randn(2, 3, *extents, dtype=torch.float64)
        _, ld = block([x])
        a = 0.1 * block.subnet(x[:, :2])
        s = 2.0 * torch.tanh(a[:, :1] / 2.0)
        scale = torch.log(block.global_scale_activation(block.global_scale)).sum()
        expected = s.sum(dim=(1, 2, 3)) + extents[0] * extents[1] * scale
        torch.testing.assert_close(ld, expected.detach(), rtol=0, atol=1e-12)
