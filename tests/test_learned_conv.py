"""Glow's learned 1x1 convolution: the initial rotation, seeding, the LU parametrisation, an
inverse without matrix inverses, any image size, memory-efficient training, compile and ONNX.

The generic properties (round trips, log-det vs autograd, gradients, state_dict, pickling,
batch independence) run in the property suite on the cases of ``tests/cases/learned_conv.py``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor

from cases.learned_conv import perturbed
from invertible import testing as T
from invertible.framework import SequenceINN
from invertible.modules import AllInOneBlock, Learned1x1Conv
from invertible.modules.learned_conv import random_rotation_matrix
from subnets import conv_subnet
from test_memory_efficient import assert_same_gradients, gradients

D64 = torch.float64
SHAPES = [(5,), (3, 6), (4, 3, 5), (2, 3, 2, 2)]
LU = pytest.mark.parametrize("lu", [True, False], ids=["lu", "full"])


def _data(shape: Tuple[int, ...], batch: int = 3, dtype: torch.dtype = D64) -> Tensor:
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1), dtype=dtype)


@LU
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_starts_as_a_rotation_with_zero_log_det(lu: bool, shape: Tuple[int, ...]) -> None:
    block = Learned1x1Conv([shape], lu=lu, seed=7).double()
    W = block.matrix().detach()
    eye = torch.eye(shape[0], dtype=D64)
    torch.testing.assert_close(W @ W.t(), eye)
    torch.testing.assert_close(torch.linalg.det(W), torch.tensor(1.0, dtype=D64))
    torch.testing.assert_close(W, random_rotation_matrix(shape[0], 7))
    x = _data(shape)
    (z,), log_det = block([x])
    zero = torch.zeros(3, dtype=D64)
    torch.testing.assert_close(log_det, zero, atol=1e-6, rtol=0)  # built in float32
    torch.testing.assert_close(z.norm(dim=1), x.norm(dim=1))  # a rotation per pixel


def test_seed_gives_the_same_weights_without_touching_the_global_generator() -> None:
    state = torch.get_rng_state()
    a, b = Learned1x1Conv([(6,)], seed=3), Learned1x1Conv([(6,)], seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    other = Learned1x1Conv([(6,)], seed=4)
    assert not torch.equal(a.matrix(), other.matrix())
    full = Learned1x1Conv([(6,)], lu=False, seed=3)
    torch.testing.assert_close(full.matrix(), a.matrix())
    torch.manual_seed(0)  # seed=None: torch's global generator, reproducible under manual_seed
    first = Learned1x1Conv([(6,)])
    assert not torch.equal(torch.get_rng_state(), torch.manual_seed(0).get_state())
    torch.manual_seed(0)
    torch.testing.assert_close(Learned1x1Conv([(6,)]).matrix(), first.matrix())


def test_lu_parametrisation_and_state() -> None:
    torch.manual_seed(0)
    block = perturbed([(4, 2, 3)], seed=1).double()
    assert {n for n, _ in block.named_parameters()} == {"lower", "upper", "log_s"}
    assert set(dict(block.named_buffers())) == {"perm", "sign"}
    P, sign = block.perm, block.sign
    assert torch.equal(P @ P.t(), torch.eye(4, dtype=D64)) and bool((sign.abs() == 1).all())
    L = torch.tril(block.lower, -1) + torch.eye(4, dtype=D64)
    U = torch.triu(block.upper, 1) + torch.diag(sign * torch.exp(block.log_s))
    W = (P @ L @ U).detach()
    torch.testing.assert_close(block.matrix().detach(), W)
    x = _data((4, 2, 3))
    (z,), log_det = block([x])
    torch.testing.assert_close(z, torch.einsum("ij,bjhw->bihw", W, x))
    expected = 6 * torch.linalg.slogdet(W)[1]
    torch.testing.assert_close(log_det, expected.expand(3))
    torch.testing.assert_close(log_det, 6 * block.log_s.detach().sum().expand(3))


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a general matrix inverse or solve was called")


def test_lu_inverse_uses_triangular_solves_only(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    block = perturbed([(5, 3, 3)]).double()
    x = _data((5, 3, 3))
    (z,), log_det = block([x])
    for name in ("inv", "inv_ex", "solve", "solve_ex", "pinv", "lu_factor"):
        monkeypatch.setattr(torch.linalg, name, _refuse)
    monkeypatch.setattr(torch, "inverse", _refuse)
    (x_rev,), log_det_rev = block([z], rev=True)
    torch.testing.assert_close(x_rev, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det_rev, -log_det)


@LU
def test_runs_at_any_image_size(lu: bool) -> None:
    torch.manual_seed(0)
    block = perturbed([(4, 8, 8)], lu=lu).double()
    x = _data((4, 3, 5))
    T.check_round_trip(block, [x], None)
    T.check_reverse_round_trip(block, [x], None)
    for rev in (False, True):
        T.check_log_det_autograd(block, [x], None, rev=rev)
    assert block.output_dims([(4, 3, 5)]) == [(4, 3, 5)]
    with pytest.raises(ValueError, match=r"Learned1x1Conv: input must have shape \(B, 4, \*, \*\)"):
        block([_data((3, 8, 8))])
    with pytest.raises(ValueError, match="Learned1x1Conv"):
        block([_data((4, 8))])


def test_build_errors_name_the_block() -> None:
    with pytest.raises(ValueError, match="Learned1x1Conv takes no conditions"):
        Learned1x1Conv([(4,)], dims_c=[(2,)])
    with pytest.raises(ValueError, match="Learned1x1Conv: Data is 5D"):
        Learned1x1Conv([(2, 2, 2, 2, 2)])
    with pytest.raises(ValueError, match="Learned1x1Conv can only use 1 input"):
        Learned1x1Conv([(4,), (4,)])
    with pytest.raises(TypeError, match="Learned1x1Conv"):
        Learned1x1Conv([(4,)], lu=True, size=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="Learned1x1Conv takes no conditions"):
        Learned1x1Conv([(4,)])([_data((4,), dtype=torch.float32)], c=[torch.zeros(3, 2)])


def glow_steps(memory_efficient: bool = False) -> SequenceINN:
    """Glow's step twice (1x1 conv, affine coupling), LU and full weights, in float64."""
    torch.manual_seed(0)
    inn = SequenceINN(4, 4, 4, memory_efficient=memory_efficient)
    for lu in (True, False):
        inn.append(perturbed([(4, 4, 4)], lu=lu))
        inn.append(AllInOneBlock, subnet_constructor=conv_subnet, permute_soft=False)
    return inn.double()


@pytest.mark.parametrize("rev", [False, True], ids=["forward", "reverse"])
def test_memory_efficient_gradients_equal_standard_backprop(rev: bool) -> None:
    net = glow_steps()
    x: List[Tensor] = [_data((4, 4, 4), batch=4)]
    if rev:
        with torch.no_grad():
            x = [net(x[0])[0]]
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    assert_same_gradients(gradients(net, x, [], rev), gradients(efficient, x, [], rev))


def _roundtrip(net: SequenceINN, x: Tensor) -> Tuple[Tensor, ...]:
    z, log_det = net(x)
    x_rev, log_det_rev = net(z, rev=True)
    return z, log_det, x_rev, log_det_rev


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(4,), (4, 3, 5), (3, 2, 3, 2)], ids=str)
def test_compiles_fullgraph_and_matches_eager(shape: Tuple[int, ...]) -> None:
    torch.compiler.reset()
    torch.manual_seed(0)
    net = SequenceINN(*shape)
    net.append(perturbed([shape]))
    net.append(perturbed([shape], lu=False))
    x = torch.randn(3, *shape)
    compiled = torch.compile(functools.partial(_roundtrip, net), fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), _roundtrip(net, x), rtol=1e-5, atol=1e-5)
    torch.compiler.reset()


@pytest.mark.slow
def test_compiled_training_step_matches_eager_gradients() -> None:
    torch.compiler.reset()
    torch.manual_seed(0)
    net = SequenceINN(4, 3, 3)
    net.append(perturbed([(4, 3, 3)]))
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 4, 3, 3)
    grads = []
    for model in (net, compiled):
        net.zero_grad()
        z, log_det = model(x)
        (0.5 * z.pow(2).sum() - log_det.sum()).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for eager, traced in zip(*grads):
        torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-6)
    torch.compiler.reset()


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(4,), (4, 3, 5)], ids=str)
def test_onnx_export_both_directions(tmp_path: Path, shape: Tuple[int, ...]) -> None:
    """LU weights export: the triangular solves are rewritten by ``to_onnx``'s decompositions."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from invertible.export import ExportAdapter, to_onnx

    torch.manual_seed(0)
    block = perturbed([shape]).eval()
    for direction in ("forward", "inverse"):
        info = to_onnx(block, tmp_path / f"{direction}.onnx", direction)
        session = ort.InferenceSession(str(info.path))
        for batch in (1, 5):
            x = torch.randn(batch, *shape)
            got = session.run(None, {info.input_names[0]: x.numpy()})
            with torch.no_grad():
                expected = ExportAdapter(block, direction)(x)
            for value, reference in zip(got, expected):
                np.testing.assert_allclose(value, reference.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_full_weight_onnx_export_both_directions(tmp_path: Path) -> None:
    """ONNX has neither slogdet nor a matrix inverse: ``lu=False`` exports through ``to_onnx``'s
    decompositions (Gaussian elimination with partial pivoting, unrolled over C)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from invertible.export import ExportAdapter, to_onnx

    block = Learned1x1Conv([(4, 3)], lu=False, seed=0).eval()
    with torch.no_grad():
        block.weight.add_(0.3 * torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    for direction in ("forward", "inverse"):
        info = to_onnx(block, tmp_path / f"{direction}.onnx", direction)
        x = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(1))
        got = ort.InferenceSession(str(info.path)).run(None, {info.input_names[0]: x.numpy()})
        with torch.no_grad():
            expected = ExportAdapter(block, direction)(x)
        for value, reference in zip(got, expected):
            np.testing.assert_allclose(value, reference.numpy(), rtol=1e-4, atol=1e-5)
