"""ONNX export: run the exported graphs in onnxruntime and compare with PyTorch, both directions.

Each network is exported once per direction (traced at batch 2) and run at batch 1 and 5, so the
batch axis is shown to be dynamic. float32 throughout; outputs and log-dets must agree to 1e-4.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from cases import all_cases
from invertible._onnx_ops import (
    inv_by_elimination,
    lu_by_elimination,
    searchsorted_by_counting,
    slogdet_by_elimination,
    solve_triangular_by_substitution,
)
from invertible.export import ExportAdapter, io_names, to_onnx
from invertible.framework import GraphINN, InputNode, Node, OutputNode, SequenceINN
from invertible.modules import (
    ActNorm,
    AllInOneBlock,
    AutoregressiveAffine,
    AutoregressiveRQSpline,
    Concat,
    HaarDownsampling,
    InvertibleModule,
    IResNetLayer,
    Learned1x1Conv,
    Split,
)
from invertible.utils import output_dims_compatible
from subnets import conv_subnet, dense_subnet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ATOL = RTOL = 1e-4
BATCHES = (1, 5)


def fastflow_style() -> SequenceINN:
    """FastFlow's per-scale flow: AllInOneBlocks with conv subnets on a (C, H, W) feature map."""
    inn = SequenceINN(4, 8, 8)
    for _ in range(3):
        inn.append(AllInOneBlock, subnet_constructor=conv_subnet, affine_clamping=2.0)
    return inn


def cflow_style() -> SequenceINN:
    """CFlow's decoder: soft-permuted AllInOneBlocks conditioned on c[0] of shape (3,)."""
    inn = SequenceINN(6)
    for _ in range(3):
        inn.append(AllInOneBlock, cond=0, cond_shape=(3,), subnet_constructor=dense_subnet,
                   affine_clamping=1.9, permute_soft=True)
    return inn


def haar_split_concat_graph() -> GraphINN:
    """x -> Haar -> Split -> two flows -> Concat -> flow -> Split -> (z0, z1)."""
    x = InputNode(4, 8, 8, name="x")
    haar = Node(x, HaarDownsampling, {}, name="haar")
    split = Node(haar, Split, {"section_sizes": [8, 8]}, name="split")
    a = Node(split.out0, AllInOneBlock, {"subnet_constructor": conv_subnet}, name="a")
    b = Node(split.out1, AllInOneBlock, {"subnet_constructor": conv_subnet}, name="b")
    cat = Node([a.out0, b.out0], Concat, {}, name="cat")
    flow = Node(cat, AllInOneBlock, {"subnet_constructor": conv_subnet}, name="flow")
    out_split = Node(flow, Split, {"section_sizes": [6, 10]}, name="out_split")
    z0, z1 = OutputNode(out_split.out0, name="z0"), OutputNode(out_split.out1, name="z1")
    return GraphINN([x, haar, split, a, b, cat, flow, out_split, z0, z1])


EXAMPLE_KEY = ("fastflow", "forward")
MODELS = {"fastflow": fastflow_style, "cflow": cflow_style, "graph": haar_split_concat_graph}
COND_SHAPES = {"fastflow": [], "cflow": [(3,)], "graph": []}


def _built(name: str) -> nn.Module:
    """The model, seeded, in float32 and eval mode, with outputs away from the identity."""
    torch.manual_seed(0)
    np.random.seed(0)
    model = MODELS[name]().float().eval()
    with torch.no_grad():  # non-trivial global affine parameters
        for param_name, param in model.named_parameters():
            if param_name.endswith(("global_scale", "global_offset")):
                param.add_(0.3 * torch.randn_like(param))
    return model


def _inputs(model: nn.Module, name: str, rev: bool, batch: int) -> Tuple[List[Tensor], ...]:
    """Random data tensors for the direction, and conditions, for ``model``."""
    gen = torch.Generator().manual_seed(batch)
    dims = output_dims_compatible(model) if rev else model.dims_in
    xs = [torch.randn(batch, *s, generator=gen) for s in dims]
    cs = [torch.randn(batch, *s, generator=gen) for s in COND_SHAPES[name]]
    return xs, cs


def _run(session: ort.InferenceSession, names: List[str], tensors: List[Tensor]) -> List:
    return session.run(None, {n: t.numpy() for n, t in zip(names, tensors)})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Dict[Tuple[str, str], object]:
    """Every model exported in both directions once: ``(model, session, OnnxExport)``."""
    folder = tmp_path_factory.mktemp("onnx")
    result = {}
    for name in MODELS:
        model = _built(name)
        for direction in ("forward", "inverse"):
            model.train()  # to_onnx traces in eval mode and restores the flags
            # one export traces a batch-1 example: the batch axis must still be dynamic
            example = torch.randn(1, 4, 8, 8) if (name, direction) == EXAMPLE_KEY else None
            info = to_onnx(model, folder / f"{name}_{direction}.onnx", direction, example)
            assert all(m.training for m in model.modules())
            model.eval()
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(str(info.path), options,
                                           providers=["CPUExecutionProvider"])
            result[(name, direction)] = (model, session, info)
    return result


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("name", list(MODELS))
def test_onnxruntime_matches_pytorch_at_two_batch_sizes(exported, name, direction) -> None:
    model, session, info = exported[(name, direction)]
    for batch in BATCHES:
        xs, cs = _inputs(model, name, direction == "inverse", batch)
        with torch.no_grad():
            expected = ExportAdapter(model, direction, n_inputs=len(xs))(*xs, *cs)
        got = _run(session, info.input_names, xs + cs)
        assert len(got) == len(expected)
        for value, reference in zip(got, expected):
            assert value.shape == tuple(reference.shape)
            np.testing.assert_allclose(value, reference.numpy(), rtol=RTOL, atol=ATOL)
        assert got[-1].shape == (batch,)  # the log-det, per sample


def test_names_follow_the_direction(exported) -> None:
    assert exported[("fastflow", "forward")][2].input_names == ["x"]
    assert exported[("fastflow", "forward")][2].output_names == ["z", "log_det"]
    assert exported[("cflow", "inverse")][2].input_names == ["z", "c0"]
    assert exported[("cflow", "inverse")][2].output_names == ["x", "log_det"]
    assert exported[("graph", "forward")][2].output_names == ["z0", "z1", "log_det"]
    assert exported[("graph", "inverse")][2].input_names == ["z0", "z1"]
    assert io_names(2, 1, 2, "inverse") == (["z0", "z1", "c0", "c1"], ["x", "log_det"])
    assert io_names(1, 3, 0, "forward", jac=False) == (["x"], ["z0", "z1", "z2"])


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_round_trip_and_batch_axis(exported, name) -> None:
    """inverse_graph(forward_graph(x)) = x, log-dets cancel; axis 0 is the symbolic 'batch'."""
    model, forward, f_info = exported[(name, "forward")]
    _, inverse, i_info = exported[(name, "inverse")]
    xs, cs = _inputs(model, name, False, 3)
    *zs, log_det = _run(forward, f_info.input_names, xs + cs)
    *x_rev, log_det_rev = _run(inverse, i_info.input_names, [torch.from_numpy(z) for z in zs] + cs)
    for x, back in zip(xs, x_rev):
        np.testing.assert_allclose(back, x.numpy(), atol=ATOL)
    np.testing.assert_allclose(log_det + log_det_rev, 0.0, atol=ATOL)
    graph = onnx.load(str(f_info.path)).graph
    for value in list(graph.input) + list(graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")  # torch's own warnings
@pytest.mark.filterwarnings("ignore:.*The axis name:UserWarning")
def test_documented_plain_torch_onnx_export_path(tmp_path: Path) -> None:
    """The module docstring's recipe: ExportAdapter + torch.onnx.export(dynamo=True)."""
    torch.manual_seed(1)
    inn = SequenceINN(8)
    inn.append(AllInOneBlock, cond=0, cond_shape=(3,), subnet_constructor=dense_subnet)
    adapter = ExportAdapter(inn, direction="inverse").eval()
    z, c0 = torch.randn(2, 8), torch.randn(2, 3)
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        adapter, (z, c0), str(tmp_path / "flow_inv.onnx"), dynamo=True,
        input_names=["z", "c0"], output_names=["x", "log_det"],
        dynamic_shapes=(({0: batch}, {0: batch}),), verbose=False,
    )
    session = ort.InferenceSession(str(tmp_path / "flow_inv.onnx"))
    z, c0 = torch.randn(4, 8), torch.randn(4, 3)
    x, log_det = session.run(None, {"z": z.numpy(), "c0": c0.numpy()})
    with torch.no_grad():
        x_ref, log_det_ref = inn(z, c=[c0], rev=True)
    np.testing.assert_allclose(x, x_ref.numpy(), atol=ATOL)
    np.testing.assert_allclose(log_det, log_det_ref.numpy(), atol=ATOL)


def test_export_logs_nothing_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The exporter's per-pass INFO logging (torch.onnx, onnxscript) stays quiet unless verbose,
    also in a program that logs at INFO; the loggers' levels are restored afterwards."""
    with caplog.at_level(logging.INFO):
        to_onnx(fastflow_style(), tmp_path / "quiet.onnx")
    assert [r.name for r in caplog.records if r.name.startswith(("torch", "onnx"))] == []
    assert logging.getLogger("onnxscript").level == logging.NOTSET


def test_iresnet_exports_with_jac_false(tmp_path: Path) -> None:
    """IResNetLayer's stochastic autograd log-det cannot be exported; jac=False drops it."""
    torch.manual_seed(2)
    layer = IResNetLayer([(4,)], internal_size=8, n_internal_layers=1).eval()
    with pytest.raises(RuntimeError, match="dynamo exporter failed on IResNetLayer"):
        to_onnx(layer, tmp_path / "with_jac.onnx")
    info = to_onnx(layer, tmp_path / "f.onnx", jac=False)
    assert info.output_names == ["z"]
    x = 0.5 * torch.randn(7, 4)
    (z,) = ort.InferenceSession(str(info.path)).run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(z, layer([x], jac=False)[0][0].numpy(), atol=ATOL)


def test_decompositions_match_torch() -> None:
    """The rewrites of the ops ONNX lacks agree with torch (both sides, both triangles; LU with
    row swaps, slogdet's sign and log, the inverse)."""
    gen = torch.Generator().manual_seed(0)
    knots = torch.sort(torch.randn(3, 5, 7, generator=gen), dim=-1).values
    values = torch.randn(3, 5, 4, generator=gen)
    values[0, 0, 0] = knots[0, 0, 2]  # a tie: left and right differ
    for right in (False, True):
        expected = torch.searchsorted(knots, values, right=right)
        assert torch.equal(searchsorted_by_counting(knots, values, right=right), expected)
    flat = torch.sort(torch.randn(6, generator=gen)).values
    assert torch.equal(searchsorted_by_counting(flat, values), torch.searchsorted(flat, values))
    A = torch.randn(2, 4, 4, generator=gen, dtype=torch.float64) + 4 * torch.eye(4)
    B = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    for upper in (True, False):
        T = A.triu() if upper else A.tril()
        for left, rhs in ((True, B), (False, B.mT)):
            for unit in (False, True):
                got = solve_triangular_by_substitution(T, rhs, upper=upper, left=left,
                                                       unitriangular=unit)
                expected = torch.linalg.solve_triangular(T, rhs, upper=upper, left=left,
                                                         unitriangular=unit)
                torch.testing.assert_close(got, expected)
    pivoting = torch.tensor([[0.0, 1, 0], [0, 0, 2], [3, 0, 0]], dtype=torch.float64)
    square = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    for M in (A, square, pivoting, -pivoting):  # batched, plain, zero pivots, det < 0
        perm, lower_factor, upper_factor, _ = lu_by_elimination(M)
        torch.testing.assert_close(perm @ M, lower_factor @ upper_factor)
        sign, log_abs_det = slogdet_by_elimination(M)
        torch.testing.assert_close(sign, torch.linalg.slogdet(M).sign)
        torch.testing.assert_close(log_abs_det, torch.linalg.slogdet(M).logabsdet)
        torch.testing.assert_close(inv_by_elimination(M), torch.linalg.inv(M))


SLOW_CASES = ("spline-rqs-vec-cond", "spline-linear-img", "spline-elementwise_rqs-vec", "gmm-vec")


def _float32(tensors: List[Tensor]) -> List[Tensor]:
    return [t.float() if t.is_floating_point() else t for t in tensors]


@pytest.mark.slow
@pytest.mark.parametrize("case_id", SLOW_CASES)
def test_blocks_that_need_decompositions(tmp_path: Path, case_id: str) -> None:
    """Splines (searchsorted) and GaussianMixtureModel (triangular solve), both directions."""
    case = next(c for c in all_cases() if c.id == case_id)
    torch.manual_seed(0)
    np.random.seed(0)
    module = case.build().float().eval()
    for direction in ("forward", "inverse"):
        sampler = case.sample_z if direction == "inverse" and case.sample_z else case.sample_x
        gen = torch.Generator().manual_seed(0)
        cs = _float32(case.sample_c(gen, 2, case.cond_shapes))
        xs = _float32(sampler(gen, 2, module.dims_in))
        info = to_onnx(module, tmp_path / f"{direction}.onnx", direction, xs, cs or None)
        session = ort.InferenceSession(str(info.path))
        for batch in BATCHES:
            xs = _float32(sampler(gen, batch, module.dims_in))
            cs = _float32(case.sample_c(gen, batch, case.cond_shapes))
            with torch.no_grad():
                expected = ExportAdapter(module, direction)(*xs, *cs)
            for value, reference in zip(_run(session, info.input_names, xs + cs), expected):
                np.testing.assert_allclose(value, reference.numpy(), rtol=RTOL, atol=ATOL)


#: The blocks FrEIA never had, as ``(class, keyword arguments)``; small ``D`` = 4, so the
#: autoregressive blocks' D-pass direction (a Python loop unrolled at trace time) stays short.
NEW_BLOCKS: Dict[str, Tuple[type, Dict[str, object]]] = {
    "learned1x1-lu-vec": (Learned1x1Conv, {"dims_in": [(4,)], "lu": True}),
    "learned1x1-lu-img": (Learned1x1Conv, {"dims_in": [(4, 3, 5)], "lu": True}),
    "learned1x1-full-vec": (Learned1x1Conv, {"dims_in": [(4,)], "lu": False}),
    "learned1x1-full-img": (Learned1x1Conv, {"dims_in": [(4, 3, 5)], "lu": False}),
    "maf": (AutoregressiveAffine, {"dims_in": [(4,)]}),
    "maf-cond": (AutoregressiveAffine, {"dims_in": [(4,)], "dims_c": [(3,)]}),
    "iaf": (AutoregressiveAffine, {"dims_in": [(4,)], "inverse_autoregressive": True}),
    "iaf-cond": (AutoregressiveAffine, {"dims_in": [(4,)], "dims_c": [(3,)],
                                        "inverse_autoregressive": True}),
    "ar-rqs": (AutoregressiveRQSpline, {"dims_in": [(4,)], "bins": 4}),
    "ar-rqs-cond": (AutoregressiveRQSpline, {"dims_in": [(4,)], "dims_c": [(3,)], "bins": 4}),
}
NEW_ATOL = 1e-5


def _new_block(name: str) -> InvertibleModule:
    """The block, seeded, in float32 and eval mode, every parameter nudged off its start (the
    MADE's last layer starts at zero, the 1x1 convolution as a rotation)."""
    block_class, kwargs = NEW_BLOCKS[name]
    extra = {} if block_class is Learned1x1Conv else {"hidden_features": (16, 16)}
    block = block_class(**kwargs, **extra, seed=0).float().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in block.parameters():
            param.add_(0.2 * torch.randn(param.shape, generator=gen))
    return block


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("name", list(NEW_BLOCKS))
def test_new_blocks_match_pytorch_in_onnxruntime(tmp_path: Path, name: str,
                                                 direction: str) -> None:
    """Learned1x1Conv (LU and full weight: slogdet and inv rewritten by elimination) and the
    autoregressive blocks (the D-pass direction unrolled) at batch 1 and 5, traced at 2."""
    block = _new_block(name)
    info = to_onnx(block, tmp_path / f"{name}_{direction}.onnx", direction)
    session = ort.InferenceSession(str(info.path))
    for batch in BATCHES:
        gen = torch.Generator().manual_seed(batch)
        xs = [torch.randn(batch, *shape, generator=gen) for shape in block.dims_in]
        cs = [torch.randn(batch, *shape, generator=gen) for shape in block.dims_c]
        with torch.no_grad():
            expected = ExportAdapter(block, direction)(*xs, *cs)
        got = _run(session, info.input_names, xs + cs)
        assert len(got) == len(expected) and got[-1].shape == (batch,)
        for value, reference in zip(got, expected):
            np.testing.assert_allclose(value, reference.numpy(), rtol=RTOL, atol=NEW_ATOL)


# --- errors -----------------------------------------------------------------------------------


def test_bad_direction_and_exporter(tmp_path: Path) -> None:
    inn = SequenceINN(4)
    inn.append(AllInOneBlock, subnet_constructor=dense_subnet)
    with pytest.raises(ValueError, match="direction must be"):
        to_onnx(inn, tmp_path / "a.onnx", direction="backward")
    with pytest.raises(ValueError, match="direction must be"):
        ExportAdapter(inn, direction=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exporter must be"):
        to_onnx(inn, tmp_path / "a.onnx", exporter="tf")
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        to_onnx(object(), tmp_path / "a.onnx")  # type: ignore[arg-type]


def test_bad_example_inputs(tmp_path: Path) -> None:
    inn = SequenceINN(4)
    inn.append(AllInOneBlock, subnet_constructor=dense_subnet)
    with pytest.raises(ValueError, match=r"1 tensor\(s\) of shape \(batch, \*\(4,\)\)"):
        to_onnx(inn, tmp_path / "a.onnx", example_inputs=torch.randn(2, 5))
    with pytest.raises(ValueError, match="example_inputs must be 1 tensor"):
        to_onnx(inn, tmp_path / "a.onnx", example_inputs=[torch.randn(2, 4)] * 2)
    with pytest.raises(TypeError, match="example_inputs must be a tensor"):
        to_onnx(inn, tmp_path / "a.onnx", example_inputs=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="conditions must be 0 tensor"):
        to_onnx(inn, tmp_path / "a.onnx", conditions=[torch.randn(2, 3)])


def test_missing_examples_that_cannot_be_made_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="example_inputs are needed: Linear"):
        to_onnx(nn.Linear(3, 3), tmp_path / "a.onnx")
    gap = SequenceINN(4)  # reads c[1] only: the shape of c[0] is unknown
    gap.append(AllInOneBlock, cond=1, cond_shape=(2,), subnet_constructor=dense_subnet)
    with pytest.raises(ValueError, match="conditions are needed: SequenceINN"):
        to_onnx(gap, tmp_path / "a.onnx")
    cond = cflow_style()
    with pytest.raises(ValueError, match="same non-zero batch size"):
        to_onnx(cond, tmp_path / "a.onnx", example_inputs=torch.randn(2, 6),
                conditions=[torch.randn(3, 3)])


def test_uninitialised_actnorm_is_refused(tmp_path: Path) -> None:
    inn = SequenceINN(4)
    inn.append(ActNorm)
    with pytest.raises(ValueError, match=r"ActNorm at 'module_list\.0' is not initialised"):
        to_onnx(inn, tmp_path / "a.onnx")


class Expm1Block(InvertibleModule):
    """exp(x) - 1: ``aten::expm1`` has no TorchScript-ONNX symbolic (an export failure)."""

    def forward(self, x: List[Tensor], rev: bool = False, jac: bool = True) -> Tuple:
        y = torch.log1p(x[0]) if rev else torch.expm1(x[0])
        return [y], torch.zeros(x[0].shape[0])

    def output_dims(self, input_dims: List[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        return input_dims


def test_exporter_failure_is_one_readable_runtime_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="torchscript exporter failed on Expm1Block") as info:
        to_onnx(Expm1Block([(3,)]), tmp_path / "a.onnx", exporter="torchscript")
    assert "expm1" in str(info.value)
    assert len(str(info.value)) < 600  # not the whole TorchScript IR graph
    assert info.value.__cause__ is not None
