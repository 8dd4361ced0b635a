"""IResNetLayer: the property checks that hold for a stochastic log-det, the estimator, FrEIA's
bugs fixed (dims_in kept, works under no_grad, caller's tensors untouched)."""

from __future__ import annotations

import itertools
import warnings
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cases import Case
from cases.iresnet import APPROXIMATE_CASES, ReseedEachCall, contractive_iresnet
from invertible import testing as T
from invertible.framework.sequence_inn import SequenceINN
from invertible.modules.inverse import Inverse
from invertible.modules.invertible_resnet import ActNorm, IResNetLayer, power_series_log_det

D = torch.float64
VARIANTS = [(case, inverse) for case in APPROXIMATE_CASES for inverse in (False, True)]
IDS = [f"{case.id}{'-inverse' if inverse else ''}" for case, inverse in VARIANTS]


# --- the property suite, adapted (see tests/cases/iresnet.py) --------------------------------


def build(case: Case, inverse: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    np.random.seed(seed)
    module = case.build().double()
    return Inverse(module) if inverse else module


def layer_direction(inverse: bool) -> bool:
    """The ``rev`` value under which the variant runs the i-ResNet's forward map."""
    return inverse


def make_variant(case: Case, inverse: bool):
    """``(case, inverse, module, inputs, conditions)`` with valid seeded inputs."""
    module = build(case, inverse)
    gen = torch.Generator().manual_seed(1)
    cs = case.sample_c(gen, case.batch, case.cond_shapes) if case.cond_shapes else None
    inner = module.module if inverse else module
    xs = case.sample_x(gen, case.batch, inner.dims_in)
    if inverse:
        xs = [z.detach() for z in T.run(inner, xs, cs)[0]]
    return case, inverse, module, xs, cs


@pytest.fixture(params=VARIANTS, ids=IDS)
def variant(request: pytest.FixtureRequest):
    return make_variant(*request.param)


def test_shapes_and_round_trips(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_output_shapes(module, xs, cs, module.output_dims(module.dims_in))
    T.check_round_trip(module, xs, cs, atol=case.atol)  # includes fwd + rev log-det == 0
    gen = torch.Generator().manual_seed(2)
    zs = case.sample_x(gen, case.batch, module.dims_in)  # shape-preserving: same space
    T.check_reverse_round_trip(module, zs, cs, atol=case.atol)


def test_forward_log_det_within_estimator_tolerance(variant) -> None:
    """The i-ResNet forward's estimate vs autograd slogdet, to the case's stated tolerance."""
    case, inverse, module, xs, cs = variant
    rev = layer_direction(inverse)
    points = xs if not rev else [x.detach() for x in T.run(module, xs, cs)[0]]
    T.check_log_det_autograd(module, points, cs, atol=case.log_det_atol, rev=rev)


def test_reverse_log_det_is_minus_forward_jacobian_at_reconstruction(variant) -> None:
    """The reverse pass's autograd Jacobian is FrEIA's one-step one, so check against -slogdet
    of the forward Jacobian at the reconstructed input instead."""
    case, inverse, module, xs, cs = variant
    fwd = layer_direction(inverse)
    zs = xs if inverse else [z.detach() for z in T.run(module, xs, cs)[0]]
    x_rec, log_det = T.run(module, zs, cs, rev=not fwd)
    expected = -T.autograd_log_det(module, [x.detach() for x in x_rec], cs, rev=fwd)
    assert log_det is not None
    assert float((log_det - expected).abs().max().detach()) < case.log_det_atol


def test_exact_checks(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_jac_false(module, xs, cs)
    T.check_gradients(module, xs, cs, [("module." if inverse else "") + n
                                       for n in case.no_grad_params])
    T.check_batch_independence(module, xs, cs)
    T.check_state_dict_round_trip(module, build(case, inverse, seed=7), xs, cs)
    T.check_pickle_round_trip(module, xs, cs)
    T.check_inputs_unchanged(module, xs, cs)


CONDITIONED = [(case, inverse) for case, inverse in VARIANTS if case.cond_shapes]


@pytest.mark.parametrize(("case", "inverse"), CONDITIONED,
                         ids=[f"{c.id}{'-inverse' if i else ''}" for c, i in CONDITIONED])
def test_conditions_are_ignored(case: Case, inverse: bool) -> None:
    case, inverse, module, xs, cs = make_variant(case, inverse)
    assert cs is not None
    base, ld = T.run(module, xs, cs)
    other, ld2 = T.run(module, xs, [c + 1.0 for c in cs])
    assert all(torch.equal(a, b) for a, b in zip(base, other)) and torch.equal(ld, ld2)


# --- the estimator ---------------------------------------------------------------------------


class AllSignVectors:
    """Replaces ``torch.randn_like``: the k-th call returns the k-th of all 2^d sign vectors.

    Averaging Hutchinson's ``v^T A v`` over all of them gives ``tr A`` exactly.
    """

    def __init__(self, shape: Tuple[int, ...]) -> None:
        d = int(np.prod(shape[1:]))
        self.rows = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=D)
        self.shape, self.calls = shape, 0

    def __call__(self, x: Tensor, **kwargs) -> Tensor:
        row = self.rows[self.calls].reshape(1, *self.shape[1:]).expand(x.shape)
        self.calls += 1
        return row.to(x.dtype)


def exact_log_det(layer: IResNetLayer, x: Tensor) -> Tensor:
    """``slogdet(I + J_g)`` per sample from the autograd Jacobian."""
    return T.autograd_log_det(layer, [x], None)


@pytest.mark.parametrize("shape", [(4,), (1, 3, 3)])
def test_power_series_with_exact_traces_matches_slogdet(monkeypatch, shape: tuple) -> None:
    """All 2^d probes make every trace exact; 60 terms make the truncation negligible."""
    torch.manual_seed(0)
    d = int(np.prod(shape))
    layer = contractive_iresnet(shape, internal_size=4, n_internal_layers=0,
                                jacobian_iterations=60, hutchinson_samples=2**d,
                                spectral_norm_max=0.5).double()
    x = torch.randn(3, *shape, dtype=D)
    probes = AllSignVectors((3, *shape))
    monkeypatch.setattr(torch, "randn_like", probes)
    (_, log_det) = layer([x])
    assert probes.calls == 2**d
    assert torch.allclose(log_det, exact_log_det(layer, x), atol=1e-10)


def test_one_term_is_the_trace(monkeypatch) -> None:
    torch.manual_seed(1)
    layer = contractive_iresnet((3,), jacobian_iterations=1, hutchinson_samples=8).double()
    x = torch.randn(2, 3, dtype=D)
    monkeypatch.setattr(torch, "randn_like", AllSignVectors((2, 3)))
    jac = torch.autograd.functional.jacobian(layer.residual, x)
    trace = torch.stack([torch.trace(jac[b, :, b, :]) for b in range(2)])
    assert torch.allclose(layer([x])[1], trace, atol=1e-12)


def test_estimate_is_differentiable_and_its_gradient_is_right(monkeypatch) -> None:
    """With exact traces, d(estimate)/d(theta) equals d(slogdet(I + J_g))/d(theta)."""
    torch.manual_seed(2)
    layer = contractive_iresnet((3,), internal_size=4, n_internal_layers=0,
                                jacobian_iterations=60, hutchinson_samples=8).double()
    x = torch.randn(1, 3, dtype=D)
    monkeypatch.setattr(torch, "randn_like", AllSignVectors((1, 3)))
    params = list(layer.parameters())
    ours = torch.autograd.grad(layer([x])[1].sum(), params, allow_unused=True)
    jac = torch.autograd.functional.jacobian(layer.residual, x, create_graph=True)[0, :, 0, :]
    exact = torch.linalg.slogdet(torch.eye(3, dtype=D) + jac)[1]
    theirs = torch.autograd.grad(exact, params, allow_unused=True)
    assert ours[0] is not None and ours[0].abs().max() > 1e-3
    for a, b in zip(ours, theirs):  # the last bias does not enter J_g: no gradient either way
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, atol=1e-9))


def test_many_samples_converge_to_slogdet() -> None:
    """Hutchinson with 20000 probes is within 0.02 (about 5 sigma) of the exact log-det."""
    torch.manual_seed(3)
    layer = contractive_iresnet((4,), internal_size=8, n_internal_layers=0,
                                hutchinson_samples=20000).double()
    x = torch.randn(3, 4, dtype=D)
    log_det = layer([x])[1]
    exact = exact_log_det(layer, x)
    assert exact.abs().max() > 0.05  # the test would notice a wrong sign
    assert torch.allclose(log_det, exact, atol=0.02)


def test_kernel_draws_one_randn_like_per_sample_in_order() -> None:
    """As in FrEIA: randn_like(x) once per Hutchinson sample, at run time, when jac."""
    layer = contractive_iresnet((3,), hutchinson_samples=5).double()
    x = torch.randn(2, 3, dtype=D, requires_grad=True)
    torch.manual_seed(4)
    power_series_log_det(layer.residual, x, 2, 5, create_graph=False)
    after = torch.randn(1)
    torch.manual_seed(4)
    for _ in range(5):
        torch.randn_like(x)
    assert torch.equal(torch.randn(1), after)
    torch.manual_seed(4)
    layer([x.detach()], jac=False)
    layer([x.detach()], rev=True, jac=False)
    got = torch.randn(1)
    torch.manual_seed(4)
    assert torch.equal(got, torch.randn(1))  # no draws without jac


# --- FrEIA bugs fixed ------------------------------------------------------------------------


def test_dims_in_stays_a_list_and_instances_append() -> None:
    layer = IResNetLayer([(4,)])
    assert layer.dims_in == [(4,)] and layer.input_shape == (4,)
    inn = SequenceINN(4)
    inn.append(layer)
    z, log_det = inn(torch.randn(3, 4))
    assert z.shape == (3, 4) and log_det.shape == (3,)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_works_without_grad_mode(context) -> None:
    layer = contractive_iresnet((3, 4, 4), internal_size=4, spectral_norm_max=0.5)
    x = torch.randn(2, 3, 4, 4)
    with context():
        (z,), log_det = layer([x])
        (x_rev,), log_det_rev = layer([z], rev=True)
    assert log_det.shape == (2,) and torch.isfinite(log_det).all()
    assert not log_det.requires_grad and not z.requires_grad and not log_det_rev.requires_grad
    assert torch.allclose(x_rev, x, atol=1e-5)


def test_never_touches_the_callers_tensors() -> None:
    layer = contractive_iresnet((3,))
    for requires_grad in (False, True):
        x = torch.randn(4, 3, requires_grad=requires_grad)
        (z,), _ = layer([x])
        layer([z.detach()], rev=True)
        assert x.requires_grad is requires_grad and x.grad is None and x.is_leaf


def test_reverse_log_det_is_evaluated_at_the_reconstruction() -> None:
    """With the same noise, reverse(z) = -forward(x); FrEIA's estimate at z differs."""
    torch.manual_seed(5)
    layer = ReseedEachCall(contractive_iresnet((3,), hutchinson_samples=50).double())
    x = torch.randn(4, 3, dtype=D)
    (z,), log_det = layer([x])
    _, log_det_rev = layer([z], rev=True)
    assert torch.allclose(log_det_rev, -log_det, atol=1e-12)
    _, at_z = layer([z])
    assert (at_z - log_det).abs().max() > 1e-3


def test_jac_false_returns_zeros() -> None:
    layer = IResNetLayer([(3,)])
    for rev in (False, True):
        _, log_det = layer([torch.randn(2, 3)], rev=rev, jac=False)
        assert torch.equal(log_det, torch.zeros(2))


# --- construction, RNG, state, as in FrEIA --------------------------------------------------


def test_structure_state_and_rng_order() -> None:
    torch.manual_seed(6)
    layer = IResNetLayer([(3,)], n_internal_layers=2)
    torch.manual_seed(6)
    expected = [nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)]
    assert layer.internal_size == 6 and len(layer.layers) == 4
    assert [type(m) for m in layer.residual] == [nn.Linear, nn.ELU] * 3 + [nn.Linear]
    for k, (ours, theirs) in enumerate(zip(layer.layers, expected)):
        assert ours is layer.residual[2 * k]
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    keys = [f"residual.{2 * k}.{n}" for k in range(4) for n in ("weight", "bias")]
    assert list(layer.state_dict()) == keys
    conv = IResNetLayer([(2, 5, 5)], internal_size=3)
    assert [tuple(m.weight.shape) for m in conv.layers] == [(3, 2, 3, 3), (3, 3, 3, 3),
                                                            (2, 3, 3, 3)]
    assert all(m.padding == (1, 1) for m in conv.layers)


def test_copies_keep_layers_pointing_at_the_residual() -> None:
    import copy
    import io

    layer = IResNetLayer([(3,)])
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    for other in (copy.deepcopy(layer), torch.load(buffer, weights_only=False)):
        assert all(m is other.residual[2 * k] for k, m in enumerate(other.layers))
        other.lipschitz_correction()


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5])
def test_spectral_norm_max_is_checked(value: float) -> None:
    with pytest.raises(AssertionError, match="spectral_norm_max"):
        IResNetLayer([(3,)], spectral_norm_max=value)
    with pytest.raises(ValueError, match="spectral_norm_max"):
        IResNetLayer([(3,)], spectral_norm_max=value)
    IResNetLayer([(3,)], spectral_norm_max=1.0)


@pytest.mark.parametrize(
    ("dims", "kwargs", "needle"),
    [
        ([(3, 4)], {}, "vectors"),
        ([(3,), (3,)], {}, "1 input"),
        ([(3,)], {"hutchinson_samples": 0}, "hutchinson_samples"),
    ],
)
def test_argument_errors(dims: list, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        IResNetLayer(dims, **kwargs)


# --- lipschitz_correction and the contraction warning ----------------------------------------


def valid_conv_norm(weight: Tensor, size: int) -> float:
    """Exact operator norm of the unpadded convolution on ``size x size`` inputs."""
    c_in = weight.shape[1]
    eye = torch.eye(c_in * size * size, dtype=weight.dtype).reshape(-1, c_in, size, size)
    matrix = F.conv2d(eye, weight.detach()).reshape(eye.shape[0], -1)
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def test_lipschitz_correction_dense() -> None:
    torch.manual_seed(7)
    layer = IResNetLayer([(4,)], lipschitz_iterations=30).double()
    with torch.no_grad():
        layer.layers[0].weight.mul_(10.0)
        layer.layers[2].weight.mul_(0.01)
    small = layer.layers[2].weight.clone()
    state = torch.get_rng_state()
    layer.lipschitz_correction()
    norms = [float(torch.linalg.matrix_norm(m.weight.detach(), ord=2)) for m in layer.layers]
    assert abs(norms[0] - 0.8) < 1e-3 and max(norms) <= 0.8 + 1e-3
    assert torch.equal(layer.layers[2].weight, small)  # already below the bound: untouched
    after = torch.randn(1)
    torch.set_rng_state(state)  # FrEIA's draws: randn(batchsize, in) per layer, in order
    for m in layer.layers:
        torch.randn(10, m.weight.shape[1], dtype=D)
    assert torch.equal(torch.randn(1), after)


def test_lipschitz_correction_conv_uses_unpadded_convolution() -> None:
    torch.manual_seed(8)
    layer = IResNetLayer([(2, 5, 5)], internal_size=3, lipschitz_iterations=50,
                         spectral_norm_max=0.5).double()
    with torch.no_grad():
        for m in layer.layers:
            m.weight.mul_(5.0)
    layer.lipschitz_correction()
    for m in layer.layers:
        assert abs(valid_conv_norm(m.weight, 5) - 0.5) < 5e-3


@pytest.mark.parametrize(("shape", "bound"), [((3,), 0.8), ((2, 6, 6), 0.8), ((2, 4, 4), 0.5)])
def test_inverse_warns_outside_the_contraction_guarantee(shape: tuple, bound: float) -> None:
    torch.manual_seed(9)
    layer = IResNetLayer([shape], internal_size=4, spectral_norm_max=bound)
    with torch.no_grad():
        for m in layer.layers:
            m.weight.mul_(10.0)
    z = torch.randn(2, *shape)
    with pytest.warns(UserWarning, match="lipschitz_correction"):
        layer([z], rev=True, jac=False)
    layer.lipschitz_correction()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer([z], rev=True, jac=False)
        layer([z], jac=False)  # the forward never checks


def test_small_images_keep_warning_after_freia_correction() -> None:
    """FrEIA's correction probes convolutions unpadded, underestimating them on small images."""
    torch.manual_seed(9)
    layer = contractive_iresnet((2, 3, 3), internal_size=4)
    with pytest.warns(UserWarning, match="without padding"):
        layer([torch.randn(2, 2, 3, 3)], rev=True, jac=False)


def test_conv_norm_bound_bounds_the_padded_convolution() -> None:
    from invertible.modules._iresnet import conv_norm_bound

    torch.manual_seed(10)
    weight = torch.randn(3, 2, 3, 3, dtype=D)
    eye = torch.eye(2 * 16, dtype=D).reshape(-1, 2, 4, 4)
    padded = F.conv2d(eye, weight, padding=1).reshape(eye.shape[0], -1)
    exact = float(torch.linalg.matrix_norm(padded, ord=2))
    bound = float(conv_norm_bound(weight, (4, 4)))
    assert exact <= bound + 1e-12 and bound < 1.5 * exact


# --- the i-ResNet scenario of FrEIA's tests -------------------------------------------------


def iresnet_chain(shape: Tuple[int, ...], cond: Optional[Tuple[int, ...]]) -> SequenceINN:
    inn = SequenceINN(*shape)
    for _ in range(5):
        inn.append(ActNorm)
        kwargs = {"cond": 0, "cond_shape": cond} if cond else {}
        inn.append(IResNetLayer, hutchinson_samples=20, internal_size=100, n_internal_layers=3,
                   **kwargs)
    for module in inn:
        if isinstance(module, IResNetLayer):
            module.lipschitz_correction()
    return inn.double()


def run_scenario(shape: Tuple[int, ...], cond: Optional[Tuple[int, ...]], rtol: float) -> None:
    torch.manual_seed(11)
    inn = iresnet_chain(shape, cond)
    x = torch.randn(3, *shape, dtype=D)
    c: List[Tensor] = [torch.randn(3, *cond, dtype=D)] if cond else []
    with torch.no_grad():  # values only: a graph of the log-det estimate would cost ~8 GB
        z, log_det = inn(x, c)
        x_rev, _ = inn(z, c, rev=True)
    assert torch.allclose(x_rev, x, atol=1e-6)
    numerical = T.autograd_log_det(inn, [x], c or None)
    assert torch.allclose(log_det, numerical, atol=1.5, rtol=rtol)


def test_iresnet_scenario_vectors() -> None:
    run_scenario((20,), (20,), rtol=0.15)


@pytest.mark.slow
def test_iresnet_scenario_images() -> None:
    run_scenario((3, 10, 10), None, rtol=0.1)


# --- the contraction check is cached on the weights' versions --------------------------------


def test_contraction_check_is_recomputed_only_when_weights_change(monkeypatch) -> None:
    """The spectral bounds (an SVD/FFT per layer) run again only after a weight changed."""
    import invertible.modules.invertible_resnet as ir

    calls = []
    real = ir.layer_norm_bounds

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ir, "layer_norm_bounds", counting)
    torch.manual_seed(12)
    layer = IResNetLayer([(3,)], internal_size=4)
    layer.lipschitz_correction()
    z = torch.randn(2, 3)
    for _ in range(3):
        layer([z], rev=True, jac=False)
    assert len(calls) == 1
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)
    (layer([z])[0][0] ** 2).sum().backward()
    optimiser.step()  # an in-place update bumps the weights' versions
    layer([z], rev=True, jac=False)
    assert len(calls) == 2
    layer.lipschitz_correction()
    layer([z], rev=True, jac=False)
    layer.load_state_dict(layer.state_dict())
    layer([z], rev=True, jac=False)
    layer.double()
    layer([z.double()], rev=True, jac=False)
    assert len(calls) == 5
    layer([z.double()], rev=True, jac=False)
    assert len(calls) == 5


def test_cached_check_still_warns_on_every_reverse_call() -> None:
    torch.manual_seed(9)
    layer = IResNetLayer([(3,)], internal_size=4)
    with torch.no_grad():
        for m in layer.layers:
            m.weight.mul_(10.0)
    z = torch.randn(2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            layer([z], rev=True, jac=False)
    assert sum("lipschitz_correction" in str(w.message) for w in caught) == 3
    layer.lipschitz_correction()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer([z], rev=True, jac=False)


def test_contraction_check_works_for_inference_mode_weights() -> None:
    """Inference tensors track no version: the check is then simply recomputed."""
    with torch.inference_mode():
        torch.manual_seed(9)
        layer = IResNetLayer([(3,)], internal_size=4)
        layer.lipschitz_correction()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            layer([torch.randn(2, 3)], rev=True, jac=False)
