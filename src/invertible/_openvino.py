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

The mark is not carried over to the new nodes the plugin's own rewrites make, and those run in
bf16 (or write bf16 into the next node). The IR is therefore written in the forms the plugin
would rewrite it into, so that it finds nothing to rewrite and every node keeps its mark:
:func:`unfuse_elementwise` writes subtractions as additions of a negation and divisions as
products with a reciprocal, as the plugin lowers them; :func:`widen_scalars` gives one-element
constants of products, sums and powers a channel axis, so that the plugin does not replace
those nodes by its scalar power node; :func:`fold_linear_constants` folds a constant scale and
bias that follow a product by constant weights (every ``nn.Linear``; an ``AllInOneBlock``'s
soft permutation with its global affine) into the weights, which the plugin would otherwise
fuse into a new node.

Measured on a CPU with AMX (FastFlow-style flow, 8 blocks on 64x16x16): the default compile of
an unmarked IR errs by ~3e-3 in ``z`` and ~0.3 in the log-det; the marked IR by ~2e-6 and
~1e-4, the same as compiling with ``INFERENCE_PRECISION_HINT="f32"``. The inverse of a
CFlow-style flow (dense subnets, conditions, soft permutation, global affine) erred by 1e-2 in
``x`` with the marks alone and by 5e-7 with the rewrites done ahead; with OpenVINO 2024.2 both
its directions need :func:`widen_scalars` too (for one-element factors). FastFlow-, CFlow-
and U-Flow-style flows run all-f32 in both directions with OpenVINO 2024.2 and 2026.4. Also
checked with 2026.4, both directions all-f32 within 2e-5: GLOW, RealNVP, NICE, GIN, one-sided
affine and AllInOne couplings (dense and conv subnets), ActNorm, fixed and learned 1x1
convolutions, Haar downsampling, Householder and orthogonal transforms, rational-quadratic
splines, InvAuto layers; and, with :func:`reshape_squeezes`, the autoregressive blocks
(``AutoregressiveAffine`` both ways, ``AutoregressiveRQSpline``, whose inverse erred by 1e-2
without it) and the Glow preset. One node a plugin rewrite makes still writes bf16: the
all-zero start of the autoregressive blocks' D-step passes, which is exact (zero is), so their
outputs stay f32-exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["PRECISE", "fold_linear_constants", "ir_from_onnx", "reshape_squeezes", "save_f32",
           "unfuse_elementwise", "widen_scalars"]

#: The rt_info key that keeps a node out of the plugins' lowering to f16/bf16.
PRECISE = "precise_0"


def _ops() -> Any:
    """OpenVINO's opset 13 (under ``openvino.runtime`` in 2024.2, gone from there in 2026)."""
    try:
        from openvino import opset13 as ops
    except ImportError:
        from openvino.runtime import opset13 as ops
    return ops


def ir_from_onnx(onnx_path: Path, xml_path: Path) -> None:
    """Convert the ONNX file to the IR ``xml_path`` (+ ``.bin``) with :func:`save_f32`."""
    import openvino

    save_f32(openvino.convert_model(str(onnx_path)), xml_path)


def save_f32(model: Any, xml_path: Path) -> None:
    """Save the OpenVINO ``model`` as the IR ``xml_path``: the plugin's rewrites done ahead
    (:func:`unfuse_elementwise` first, so that the -1 of a subtracted product by constant
    weights is then folded into them by :func:`fold_linear_constants`), every node marked
    precise, weights stored in f32 (``compress_to_fp16=False``)."""
    import openvino

    unfuse_elementwise(model)
    reshape_squeezes(model)
    widen_scalars(model)
    fold_linear_constants(model)
    for node in model.get_ops():
        node.get_rt_info()[PRECISE] = ""
    openvino.save_model(model, str(xml_path), compress_to_fp16=False)


def _constant(value: Any) -> Optional[np.ndarray]:
    """The data of ``value`` if a ``Constant`` produces it, else ``None``."""
    node = value.get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None


def _replace(old: Any, new: Any) -> None:
    """Put ``new`` in the place of the single-output node ``old``, keeping its names."""
    names = old.output(0).get_names()
    new.set_friendly_name(old.get_friendly_name())
    old.output(0).replace(new.output(0))
    new.output(0).get_tensor().set_names(names)


def _linear_operands(node: Any) -> Optional[tuple]:
    """``(x, W, v, transpose_b)`` if ``node`` is ``MatMul(x, W) (+ or *) v`` with ``W`` a 2-D
    f32 constant and ``v`` a constant with one value per output feature (or one value that
    broadcasts) no higher in rank than the product, the product used only by ``node``."""
    values = list(node.input_values())
    kinds = [value.get_node().get_type_name() for value in values]
    if sorted(kinds) != ["Constant", "MatMul"]:
        return None
    matmul = values[kinds.index("MatMul")].get_node()
    v, w = _constant(values[kinds.index("Constant")]), _constant(matmul.input_value(1))
    flags = matmul.get_attributes()
    if v is None or w is None or w.ndim != 2 or w.dtype != np.float32 or flags["transpose_a"]:
        return None
    features = w.shape[0] if flags["transpose_b"] else w.shape[1]
    rank = matmul.get_output_partial_shape(0).rank
    if (v.size not in (1, features) or v.shape[-1:] not in [(1,), (features,), ()]
            or not rank.is_static or v.ndim > rank.get_length()
            or len(matmul.output(0).get_target_inputs()) != 1):
        return None
    per_feature = np.broadcast_to(v.reshape(-1), (features,)).astype(np.float32)
    return matmul.input_value(0), w, per_feature, flags["transpose_b"]


def fold_linear_constants(model: Any) -> None:
    """Rewrite every ``MatMul(x, W) * s`` of ``model`` as ``x @ (W s)`` and every
    ``MatMul(x, W) + b`` as ``concat([x, 1]) @ [W; b]``, in place (``W``, ``s``, ``b``
    constant, ``s`` and ``b`` one value per output feature).

    Same values to f32 rounding (the plugin folds the scale into ``W`` itself). Each is one
    product the CPU plugin leaves alone, where it would fuse the pair into a new, unmarked
    node (the scale into new weights; the bias into a ``FullyConnected``) that runs in bf16.
    The scale comes first in graph order, so ``MatMul * s + b`` ends as one product."""
    ops = _ops()
    for node in model.get_ordered_ops():
        kind = node.get_type_name()
        found = _linear_operands(node) if kind in ("Add", "Multiply") else None
        if found is None:
            continue
        x, w, per_feature, transpose_b = found
        axis = 1 if transpose_b else 0  # the input-feature axis of W
        if kind == "Multiply":
            weights = w * np.expand_dims(per_feature, axis)
        else:
            weights = np.concatenate([w, np.expand_dims(per_feature, axis)], axis=axis)
            column = ops.gather(x, ops.constant(np.array([0])), ops.constant(np.array(-1)))
            x = ops.concat([x, ops.broadcast(ops.constant(np.float32(1.0)),
                                             ops.shape_of(column))], -1)
        _replace(node, ops.matmul(x, ops.constant(weights), False, transpose_b))


def _constant_factor(value: Any) -> Optional[tuple]:
    """``(x, c)`` if ``value`` is ``x * c`` with ``c`` constant and used only once."""
    node = value.get_node()
    if node.get_type_name() != "Multiply" or len(value.get_target_inputs()) != 1:
        return None
    c = _constant(node.input_value(1))
    return None if c is None else (node.input_value(0), c)


def _lowered(ops: Any, kind: str, a: Any, b: Any) -> Any:
    """``a + b * (-1)`` for ``kind`` "Subtract", ``a * b ** (-1)`` for "Divide", in the
    forms :func:`unfuse_elementwise` describes."""
    b_data, factor, minus_one = _constant(b), _constant_factor(b), ops.constant(np.float32(-1))
    if b_data is not None and kind == "Subtract":
        return ops.add(a, ops.constant(-b_data))
    if b_data is not None:
        return ops.multiply(a, ops.constant((1 / b_data).astype(np.float32)))
    if factor is not None and kind == "Subtract":
        return ops.add(a, ops.multiply(factor[0], ops.constant(-factor[1])))
    if kind == "Subtract":
        return ops.add(a, ops.multiply(b, minus_one))
    return ops.multiply(a, ops.power(b, minus_one))


def unfuse_elementwise(model: Any) -> None:
    """Rewrite f32 ``a - b`` as ``a + b * (-1)`` and ``a / b`` as ``a * b ** (-1)`` in place,
    the forms the CPU plugin lowers them to itself, so that it finds nothing to rewrite.

    ``b * (-1)`` joins a constant factor of ``b`` (``x * (-c)``, where the plugin would merge
    the two products into a new node) or negates a constant ``b`` (a product by constant
    weights takes the -1 into them in :func:`fold_linear_constants`); a division by a constant
    becomes a product with its reciprocal."""
    ops = _ops()
    for node in model.get_ordered_ops():
        kind = node.get_type_name()
        f32 = node.get_output_element_type(0).get_type_name() == "f32"
        if kind in ("Subtract", "Divide") and f32:
            _replace(node, _lowered(ops, kind, *node.input_values()))


def widen_scalars(model: Any) -> None:
    """Give each one-element constant operand of an f32 ``Multiply``, ``Add`` or ``Power``
    the other operand's channel extent (shape ``(1, C, 1, ...)``, same values), in place.

    With one element the CPU plugin replaces the node by its scalar power node (``x ** p * a
    + b``), a new node without the mark that writes bf16 (the -1 powers and factors that
    :func:`unfuse_elementwise` writes; a clamp's scale with OpenVINO 2024.2). Operands without
    a static channel extent above 1 (the log-det's per-sample sums) keep theirs: the plugin
    fuses those nodes into the marked node before them, which keeps them f32."""
    ops = _ops()
    for node in model.get_ordered_ops():
        f32 = node.get_output_element_type(0).get_type_name() == "f32"
        if node.get_type_name() not in ("Multiply", "Add", "Power") or not f32:
            continue
        for port, other in ((0, 1), (1, 0)):
            data, shape = _constant(node.input_value(port)), node.get_input_partial_shape(other)
            rank = shape.rank.get_length() if shape.rank.is_static else 0
            if (data is None or data.size != 1 or rank < max(2, data.ndim)
                    or not shape[1].is_static or shape[1].get_length() < 2):
                continue
            dims = [1, shape[1].get_length()] + [1] * (rank - 2)
            widened = np.full(dims, data.item(), data.dtype)
            node.input(port).replace_source_output(ops.constant(widened).output(0))


def reshape_squeezes(model: Any) -> None:
    """Rewrite every ``Squeeze`` and ``Unsqueeze`` of ``model`` as the ``Reshape`` the CPU
    plugin turns them into, in place: the target shape is the output's, with ``-1`` for its
    one dynamic extent (the batch; nodes with more are left alone).

    The plugin's own ``Reshape`` is a new node without the mark and writes bf16 (the
    searchsorted and gathers of a spline's inverse squeeze and unsqueeze dozens of times)."""
    ops = _ops()
    for node in model.get_ordered_ops():
        shape = node.get_output_partial_shape(0)
        if node.get_type_name() not in ("Squeeze", "Unsqueeze") or not shape.rank.is_static:
            continue
        dims = [d.get_length() if d.is_static else -1 for d in shape]
        if dims.count(-1) <= 1:
            target = ops.constant(np.array(dims, dtype=np.int64))
            _replace(node, ops.reshape(node.input_value(0), target, False))
