"""Focused tests of OrthogonalTransform and HouseholderPerm: FrEIA's state and draws, errors, the
training scenario of FrEIA's tests, one matrix per sample for a conditional HouseholderPerm."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor

from invertible.modules.orthogonal import (
    HouseholderPerm,
    OrthogonalTransform,
    _fast_h,
    correct_weights,
    orth_correction,
)

F64 = torch.float64


def reflection(v: Tensor) -> Tensor:
    """``I - 2 v vᵀ / |v|²``, written out."""
    return torch.eye(v.shape[0], dtype=v.dtype) - 2.0 * torch.outer(v, v) / v.dot(v)


def explicit_product(V: Tensor) -> Tensor:
    """``H(v_0) H(v_1) ... H(v_{d-1})`` by plain matrix products."""
    result = torch.eye(V.shape[1], dtype=V.dtype)
    for v in V:
        result = result @ reflection(v)
    return result


def gram_schmidt_rows(R: Tensor) -> Tensor:
    """Classical Gram-Schmidt on the rows, written out independently as a reference."""
    R = R.clone()
    R[0] = R[0] / R[0].norm()
    for i in range(1, R.shape[0]):
        R[i] = R[i] - sum(R[j].dot(R[i]) * R[j] for j in range(i))
        R[i] = R[i] / R[i].norm()
    return R


def backward_once(module: OrthogonalTransform, x: Tensor, rev: bool = False) -> None:
    """One backward pass through the module's output (and its log-det)."""
    out, log_det = module([x], rev=rev)
    ((out[0] ** 2).sum() - log_det.sum()).backward()


# --- OrthogonalTransform ---------------------------------------------------------------------


def test_orthogonal_rng_order_appendix_b() -> None:
    """np.random.randint, then torch randn(w,w), randn(1,w) bias, randn(1,w) scaling."""
    np.random.seed(5)
    torch.manual_seed(5)
    module = OrthogonalTransform([(6,)], correction_interval=40)
    after = (np.random.rand(), torch.rand(1))
    np.random.seed(5)
    torch.manual_seed(5)
    assert module.back_counter == np.random.randint(0, 40) // 2
    A = torch.randn(6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        U = torch.svd(A + A.t())[0]  # the call FrEIA makes
    assert torch.equal(module.weights.data, U)
    assert torch.equal(module.bias.data, 0.05 * torch.randn(1, 6))
    assert torch.equal(module.scaling.data, 0.02 * torch.randn(1, 6))
    assert (np.random.rand(), torch.rand(1)) == after


def test_orthogonal_state_dict_and_attributes() -> None:
    module = OrthogonalTransform([(4,)], correction_interval=10, clamp=2.0)
    state = module.state_dict()
    assert list(state) == ["weights", "bias", "scaling"]
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes == {"weights": (4, 4), "bias": (1, 4), "scaling": (1, 4)}
    assert all(v.dtype == torch.float32 for v in state.values())
    assert all(p.requires_grad for p in module.parameters())
    assert (module.width, module.clamp, module.correction_interval) == (4, 2.0, 10)
    assert torch.allclose(module.weights @ module.weights.t(), torch.eye(4), atol=1e-5)


def test_orthogonal_forward_and_reverse_formulas() -> None:
    """z = (x W + b) e^s (bias before scaling), s = clamp 0.636 atan(scaling / clamp)."""
    module = OrthogonalTransform([(5,)], clamp=1.5).double()
    with torch.no_grad():
        module.scaling.copy_(torch.linspace(-3, 3, 5, dtype=F64).reshape(1, 5))
    x = torch.randn(3, 5, dtype=F64)
    out, log_det = module([x])
    s = 1.5 * 0.636 * torch.atan(module.scaling / 1.5)
    assert isinstance(out, list)
    assert torch.allclose(out[0], (x @ module.weights + module.bias) * torch.exp(s))
    assert log_det.shape == (3,) and log_det.dtype == F64
    assert torch.allclose(log_det, s.sum().expand(3))
    back, log_det_rev = module(out, rev=True)
    expected = (out[0] * torch.exp(-s) - module.bias) @ module.weights.t()
    assert torch.allclose(back[0], expected) and torch.allclose(back[0], x, atol=1e-5)
    assert torch.allclose(log_det_rev, -log_det)
    _, log_det_nojac = module([x], jac=False)
    assert log_det_nojac.shape == (3,)


def test_orthogonal_has_no_condition_parameter() -> None:
    """FrEIA's forward(x, rev, jac) has no c, so frameworks never pass one."""
    assert list(inspect.signature(OrthogonalTransform.forward).parameters) == [
        "self", "x", "rev", "jac"
    ]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"dims_in": [(3,), (3,)]}, "1 input"),
        ({"dims_in": [(3, 4, 4)]}, "vectors"),
        ({"dims_in": [(3,)], "dims_c": [(2,)]}, "conditions"),
        ({"dims_in": [(3,)], "correction_interval": 0}, "correction_interval"),
    ],
)
def test_orthogonal_argument_errors(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        OrthogonalTransform(**kwargs)


def test_orthogonal_output_dims_errors() -> None:
    module = OrthogonalTransform([(3,)])
    assert module.output_dims([(3,)]) == [(3,)]
    with pytest.raises(ValueError, match="1 input"):
        module.output_dims([(3,), (3,)])
    with pytest.raises(ValueError, match="vectors"):
        module.output_dims([(3, 2)])


def test_orth_correction_is_classical_gram_schmidt_in_place() -> None:
    R = torch.randn(5, 5, dtype=F64)
    expected = gram_schmidt_rows(R)
    result = orth_correction(R)
    assert result is R
    assert torch.allclose(R, expected, atol=1e-12)
    assert torch.allclose(R @ R.t(), torch.eye(5, dtype=F64), atol=1e-12)


def test_hook_fires_once_per_backward_pass_in_both_directions() -> None:
    module = OrthogonalTransform([(4,)], correction_interval=1000)
    start = module.back_counter
    x = torch.randn(3, 4)
    backward_once(module, x)
    backward_once(module, x, rev=True)
    assert module.back_counter == start + 2


def test_forward_calls_never_change_the_weights() -> None:
    """The correction is a training side effect of backward passes only."""
    module = OrthogonalTransform([(4,)], correction_interval=1)
    with torch.no_grad():
        module.weights.mul_(1.1)  # not orthogonal: a correction would change it
    before, counter = module.weights.detach().clone(), module.back_counter
    x = torch.randn(3, 4)
    for mode in (module.train, module.eval):
        mode()
        module([x])
        module([x], rev=True)
        with torch.no_grad():
            module([x])
    assert torch.equal(module.weights, before) and module.back_counter == counter


def test_correction_every_interval_with_numpy_draw() -> None:
    """After more than ``interval`` backward passes: Gram-Schmidt and a new countdown."""
    module = OrthogonalTransform([(4,)], correction_interval=12).double()
    module.back_counter = 10
    with torch.no_grad():
        module.weights.add_(0.05 * torch.randn(4, 4, dtype=F64))
    drifted = module.weights.detach().clone()
    x = torch.randn(2, 4, dtype=F64)
    backward_once(module, x)  # counter 11
    backward_once(module, x)  # counter 12: not yet > 12
    assert torch.equal(module.weights.data, drifted) and module.back_counter == 12
    np.random.seed(3)
    backward_once(module, x)  # counter 13 > 12: correct
    np.random.seed(3)
    assert module.back_counter == np.random.randint(0, 12) // 4
    assert torch.allclose(module.weights.data, gram_schmidt_rows(drifted), atol=1e-12)


def test_correction_keeps_autograd_valid() -> None:
    """The in-place edit during backward must not break the rest of the backward pass."""
    module = OrthogonalTransform([(3,)], correction_interval=1)
    module.back_counter = 5
    backward_once(module, torch.randn(4, 3))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_correct_weights_as_a_plain_function() -> None:
    module = OrthogonalTransform([(3,)], correction_interval=2)
    module.back_counter = 2
    correct_weights(module, (), ())
    assert module.back_counter == 0  # randint(0, 2) // 4
    assert torch.allclose(module.weights @ module.weights.t(), torch.eye(3), atol=1e-6)


def test_orthogonal_graph_trains_appendix_e() -> None:
    """OrthogonalTransform(100) -> PermuteRandom(seed 0) -> HouseholderPerm(10) trains by SGD."""
    from invertible.framework.graph_inn import GraphINN, InputNode, Node, OutputNode
    from invertible.modules.fixed_transforms import PermuteRandom

    torch.manual_seed(0)
    inp = InputNode(8, name="input")
    orth = Node(inp, OrthogonalTransform, {"correction_interval": 100})
    perm = Node(orth, PermuteRandom, {"seed": 0})
    house = Node(perm, HouseholderPerm, {"n_reflections": 10})
    graph = GraphINN([inp, orth, perm, house, OutputNode(house)])
    optimizer = torch.optim.SGD(graph.parameters(), lr=0.02)
    corrections, losses = 0, []
    for _ in range(250):
        x = torch.randn(16, 8)
        y, _ = graph(x)
        loss = torch.mean((y - x) ** 2)
        optimizer.zero_grad()
        counter = orth.module.back_counter
        loss.backward()
        if orth.module.back_counter != counter + 1:  # corrected during this backward pass
            corrections += 1
            weights = orth.module.weights.detach()
            assert torch.allclose(weights @ weights.t(), torch.eye(8), atol=1e-5)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert corrections >= 2


# --- HouseholderPerm -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "3"])
def test_householder_needs_a_positive_int(n: object) -> None:
    with pytest.raises(ValueError, match="reflection"):
        HouseholderPerm([(4,)], n_reflections=n)


def test_householder_single_reflection_is_supported() -> None:
    """FrEIA's default n_reflections=1 raised; one reflection is a valid orthogonal map here."""
    module = HouseholderPerm([(4,)])
    assert module.Vs.shape == (1, 4)
    x = torch.randn(2, 4)
    out, _ = module([x])
    assert torch.allclose(out[0], x @ reflection(module.Vs[0].detach()), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"dims_c": [(8,), (8,)]}, "exactly one condition"),
        ({"dims_c": [(8,)], "fixed": True}, "fixed and conditional"),
        ({"dims_c": [(7,)]}, "width \\* n_reflections"),
        ({"dims_in": [(4, 2, 2)]}, "vectors"),
        ({"dims_in": [(4,), (4,)]}, "1 input"),
    ],
)
def test_householder_argument_errors(kwargs: dict, words: str) -> None:
    kwargs = {"dims_in": [(4,)], "n_reflections": 2, **kwargs}
    with pytest.raises(ValueError, match=words):
        HouseholderPerm(**kwargs)


def test_householder_rng_order_appendix_b() -> None:
    torch.manual_seed(2)
    learned = HouseholderPerm([(5,)], n_reflections=3)
    fixed = HouseholderPerm([(5,)], n_reflections=3, fixed=True)
    torch.manual_seed(2)
    assert torch.equal(learned.Vs.data, (torch.eye(5, 3) + 0.1 * torch.randn(5, 3)).t())
    assert torch.equal(fixed.Vs.data, torch.randn(5, 3).t())
    state = torch.get_rng_state()
    HouseholderPerm([(5,)], [(15,)], n_reflections=3)
    assert torch.equal(state, torch.get_rng_state())


def test_householder_state_dict_appendix_a() -> None:
    learned = HouseholderPerm([(5,)], n_reflections=3)
    assert {k: tuple(v.shape) for k, v in learned.state_dict().items()} == {"Vs": (3, 5)}
    fixed = HouseholderPerm([(5,)], n_reflections=3, fixed=True)
    state = fixed.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "Vs": (3, 5), "W": (5, 5), "weight": (5, 5)
    }
    assert all(v.dtype == torch.float32 for v in state.values())
    assert fixed.W is fixed.weight and not fixed.W.requires_grad
    assert fixed.Vs.requires_grad  # FrEIA's Vs stays trainable (and unused) in fixed mode
    assert torch.allclose(fixed.W, explicit_product(fixed.Vs.detach()), atol=1e-6)
    assert HouseholderPerm([(5,)], [(5, 3)], n_reflections=3).state_dict() == {}


def test_fast_h_is_the_ordered_product() -> None:
    V = torch.randn(4, 6, dtype=F64)
    expected = explicit_product(V)
    for stride in (1, 2, 3, 8):
        assert torch.allclose(_fast_h(V, stride), expected, atol=1e-12)
    batched = torch.randn(3, 2, 5, 6, dtype=F64)
    out = _fast_h(batched)
    assert out.shape == (3, 2, 6, 6)
    assert torch.allclose(out[1, 0], explicit_product(batched[1, 0]), atol=1e-12)
    assert torch.allclose(out @ out.transpose(-1, -2), torch.eye(6, dtype=F64), atol=1e-12)


def test_householder_applies_x_times_w() -> None:
    module = HouseholderPerm([(5,)], n_reflections=3).double()
    x = torch.randn(4, 5, dtype=F64)
    out, log_det = module([x])
    W = explicit_product(module.Vs.detach())
    assert isinstance(out, list)
    assert torch.allclose(out[0], x @ W, atol=1e-12)
    assert log_det.shape == (4,) and log_det.dtype == F64 and not log_det.any()
    back, log_det_rev = module(out, rev=True)
    assert torch.allclose(back[0], out[0] @ W.t(), atol=1e-12)
    assert torch.allclose(back[0], x, atol=1e-12) and log_det_rev.shape == (4,)


def test_fixed_householder_ignores_vs() -> None:
    module = HouseholderPerm([(4,)], n_reflections=2, fixed=True)
    x = torch.randn(3, 4)
    before = module([x])[0][0]
    with torch.no_grad():
        module.Vs.add_(1.0)
    assert torch.equal(module([x])[0][0], before)


def test_conditional_householder_one_matrix_per_sample_d20() -> None:
    """FrEIA crashed (mm with a batched W); each sample must get its own W_b."""
    module = HouseholderPerm([(3,)], [(6,)], n_reflections=2)
    assert module.conditional and not list(module.parameters())
    x = torch.randn(4, 3, dtype=F64)
    c = torch.randn(4, 6, dtype=F64)
    out, log_det = module([x], [c])
    for b in range(4):
        W_b = explicit_product(c[b].reshape(3, 2).t())
        assert torch.allclose(out[0][b], x[b] @ W_b, atol=1e-12)
    assert not torch.allclose(out[0][0], module([x[:1]], [c[1:2]])[0][0])
    back, _ = module(out, [c], rev=True)
    assert torch.allclose(back[0], x, atol=1e-12) and log_det.shape == (4,)


def test_conditional_householder_needs_its_condition() -> None:
    module = HouseholderPerm([(3,)], [(6,)], n_reflections=2)
    with pytest.raises(ValueError, match=r"HouseholderPerm takes 1 condition.*got 0"):
        module([torch.randn(2, 3)])
