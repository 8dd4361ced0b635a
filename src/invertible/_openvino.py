"""ONNX -> OpenVINO IR conversion that keeps every node in float32 (OpenVINO imported on use).

OpenVINO's CPU plugin runs an f32 model in bf16 by default on CPUs with bf16 units (AVX-512
BF16, AMX) and its GPU plugin in f16: its "performance" execution mode lowers every node it
can, whatever precision the IR stores. For a flow that costs about 1e-3 in ``z`` and more in the
log-det (a sum over every element), i.e. in the likelihood or anomaly score. The caller of
``compile_model`` can ask for f32 (``INFERENCE_PRECISION_HINT``), but a file that is deployed
elsewhere should not depend on every caller knowing that.

The IR therefore asks for it itself. A model-level ``runtime_options`` entry does not work: the
CPU and GPU plugins read only the KV-cache, dynamic-quantisation and weights-path options from
it (checked with OpenVINO 2026.4: ``INFERENCE_PRECISION_HINT`` there is ignored). What the
plugins do honour is the per-node "precise" mark (``precise_0`` in a node's rt_info, written
to the IR as ``DisablePrecisionConversion``), which keeps a node out of the lowering to f16 and
bf16. :func:`ir_from_onnx` marks every node. The compiled model still reports the plugin's
default ``INFERENCE_PRECISION_HINT`` (bf16), but no node runs in it (the executable graph's
``runtimePrecision``). The mark is only read back from an IR file (an in-memory model with it
set from Python still runs in bf16), so compile the saved ``.xml``.

One fusion of the CPU plugin drops the mark: a ``MatMul`` by constant weights followed by the
``Add`` of a constant bias (every ``nn.Linear``) becomes one new ``FullyConnected`` node, and
the mark is not carried over to new nodes, so it would run in bf16. :func:`fold_biases` writes
such a layer as one product instead, ``[x, 1] @ [W; b]``, which the plugin converts without
fusing, keeping the mark.

Measured on a CPU with AMX (FastFlow-style flow, 8 blocks on 64x16x16): the default compile of
an unmarked IR errs by ~3e-3 in ``z`` and ~0.3 in the log-det; the marked IR by ~2e-6 and
~1e-4, the same as compiling with ``INFERENCE_PRECISION_HINT="f32"``.

Known gap: other plugin rewrites also make new, unmarked nodes. The inverse of an
``AllInOneBlock`` with a dense subnet meets two (a division by a tensor turned into a
multiplication, the soft permutation's product fused with the global scale), so that direction
of a CFlow-style flow still runs a few nodes in bf16 (1e-2 in ``x`` measured); compile it with
``INFERENCE_PRECISION_HINT="f32"`` where that matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["PRECISE", "fold_biases", "ir_from_onnx", "save_f32"]

#: The rt_info key that keeps a node out of the plugins' lowering to f16/bf16.
PRECISE = "precise_0"


def ir_from_onnx(onnx_path: Path, xml_path: Path) -> None:
    """Convert the ONNX file to the IR ``xml_path`` (+ ``.bin``) with :func:`save_f32`."""
    import openvino

    save_f32(openvino.convert_model(str(onnx_path)), xml_path)


def save_f32(model: Any, xml_path: Path) -> None:
    """Save the OpenVINO ``model`` as the IR ``xml_path``: biases folded into their products,
    every node marked precise, weights stored in f32 (``compress_to_fp16=False``)."""
    import openvino

    fold_biases(model)
    for node in model.get_ops():
        node.get_rt_info()[PRECISE] = ""
    openvino.save_model(model, str(xml_path), compress_to_fp16=False)


def _folded_weights(add: Any) -> Optional[tuple]:
    """``(x, [W; b], transpose_b)`` if ``add`` is ``MatMul(x, W) + b`` with constant f32
    ``W`` (2-D) and ``b`` (one value per output feature), the product used only there."""
    by_kind = {value.get_node().get_type_name(): value.get_node() for value in add.input_values()}
    if sorted(by_kind) != ["Constant", "MatMul"]:
        return None
    bias, matmul = by_kind["Constant"], by_kind["MatMul"]
    weights, flags = matmul.input_value(1).get_node(), matmul.get_attributes()
    if weights.get_type_name() != "Constant" or flags["transpose_a"]:
        return None
    w, b = weights.get_data(), bias.get_data()
    features = w.shape[0] if flags["transpose_b"] else w.shape[-1]
    rank = matmul.get_output_partial_shape(0).rank
    if (w.ndim != 2 or w.dtype != np.float32 or b.size != features or b.shape[-1] != features
            or not rank.is_static or b.ndim > rank.get_length()
            or len(matmul.output(0).get_target_inputs()) != 1):
        return None
    column = b.reshape(-1, 1) if flags["transpose_b"] else b.reshape(1, -1)
    stacked = np.concatenate([w, column], axis=1 if flags["transpose_b"] else 0)
    return matmul.input_value(0), stacked, flags["transpose_b"]


def fold_biases(model: Any) -> None:
    """Rewrite every ``MatMul(x, W) + b`` of ``model`` as ``concat([x, 1]) @ [W; b]`` in place
    (same value; one product the CPU plugin does not fuse, so the precise mark survives)."""
    try:
        from openvino import opset13 as ops
    except ImportError:  # OpenVINO 2024.2 has it only under openvino.runtime (gone in 2026)
        from openvino.runtime import opset13 as ops

    for add in model.get_ordered_ops():
        found = _folded_weights(add) if add.get_type_name() == "Add" else None
        if found is None:
            continue
        x, stacked, transpose_b = found
        column = ops.gather(x, ops.constant(np.array([0])), ops.constant(np.array(-1)))
        ones = ops.broadcast(ops.constant(np.float32(1.0)), ops.shape_of(column))
        product = ops.matmul(ops.concat([x, ones], -1), ops.constant(stacked), False, transpose_b)
        names = add.output(0).get_names()
        add.output(0).replace(product.output(0))
        product.output(0).get_tensor().set_names(names)
