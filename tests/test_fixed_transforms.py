"""Focused tests of the fixed transforms: FrEIA's state and random draws, errors, the sigmoid's
log-det, a local generator for seeded permutations."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from invertible.modules.fixed_transforms import (
    Fixed1x1Conv,
    FixedLinearTransform,
    InvertibleSigmoid,
    PermuteRandom,
)

M3 = torch.tensor([[2.0, 1.0, 0.0], [0.5, -1.0, 0.3], [0.0, 0.4, 1.5]], dtype=torch.float64)


# --- PermuteRandom -------------------------------------------------------------------------


def test_permute_seed_matches_freia_and_leaves_global_rng_alone() -> None:
    """The same permutation as FrEIA's np.random.seed(s), from a local generator: a seed never
    reseeds numpy's global generator (docs/differences.rst, "Design decisions")."""
    np.random.seed(11)
    torch.manual_seed(11)
    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    module = PermuteRandom([(10,)], seed=123)
    after_np, after_torch = np.random.get_state(), torch.get_rng_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_state[1:3], after_np[1:3]))
    assert np_state[3:] == after_np[3:]
    assert torch.equal(torch_state, after_torch)
    np.random.seed(123)  # what FrEIA does globally
    expected = np.random.permutation(10)
    assert module.perm.tolist() == expected.tolist()
    assert module.perm.tolist() == np.random.RandomState(123).permutation(10).tolist()
    assert module.seed == 123


def test_permute_without_seed_draws_from_global_numpy() -> None:
    """As in FrEIA: one np.random.permutation(C) from numpy's global generator, no torch draw."""
    np.random.seed(4)
    torch.manual_seed(4)
    torch_state = torch.get_rng_state()
    module = PermuteRandom([(7, 2)])
    next_draw = np.random.rand()
    np.random.seed(4)
    assert module.perm.tolist() == np.random.permutation(7).tolist()
    assert np.random.rand() == next_draw
    assert torch.equal(torch_state, torch.get_rng_state())


def test_permute_state_dict() -> None:
    module = PermuteRandom([(6, 3, 3)], seed=0)
    state = module.state_dict()
    assert list(state) == ["perm", "perm_inv"]
    for key in state:
        assert state[key].dtype == torch.int64 and state[key].shape == (6,)
        assert isinstance(getattr(module, key), torch.nn.Parameter)
        assert not getattr(module, key).requires_grad
    assert torch.equal(module.perm[module.perm_inv], torch.arange(6))
    assert not list(p for p in module.parameters() if p.requires_grad)
    assert module.in_channels == 6


def test_permute_gathers_channels_of_any_rank() -> None:
    module = PermuteRandom([(5, 2, 3)], seed=2)
    x = torch.randn(4, 5, 2, 3)
    out, log_det = module([x])
    assert isinstance(out, list)
    assert torch.equal(out[0], x[:, module.perm])
    assert log_det.shape == (4,) and log_det.dtype == x.dtype and not log_det.any()
    back, log_det_rev = module(out, rev=True)
    assert torch.equal(back[0], x) and log_det_rev.shape == (4,)


def test_permute_has_no_condition_parameter() -> None:
    """FrEIA's signature has no ``c``, so frameworks must never pass one to PermuteRandom."""
    params = list(inspect.signature(PermuteRandom.forward).parameters)
    assert params == ["self", "x", "rev", "jac"]
    with pytest.raises(ValueError, match="takes no conditions"):
        PermuteRandom([(4,)], dims_c=[(2,)])


def test_permute_rejects_several_inputs() -> None:
    with pytest.raises(ValueError, match="1 input"):
        PermuteRandom([(4,), (4,)])
    with pytest.raises(ValueError, match="1 input"):
        PermuteRandom([(4,)]).output_dims([(4,), (4,)])


# --- FixedLinearTransform ------------------------------------------------------------------


def test_linear_computes_M_x_plus_b_with_freia_buffers() -> None:
    b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    module = FixedLinearTransform([(3,)], M=M3, b=b)
    state = module.state_dict()
    assert list(state) == ["M", "M_inv", "b", "logDetM"]
    assert not list(module.parameters())
    assert torch.equal(state["M"], M3.t())
    assert torch.allclose(state["M_inv"], torch.linalg.inv(M3.t()))
    assert state["b"].shape == (1, 3) and state["logDetM"].shape == ()
    assert math.isclose(float(state["logDetM"]), math.log(abs(float(torch.det(M3)))))
    x = torch.randn(5, 3, dtype=torch.float64)
    (y,), log_det = module([x])
    assert torch.allclose(y, (M3 @ x.t()).t() + b)
    assert log_det.shape == (5,) and torch.allclose(log_det, state["logDetM"].expand(5))
    (x_back,), log_det_rev = module([y], rev=True)
    assert torch.allclose(x_back, x) and torch.allclose(log_det_rev, -log_det)


def test_linear_without_b_stores_zero_scalar() -> None:
    module = FixedLinearTransform([(3,)], M=M3)
    assert module.b.shape == () and float(module.b) == 0.0


def test_linear_errors() -> None:
    with pytest.raises(ValueError, match="Need to specify the M argument"):
        FixedLinearTransform([(3,)])
    with pytest.raises(ValueError, match=r"\(3, 3\).*got shape \(2, 3\)"):
        FixedLinearTransform([(3,)], M=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(4, 4\).*got shape \(3, 3\)"):
        FixedLinearTransform([(4,)], M=M3)
    singular = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(ValueError, match="not invertible"):
        FixedLinearTransform([(2,)], M=singular)
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        FixedLinearTransform([(3,)], M=M3, b=torch.ones(2))
    with pytest.raises(ValueError, match="vectors"):
        FixedLinearTransform([(3, 4, 4)], M=M3)


# --- Fixed1x1Conv --------------------------------------------------------------------------


def test_1x1conv_applies_M_transposed_per_pixel() -> None:
    """As FrEIA's, the conv applies Mᵀ at every pixel, unlike FixedLinearTransform's M x."""
    module = Fixed1x1Conv([(3, 2, 4)], M=M3)
    x = torch.randn(2, 3, 2, 4, dtype=torch.float64)
    (y,), log_det = module([x])
    expected = torch.einsum("ij,bihw->bjhw", M3, x)  # y_j = sum_i M[i, j] x_i = (Mᵀ x)_j
    assert torch.allclose(y, expected)
    log_abs_det = math.log(abs(float(torch.det(M3))))
    assert log_det.shape == (2,)
    assert torch.allclose(log_det, torch.full((2,), 8 * log_abs_det, dtype=torch.float64))
    (x_back,), log_det_rev = module([y], rev=True)
    assert torch.allclose(x_back, x) and torch.allclose(log_det_rev, -log_det)


def test_1x1conv_state_is_frozen_parameters() -> None:
    module = Fixed1x1Conv([(3, 2, 2)], M=M3)
    state = module.state_dict()
    assert list(state) == ["M", "M_inv", "logDetM"]
    assert state["M"].shape == (3, 3, 1, 1) and state["M_inv"].shape == (3, 3, 1, 1)
    assert state["logDetM"].shape == ()
    assert torch.equal(state["M"][:, :, 0, 0], M3.t())
    for name in state:
        param = getattr(module, name)
        assert isinstance(param, torch.nn.Parameter) and not param.requires_grad


def test_1x1conv_errors() -> None:
    with pytest.raises(ValueError, match="Need to specify the M argument"):
        Fixed1x1Conv([(3, 2, 2)])
    with pytest.raises(ValueError, match=r"images \(C, H, W\), got shape \(3,\)"):
        Fixed1x1Conv([(3,)], M=M3)
    with pytest.raises(ValueError, match=r"\(2, 2\).*got shape \(3, 3\)"):
        Fixed1x1Conv([(2, 2, 2)], M=M3)
    with pytest.raises(ValueError, match="not invertible"):
        Fixed1x1Conv([(2, 2, 2)], M=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="images"):
        Fixed1x1Conv([(3, 2, 2)], M=M3).output_dims([(3, 2)])


# --- InvertibleSigmoid ---------------------------------------------------------------------


def test_sigmoid_always_returns_outputs_and_log_det() -> None:
    """FrEIA returned only ``(y,)`` with ``jac=False``; here always ``((y,), log_det)``."""
    module = InvertibleSigmoid([(4,)])
    x = torch.randn(3, 4)
    for rev in (False, True):
        result = module([torch.sigmoid(x) if rev else x], jac=False, rev=rev)
        assert len(result) == 2 and isinstance(result[0], tuple)
        assert result[1].shape == (3,)


def test_sigmoid_image_log_det_sums_all_non_batch_dims() -> None:
    """FrEIA summed dim 1 only, returning (B, H, W) for images; here all non-batch dims."""
    module = InvertibleSigmoid([(2, 3, 3)])
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    (y,), log_det = module([x])
    expected = torch.log(y * (1 - y)).sum(dim=(1, 2, 3))
    assert log_det.shape == (4,) and torch.allclose(log_det, expected)


def test_sigmoid_log_det_is_stable() -> None:
    """ln σ'(x) stays finite for large |x| (about -|x|), where FrEIA's overflowed."""
    module = InvertibleSigmoid([(2,)])
    x = torch.tensor([[100.0, -100.0], [800.0, -30.0]])
    _, log_det = module([x])
    assert torch.isfinite(log_det).all()
    assert torch.allclose(log_det, torch.tensor([-200.0, -830.0]), rtol=1e-6)


def test_sigmoid_reverse_is_logit_and_nan_outside_unit_interval() -> None:
    module = InvertibleSigmoid([(3,)], dims_c=[(2,)])
    y = torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64)
    (x,), log_det_rev = module([y], c=[torch.zeros(1, 2, dtype=torch.float64)], rev=True)
    assert torch.allclose(x, torch.log(y / (1 - y)))
    assert torch.allclose(log_det_rev, -torch.log(y * (1 - y)).sum(1))
    (bad,), _ = InvertibleSigmoid([(3,)])([torch.tensor([[1.5, -0.5, 0.5]])], rev=True)
    assert bool(torch.isnan(bad[0, :2]).all()) and not bool(torch.isnan(bad[0, 2]))


def test_sigmoid_has_no_state_and_freia_signature() -> None:
    module = InvertibleSigmoid([(3,)])
    assert not module.state_dict()
    params = list(inspect.signature(InvertibleSigmoid.forward).parameters)
    assert params == ["self", "x_or_z", "c", "rev", "jac"]
    with pytest.raises(ValueError, match="1 input"):
        InvertibleSigmoid([(3,), (3,)])


@pytest.mark.parametrize("cls", [FixedLinearTransform, Fixed1x1Conv])
def test_linear_maps_have_no_condition_parameter(cls: type) -> None:
    """FrEIA's signature ``forward(x, rev=False, jac=True)``, so positional calls keep working."""
    assert list(inspect.signature(cls.forward).parameters) == ["self", "x", "rev", "jac"]
