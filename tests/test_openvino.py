"""OpenVINO export: the IRs run by OpenVINO's CPU runtime, default settings, against PyTorch.

Three flows of the kinds anomalib deploys this way: FastFlow (a conv ``AllInOneBlock`` chain on a
feature map), CFlow (a conditional decoder of feature vectors, conditioned on positional
encodings) and U-Flow (a multi-scale ``GraphINN``: the coarse scale's flow hands half its output
up to the fine scale). Each is exported once per direction (traced at batch 2) and run at batch
1 and 5. float32; compiled with no configuration at all, so a CPU with bf16 units would run in
bf16 unless the IR keeps its nodes in f32: outputs and log-dets must agree to 1e-4 and no node
of the compiled graph may run in bf16 or f16.

What keeps the IR in f32 is each shown to matter: the "precise" marks, and doing ahead the
CPU plugin's rewrites that would replace marked nodes by new, unmarked ones (subtractions and
divisions in the forms the plugin lowers them to, one-element constants widened to the channel
axis, constant scales and biases folded into ``nn.Linear`` weights); without any one of them a
bf16 CPU runs nodes in bf16. Every IR is also checked compiled with an explicit f32 hint. The
file passes with OpenVINO 2024.2 and 2026.4.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import invertible._openvino as ov_export
from invertible._openvino import PRECISE, save_f32
from invertible.export import ExportAdapter, OpenVinoExport, to_openvino
from invertible.flows import Glow
from invertible.framework import GraphINN, InputNode, Node, OutputNode, SequenceINN
from invertible.modules import (
    AllInOneBlock,
    AutoregressiveAffine,
    AutoregressiveRQSpline,
    Concat,
    IRevNetUpsampling,
    Learned1x1Conv,
    Split,
)
from invertible.utils import output_dims_compatible
from subnets import conv_subnet, dense_subnet
from test_export import fastflow_style  # the same FastFlow-style flow as the ONNX tests

ov = pytest.importorskip("openvino")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

BF16_CPU = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")

ATOL = RTOL = 1e-4
BATCHES = (1, 5)
LOW_PRECISIONS = {"bf16", "f16"}
MARK_KEYS = (PRECISE, "DisablePrecisionConversion_0")  # as set; as OpenVINO 2026 reads it back
ENCODING = 8  # size of CFlow's positional encoding, the condition


def cflow_style() -> SequenceINN:
    """CFlow's decoder: soft-permuted AllInOneBlocks on feature vectors, each conditioned on the
    positional encoding of the vector's pixel."""
    inn = SequenceINN(6)
    for _ in range(3):
        inn.append(AllInOneBlock, cond=0, cond_shape=(ENCODING,), subnet_constructor=dense_subnet,
                   affine_clamping=1.9, permute_soft=True)
    return inn


def uflow_style() -> GraphINN:
    """U-Flow's U shape on two scales: the coarse flow's output is split, one half leaves as z0,
    the other is upsampled (invertibly) and joins the fine features in the fine flow (z1)."""
    fine, coarse = InputNode(4, 8, 8, name="fine"), InputNode(8, 4, 4, name="coarse")
    coarse_flow = Node(coarse, AllInOneBlock, {"subnet_constructor": conv_subnet}, name="cf")
    split = Node(coarse_flow, Split, {"section_sizes": [4, 4]}, name="split")
    up = Node((split, 1), IRevNetUpsampling, {}, name="up")
    cat = Node([fine, up], Concat, {}, name="cat")
    fine_flow = Node(cat, AllInOneBlock, {"subnet_constructor": conv_subnet}, name="ff")
    nodes = [fine, coarse, coarse_flow, split, up, cat, fine_flow]
    return GraphINN(nodes + [OutputNode((split, 0), name="z0"), OutputNode(fine_flow, name="z1")])


def glow_preset() -> nn.Module:
    """The Glow preset's network (squeeze, ActNorm, Learned1x1Conv, one-sided affine coupling,
    split), ActNorm initialised from a batch as training would."""
    inn = Glow((2, 8, 8), levels=2, steps=1, hidden_channels=8).inn
    inn(torch.randn(16, 2, 8, 8))
    return inn


def autoregressive() -> SequenceINN:
    """MAF's block, its IAF orientation and the autoregressive spline (D-step inverses)."""
    inn = SequenceINN(5)
    inn.append(AutoregressiveAffine, hidden_features=(16, 16), seed=0)
    inn.append(Learned1x1Conv, lu=False, seed=1)
    inn.append(AutoregressiveAffine, hidden_features=(16,), inverse_autoregressive=True, seed=2)
    inn.append(AutoregressiveRQSpline, hidden_features=(16,), bins=4, seed=3)
    return inn


MODELS = {"fastflow": fastflow_style, "cflow": cflow_style, "uflow": uflow_style,
          "glow": glow_preset, "autoregressive": autoregressive}
#: Models whose blocks start at the identity (zeroed last layers): all parameters are moved.
STARTS_AT_IDENTITY = {"glow", "autoregressive"}


def _built(name: str) -> nn.Module:
    """The model, seeded, float32, eval mode, global affine parameters off the identity."""
    torch.manual_seed(0)
    np.random.seed(0)
    model = MODELS[name]().float().eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if name in STARTS_AT_IDENTITY or param_name.endswith(("global_scale", "global_offset")):
                param.add_(0.3 * torch.randn_like(param))
    return model


def positional_encoding(rows: Tensor, cols: Tensor, size: int = ENCODING) -> Tensor:
    """CFlow-style 2-D sinusoidal encoding: half the features encode the row, half the column,
    as sines and cosines at geometrically spaced frequencies."""
    quarter = size // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter) / quarter)
    angles = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=1)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _inputs(model: Any, name: str, rev: bool, batch: int) -> Tuple[List[Tensor], ...]:
    """Random data tensors for the direction and, for CFlow, encodings of random pixels."""
    gen = torch.Generator().manual_seed(batch)
    dims = output_dims_compatible(model) if rev else model.dims_in
    xs = [torch.randn(batch, *shape, generator=gen) for shape in dims]
    pixels = torch.randint(0, 16, (2, batch), generator=gen).float()
    return xs, ([positional_encoding(*pixels)] if name == "cflow" else [])


def _low_precision_nodes(compiled: Any) -> List[str]:
    """Nodes of the compiled (executable) graph that run in, or write, bf16 or f16, except
    the all-zero start of the autoregressive blocks' D-step passes (``torch.zeros_like``: the
    plugin makes it a new node that writes bf16, and zero is exact in bf16)."""
    found = []
    for node in compiled.get_runtime_model().get_ops():
        if "zeros_like" in node.get_friendly_name():
            continue
        info = node.get_rt_info()
        precisions = info["outputPrecisions"].astype(str).split(",")
        if LOW_PRECISIONS & {info["runtimePrecision"].astype(str), *precisions}:
            found.append(node.get_friendly_name())
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Dict[Tuple[str, str], tuple]:
    """Every model in both directions once: ``(model, compiled, OpenVinoExport)``."""
    folder = tmp_path_factory.mktemp("openvino")
    core, result = ov.Core(), {}
    for name in MODELS:
        model = _built(name)
        for direction in ("forward", "inverse"):
            info = to_openvino(model, folder / name / f"{direction}.xml", direction)
            result[(name, direction)] = (model, core.compile_model(info.path, "CPU"), info)
    return result


def _check_against_pytorch(exported, name: str, direction: str, compiled: Any) -> None:
    """The compiled IR's outputs and log-det vs PyTorch at both batch sizes, to f32 size."""
    model, _, info = exported[(name, direction)]
    for batch in BATCHES:
        xs, cs = _inputs(model, name, direction == "inverse", batch)
        with torch.no_grad():
            expected = ExportAdapter(model, direction, n_inputs=len(xs))(*xs, *cs)
        result = compiled({n: t.numpy() for n, t in zip(info.input_names, xs + cs)})
        got = [result[compiled.output(n)] for n in info.output_names]
        assert len(got) == len(expected) and got[-1].shape == (batch,)
        for value, reference in zip(got, expected):
            np.testing.assert_allclose(value, reference.numpy(), rtol=RTOL, atol=ATOL)


PAIRS = [(name, direction) for name in MODELS for direction in ("forward", "inverse")]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "direction"), PAIRS)
def test_default_compile_runs_f32_and_matches_pytorch(exported, name, direction) -> None:
    """``compile_model(xml, "CPU")`` with no configuration: no bf16/f16 node, f32-size errors."""
    compiled = exported[(name, direction)][1]
    assert _low_precision_nodes(compiled) == []
    _check_against_pytorch(exported, name, direction, compiled)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "direction"), PAIRS)
def test_ir_is_exact_when_compiled_for_f32(exported, name, direction) -> None:
    """Every IR is right when OpenVINO is asked for f32 explicitly too."""
    info = exported[(name, direction)][2]
    compiled = ov.Core().compile_model(info.path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    _check_against_pytorch(exported, name, direction, compiled)


@pytest.mark.slow
def test_files_names_and_dynamic_batch(exported) -> None:
    info: OpenVinoExport = exported[("uflow", "inverse")][2]
    assert info.path.suffix == ".xml" and info.path.is_file() and info.bin_path.is_file()
    assert info.bin_path == info.path.with_suffix(".bin")
    assert info.input_names == ["z0", "z1"] and info.output_names == ["x0", "x1", "log_det"]
    assert exported[("cflow", "forward")][2].input_names == ["x", "c0"]
    model = ov.Core().read_model(info.path)
    assert [sorted(port.get_names()) for port in model.inputs] == [["z0"], ["z1"]]
    for port in list(model.inputs) + list(model.outputs):
        assert port.get_partial_shape()[0].is_dynamic


@pytest.mark.slow
@pytest.mark.skipif(not BF16_CPU, reason="no bf16 units: OpenVINO runs f32 models in f32 anyway")
def test_without_the_precise_marks_a_bf16_cpu_runs_in_bf16(exported) -> None:
    """The marks are what keeps the default compile in f32: stripped, it runs in bf16 here."""
    core = ov.Core()
    model, _, info = exported[("fastflow", "forward")]
    stripped = core.read_model(info.path)
    for node in stripped.get_ops():
        rt_info = node.get_rt_info()
        for key in [k for k, _ in rt_info.items() if k in MARK_KEYS]:
            del rt_info[key]
    compiled = core.compile_model(stripped, "CPU")
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    assert _low_precision_nodes(compiled)
    xs, _ = _inputs(model, "fastflow", False, 5)
    with torch.no_grad():
        z, _ = model(xs)
    error = np.abs(compiled(xs[0].numpy())[compiled.output("z")] - z.numpy()).max()
    assert error > 3 * ATOL  # bf16-size (8-bit mantissa), where the marked IR stays within ATOL


def _affine_model(w: np.ndarray, s: np.ndarray, b: np.ndarray, c: np.ndarray,
                  transpose_b: bool) -> Any:
    """``y = ((x @ W(^T)) * s + b - u * c - u @ W) / exp(u) * exp(u)`` as an OpenVINO model, the
    operations the inverses of ONNX coupling blocks arrive with (and the unsqueeze/squeeze
    pairs of a spline's bin search), then ``concat([y, x]) @ I`` (``y`` again, read as a next
    layer would: the plugin leaves a model output in f32)."""
    ops = ov_export._ops()
    x = ops.parameter([-1, 8], np.float32, name="x")
    u = ops.parameter([-1, 8], np.float32, name="u")
    h = ops.multiply(ops.matmul(x, ops.constant(w), False, transpose_b), ops.constant(s))
    h = ops.subtract(ops.add(h, ops.constant(b)), ops.multiply(u, ops.constant(c)))
    h = ops.subtract(h, ops.matmul(u, ops.constant(w), False, False))
    y = ops.concat([ops.divide(h, ops.exp(u)), x], -1)
    axis = ops.constant(np.array([2]))
    scale = ops.unsqueeze(ops.exp(ops.concat([u, u], -1)), axis)
    y = ops.squeeze(ops.multiply(ops.unsqueeze(y, axis), scale), axis)
    y = ops.matmul(y, ops.constant(np.eye(16, 8, dtype=np.float32)), False, False)
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y], [x, u])


@pytest.mark.parametrize("transpose_b", [True, False])
def test_plugin_rewrites_done_ahead_keep_the_layer_f32(tmp_path: Path, monkeypatch, transpose_b):
    """:func:`save_f32`'s IR gives the same values and runs in f32; with the marks alone, or
    without any one of the rewrites, the CPU plugin makes new, unmarked nodes that run in bf16
    here."""
    gen = np.random.default_rng(0)
    w = gen.standard_normal((8, 8)).astype(np.float32)
    s, b, c = gen.standard_normal((3, 1, 8)).astype(np.float32)
    x, u = gen.standard_normal((2, 5, 8)).astype(np.float32)
    model = _affine_model(w, s, b, c, transpose_b)
    core = ov.Core()
    save_f32(model, tmp_path / "done.xml")
    compiled = core.compile_model(tmp_path / "done.xml", "CPU")
    assert _low_precision_nodes(compiled) == []
    x64, u64 = x.astype(np.float64), u.astype(np.float64)
    expected = ((x64 @ (w.T if transpose_b else w)) * s + b - u64 * c - u64 @ w)
    got = compiled({"x": x, "u": u})[compiled.output("y")]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if not BF16_CPU:
        return
    marked_only = _affine_model(w, s, b, c, transpose_b)
    for node in marked_only.get_ops():
        node.get_rt_info()[PRECISE] = ""
    ov.save_model(marked_only, tmp_path / "marked.xml", compress_to_fp16=False)
    assert _low_precision_nodes(core.compile_model(tmp_path / "marked.xml", "CPU"))
    for rewrite in ("fold_linear_constants", "unfuse_elementwise", "widen_scalars",
                    "reshape_squeezes"):
        with monkeypatch.context() as patch:
            patch.setattr(ov_export, rewrite, lambda model: None)
            save_f32(_affine_model(w, s, b, c, transpose_b), tmp_path / f"{rewrite}.xml")
        assert _low_precision_nodes(core.compile_model(tmp_path / f"{rewrite}.xml", "CPU"))


def test_errors_name_to_openvino(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inn = fastflow_style()
    with pytest.raises(ValueError, match="to_openvino: direction must be"):
        to_openvino(inn, tmp_path / "a.xml", direction="backward")
    with pytest.raises(ValueError, match=r"to_openvino: path must end in \.xml"):
        to_openvino(inn, tmp_path / "a.onnx")
    with pytest.raises(ValueError, match=r"to_openvino: example_inputs must be 1 tensor"):
        to_openvino(inn, tmp_path / "a.xml", example_inputs=torch.randn(2, 5))
    with pytest.raises(TypeError, match=r"to_openvino: needs a torch\.nn\.Module"):
        to_openvino(object(), tmp_path / "a.xml")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'invertible\[openvino\]'"):
        to_openvino(inn, tmp_path / "a.xml")
    assert not (tmp_path / "a.xml").exists()
