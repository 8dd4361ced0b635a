"""Focused tests of the InvAuto layers and LearnedElementwiseScaling: FrEIA's state and draws,
errors, the reverse log-det, no debug print, the deprecated InvAutoActFixed."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cases.normalisation import APPROXIMATE_CASES
from invertible import testing as T
from invertible.modules.inv_auto_layers import (
    InvAutoAct,
    InvAutoActFixed,
    InvAutoActTwoSided,
    InvAutoConv2D,
    InvAutoFC,
    LearnedElementwiseScaling,
)

D = torch.float64
X = torch.tensor([[0.5, -1.0, 0.0, 2.0], [-0.25, 3.0, -2.0, 0.0]], dtype=D)


# --- InvAutoAct / InvAutoActFixed / InvAutoActTwoSided ---------------------------------------


def test_inv_auto_act_numerics_and_container() -> None:
    module = InvAutoAct([(4,)], slope_init=2.0).double()
    with torch.no_grad():
        module.alpha.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    alpha = module.alpha.detach()
    out, log_det = module([X])
    assert isinstance(out, list) and len(out) == 1
    expected = X * torch.exp(alpha * torch.sign(X))
    assert torch.allclose(out[0], expected, rtol=0, atol=1e-15)
    assert torch.allclose(log_det, (alpha * torch.sign(X)).sum(dim=1), atol=1e-15)
    back, log_det_rev = module(out, rev=True)
    assert torch.allclose(back[0], X, atol=1e-15) and torch.allclose(log_det_rev, -log_det)
    assert module.tensor_rank == 1


def test_inv_auto_act_defaults_and_state() -> None:
    module = InvAutoAct([(3, 4, 4)])
    assert list(module.state_dict()) == ["alpha"]
    assert module.alpha.shape == (1, 3, 1, 1) and module.alpha.requires_grad
    assert torch.allclose(module.alpha, torch.full((1, 3, 1, 1), math.log(2.0)))
    assert not InvAutoAct([(3,)], learnable=False).alpha.requires_grad
    x = torch.tensor([[1.0, -1.0, 2.0]])
    y = InvAutoAct([(3,)])([x])[0][0]
    assert torch.allclose(y, torch.tensor([[2.0, -0.5, 4.0]]))


def test_inv_auto_act_fixed_warns_and_stays_learnable() -> None:
    """FrEIA's InvAutoActFixed only warns; its slopes stay learnable by default, as here."""
    with pytest.warns(UserWarning, match="please use InvAutoAct with the learnable=False"):
        module = InvAutoActFixed([(3,)], slope_init=1.5)
    assert isinstance(module, InvAutoAct) and module.alpha.requires_grad
    assert torch.allclose(module.alpha, torch.full((1, 3), math.log(1.5)))
    with pytest.warns(UserWarning, match="Deprecated"):
        assert not InvAutoActFixed([(3,)], learnable=False).alpha.requires_grad


def test_two_sided_numerics() -> None:
    module = InvAutoActTwoSided([(4,)], init_pos=3.0, init_neg=0.25).double()
    a_pos, a_neg = math.log(3.0), math.log(0.25)
    out, log_det = module([X])
    ls = torch.full_like(X, 0.5 * (a_pos + a_neg))
    ls[X > 0], ls[X < 0] = a_pos, a_neg
    assert torch.allclose(out[0], X * torch.exp(ls), atol=1e-15)
    assert torch.allclose(log_det, ls.sum(dim=1), atol=1e-14)
    back, log_det_rev = module(out, rev=True)
    assert torch.allclose(back[0], X, atol=1e-15) and torch.allclose(log_det_rev, -log_det)
    assert list(module.state_dict()) == ["alpha_pos", "alpha_neg"]
    frozen = InvAutoActTwoSided([(2, 3, 3)], learnable=False)
    assert frozen.alpha_pos.shape == (1, 2, 1, 1)
    assert not frozen.alpha_pos.requires_grad and not frozen.alpha_neg.requires_grad


# --- LearnedElementwiseScaling ---------------------------------------------------------------


def test_elementwise_scaling_reverse_log_det_is_negated() -> None:
    """FrEIA returned +sum(s) with shape (1,) in both directions; here ±sum(s) of shape (B,)."""
    module = LearnedElementwiseScaling([(2, 3)], init_scale=2.0).double()
    assert module.s.shape == (1, 2, 3) and list(module.state_dict()) == ["s"]
    assert torch.allclose(module.s, torch.full((1, 2, 3), math.log(2.0), dtype=D))
    x = torch.randn(4, 2, 3, dtype=D)
    out, log_det = module([x])
    assert isinstance(out, list) and torch.allclose(out[0], 2.0 * x)
    assert log_det.shape == (4,)
    assert torch.allclose(log_det, torch.full((4,), 6 * math.log(2.0), dtype=D))
    back, log_det_rev = module(out, rev=True)
    assert torch.allclose(back[0], x)
    assert log_det_rev.shape == (4,) and torch.allclose(log_det_rev, -log_det)


# --- a (B,) log-det also with jac=False, non-positive inits, conditions --------------------


@pytest.mark.parametrize(
    "module",
    [InvAutoAct([(3,)]), InvAutoActTwoSided([(3,)]), LearnedElementwiseScaling([(3,)])],
)
def test_jac_false_still_returns_batch_log_det(module: nn.Module) -> None:
    x = torch.randn(5, 3)
    for rev in (False, True):
        out, log_det = module([x], rev=rev, jac=False)
        assert isinstance(log_det, torch.Tensor) and log_det.shape == (5,)
        assert torch.equal(log_det, module([x], rev=rev)[1])


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        (lambda: InvAutoAct([(3,)], slope_init=0.0), "slope_init"),
        (lambda: InvAutoActTwoSided([(3,)], init_neg=-1.0), "init_neg"),
        (lambda: LearnedElementwiseScaling([(3,)], init_scale=0.0), "init_scale"),
        (lambda: InvAutoAct([(3,)], dims_c=[(2,)]), "conditions"),
        (lambda: InvAutoFC([(3,)], dims_c=[(2,)]), "conditions"),
        (lambda: InvAutoAct([(3,), (3,)]), "1 input"),
        (lambda: LearnedElementwiseScaling([()]), "channel axis"),
    ],
)
def test_constructor_errors(factory, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        factory()


# --- InvAutoFC -------------------------------------------------------------------------------


def test_fc_rng_order_and_state() -> None:
    """FrEIA's draws: randn(out, in) scaled by sqrt(1/out), then randn(1, out)."""
    torch.manual_seed(3)
    module = InvAutoFC([(4,)], dims_out=6)
    torch.manual_seed(3)
    weights = math.sqrt(1 / 6) * torch.randn(6, 4)
    bias = torch.randn(1, 6)
    assert torch.equal(module.weights, weights) and torch.equal(module.bias, bias)
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == [
        ("weights", (6, 4)),
        ("bias", (1, 6)),
    ]
    assert module.output_dims([(4,)]) == [(6,)] and module.dims_in == [(4,)]


def test_fc_numerics_warning_and_no_print(capsys: pytest.CaptureFixture) -> None:
    """No debug print (FrEIA printed shapes); a UserWarning on every call with jac=True, none
    with jac=False."""
    module = InvAutoFC([(3,)], dims_out=5).double()
    assert capsys.readouterr().out == ""
    x = torch.randn(2, 3, dtype=D)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out, log_det = module([x])
        back, log_det_rev = module(out, rev=True)
        module([x], jac=False)
    assert [w.category for w in record] == [UserWarning, UserWarning]
    assert "not tractable" in str(record[0].message)
    w, b = module.weights.detach(), module.bias.detach()
    assert isinstance(out, list) and torch.allclose(out[0], x @ w.t() + b)
    assert torch.allclose(back[0], (out[0] - b) @ w)
    assert torch.equal(log_det, torch.zeros(2, dtype=D)) and log_det_rev.shape == (2,)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("dims", [[(3, 4, 4)], [(3,), (3,)]])
def test_fc_shape_errors(dims: list) -> None:
    with pytest.raises(ValueError, match="InvAutoFC"):
        InvAutoFC(dims)


# --- InvAutoConv2D ---------------------------------------------------------------------------


def test_conv_rng_order_numerics_and_state() -> None:
    """FrEIA's draws: nn.Conv2d's default init, then randn(1, C_out, 1, 1)."""
    torch.manual_seed(5)
    module = InvAutoConv2D([(2, 5, 5)], dims_out=(3, 5, 5)).double()
    torch.manual_seed(5)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    bias = torch.randn(1, 3, 1, 1)
    assert torch.equal(module.conv2d.weight.float(), conv.weight)
    assert torch.equal(module.bias.float(), bias)
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == [
        ("bias", (1, 3, 1, 1)),
        ("conv2d.weight", (3, 2, 3, 3)),
    ]
    x = torch.randn(2, 2, 5, 5, dtype=D)
    with pytest.warns(UserWarning, match="InvAutoConv2D"):
        out, log_det = module([x])
    w, b = module.conv2d.weight.detach(), module.bias.detach()
    assert torch.allclose(out[0], F.conv2d(x, w, padding=1) + b)
    assert torch.equal(log_det, torch.zeros(2, dtype=D))
    back, _ = module(out, rev=True, jac=False)
    assert torch.allclose(back[0], F.conv_transpose2d(out[0] - b, w, padding=1))
    assert module.output_dims([(2, 5, 5)]) == [(3, 5, 5)]


def test_conv_other_kernel_and_default_dims_out() -> None:
    module = InvAutoConv2D([(2, 6, 6)], dims_out=[4, 4, 4], kernel_size=5, padding=1)
    assert module.conv2d.weight.shape == (4, 2, 5, 5)
    out, _ = module([torch.randn(1, 2, 6, 6)], jac=False)
    assert out[0].shape == (1, 4, 4, 4)
    back, _ = module(out, rev=True, jac=False)
    assert back[0].shape == (1, 2, 6, 6)
    assert InvAutoConv2D([(2, 6, 6)]).output_dims([(2, 6, 6)]) == [(2, 6, 6)]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"dims_in": [(4,)]}, r"\(C, H, W\)"),
        ({"dims_in": [(2, 4, 4), (2, 4, 4)]}, "1 input"),
        ({"dims_in": [(2, 4, 4)], "kernel_size": 5}, "does not match"),
        ({"dims_in": [(2, 4, 4)], "dims_out": (3, 5, 4)}, "does not match"),
    ],
)
def test_conv_shape_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        InvAutoConv2D(**kwargs)


# --- random-init InvAuto layers: the properties that do hold ---------------------------------


@pytest.fixture(params=APPROXIMATE_CASES, ids=[c.id for c in APPROXIMATE_CASES])
def approximate(request: pytest.FixtureRequest):
    case = request.param
    torch.manual_seed(0)
    np.random.seed(0)
    module = case.build().double()
    gen = torch.Generator().manual_seed(1)
    return module, case.sample_x(gen, case.batch, module.dims_in)


@pytest.mark.filterwarnings("ignore:.*not tractable:UserWarning")
def test_approximate_layers_hold_the_exact_properties(approximate) -> None:
    """Shapes, jac=False, gradients, batch independence, state, pickling, inputs unchanged."""
    module, xs = approximate
    T.check_output_shapes(module, xs, None, module.output_dims(module.dims_in))
    T.check_jac_false(module, xs, None)
    T.check_gradients(module, xs, None)
    T.check_batch_independence(module, xs, None)
    torch.manual_seed(7)
    T.check_state_dict_round_trip(module, type(module)(**_config(module)).double(), xs, None)
    T.check_pickle_round_trip(module, xs, None)
    T.check_inputs_unchanged(module, xs, None)


@pytest.mark.filterwarnings("ignore:.*not tractable:UserWarning")
def test_approximate_layers_are_not_exact_inverses_at_random_init(approximate) -> None:
    """Documents why these cases are not in CASES: the transpose is not the inverse."""
    module, xs = approximate
    with pytest.raises(AssertionError, match="error"):
        T.check_round_trip(module, xs, None, atol=1e-3)


def _config(module: nn.Module) -> dict:
    """Constructor arguments of an approximate case's layer (both classes take these)."""
    return {"dims_in": module.dims_in, "dims_out": module.dims_out}
