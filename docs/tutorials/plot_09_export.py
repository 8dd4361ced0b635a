"""
Export to ONNX and OpenVINO
===========================

A trained flow is deployed without PyTorch by exporting one direction of it as a graph of
plain tensors: the forward direction ``x -> (z, log_det)`` scores data (an anomaly detector
thresholds the negative log-likelihood), the inverse direction ``z -> (x, log_det)`` samples.

* :func:`invertible.export.to_onnx` writes either direction to an ONNX file, with a dynamic
  batch axis, for onnxruntime and every other ONNX runtime;
* :func:`invertible.export.to_openvino` writes an OpenVINO IR (``.xml`` and ``.bin``), the
  format of Intel's runtime that anomalib deploys its flows with, which OpenVINO's CPU runtime
  runs in float32 with its default settings.

Both need the optional dependencies: ``pip install invertible[export]`` for ONNX (``onnx``,
``onnxscript``, and ``onnxruntime`` to run the files), ``invertible[openvino]`` for OpenVINO.
"""

# %%
# A FastFlow-style flow
# ---------------------
# FastFlow models the feature map of a pretrained CNN with a chain of ``AllInOneBlock``
# couplings whose subnets are small convolutional networks. Ours has two blocks on
# 8 x 8 x 8 feature maps. Export traces the network in eval mode; here it is simply untrained.

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

import invertible.framework as Ff
import invertible.modules as Fm
from invertible.export import to_onnx


def conv_subnet(c_in, c_out):
    hidden = 2 * c_in  # FastFlow's hidden width is a multiple of its input's
    return nn.Sequential(
        nn.Conv2d(c_in, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, c_out, 3, padding=1),
    )


torch.manual_seed(0)
inn = Ff.SequenceINN(8, 8, 8)
for _ in range(2):
    inn.append(Fm.AllInOneBlock, subnet_constructor=conv_subnet, permute_soft=False)
inn.eval()

x = torch.randn(20, 8, 8, 8)
with torch.no_grad():
    z, log_det = inn(x)
    x_back, log_det_back = inn(z, rev=True)

folder = tempfile.TemporaryDirectory()  # removed at the end of the page
out = Path(folder.name)

# %%
# To ONNX, both directions
# ------------------------
# ``to_onnx`` makes up example inputs from the shapes declared when the network was built,
# traces the network with ``torch.export`` and writes the graph. It returns the file and the
# names of the graph's inputs and outputs: ``x`` (or ``z``), then the conditions ``c0``, ``c1``,
# ... of a conditional network; the outputs, then ``log_det``.

forward_file = to_onnx(inn, out / "flow.onnx")
inverse_file = to_onnx(inn, out / "flow_inverse.onnx", direction="inverse")
print(forward_file.input_names, "->", forward_file.output_names)
print(inverse_file.input_names, "->", inverse_file.output_names)

# %%
# onnxruntime runs the files on NumPy arrays. The batch axis is dynamic: the graphs were traced
# with a made-up batch of two and run here on 20 samples.

scorer = onnxruntime.InferenceSession(
    forward_file.path, providers=["CPUExecutionProvider"]
)
sampler = onnxruntime.InferenceSession(
    inverse_file.path, providers=["CPUExecutionProvider"]
)
z_onnx, log_det_onnx = scorer.run(None, {"x": x.numpy()})
x_onnx, log_det_back_onnx = sampler.run(None, {"z": z.numpy()})


def max_difference(a, b):
    return float(np.abs(np.asarray(a) - b.numpy()).max())


print(
    f"forward: max |dz| {max_difference(z_onnx, z):.1e}, "
    f"max |d log-det| {max_difference(log_det_onnx, log_det):.1e}"
)
print(
    f"inverse: max |dx| {max_difference(x_onnx, x_back):.1e}, "
    f"max |d log-det| {max_difference(log_det_back_onnx, log_det_back):.1e}"
)

# %%
# Both directions agree with PyTorch to float32 round-off. The inverse graph's log-det is
# that of the inverse map, minus the forward one.
#
# To OpenVINO
# -----------
# OpenVINO reads ONNX files too, but its CPU runtime chooses the precision it computes in:
# on CPUs with bfloat16 units (AVX-512 BF16, AMX) it runs a float32 model in bfloat16 unless
# the caller asks otherwise. The default on the machine that built this page:

import openvino

core = openvino.Core()
print(
    "default inference precision:",
    core.get_property("CPU", "INFERENCE_PRECISION_HINT"),
)

plain = core.compile_model(openvino.convert_model(forward_file.path), "CPU")
z_plain, log_det_plain = plain({"x": x.numpy()}).values()
print(
    f"the ONNX file as it is: max |dz| {max_difference(z_plain, z):.1e}, "
    f"max |d log-det| {max_difference(log_det_plain, log_det):.1e}"
)

# %%
# Where the default is bfloat16, the convolutions keep about three significant digits instead
# of float32's seven, and the error reaches ``z`` and the log-det, i.e. every likelihood and
# anomaly score. ``to_openvino`` writes an IR that asks to be run in float32 itself, so whoever
# deploys it compiles it with the defaults:

from invertible.export import to_openvino

ir = to_openvino(inn, out / "flow.xml")
print(ir.path.name, ir.bin_path.name, ir.input_names, "->", ir.output_names)

compiled = core.compile_model(ir.path, "CPU")
z_ov, log_det_ov = compiled({"x": x.numpy()}).values()
print(
    f"to_openvino's IR: max |dz| {max_difference(z_ov, z):.1e}, "
    f"max |d log-det| {max_difference(log_det_ov, log_det):.1e}"
)

# %%
# ``direction="inverse"`` exports the sampler the same way. Conditions, several inputs and
# outputs (a ``GraphINN``), and image flows of any size the network accepts export alike; a
# block that cannot be exported fails with a ``RuntimeError`` that names it.

folder.cleanup()
