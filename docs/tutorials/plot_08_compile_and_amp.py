"""
torch.compile and mixed precision
=================================

Two ways to make a flow cheaper to run, and what each one does to its numbers:

* ``torch.compile`` traces the network into one graph and hands it to a compiler backend.
  ``SequenceINN`` and ``GraphINN`` compile with ``fullgraph=True`` (no graph breaks) in both
  directions, for every block except ``IResNetLayer``, ``OrthogonalTransform`` and the InvAuto
  linear layers with ``jac=True``. The results equal eager mode's.
* ``torch.autocast`` runs the matrix products in bfloat16 (or float16 on GPUs). ``invertible``
  then sums the log-determinant in float32, so that rounding does not pile up over the blocks.
"""

# %%
# A small flow
# ------------
# Two couplings on 8-D vectors: an ``AllInOneBlock`` and a GLOW coupling.

import copy
import textwrap
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

import invertible.framework as Ff
import invertible.modules as Fm


def subnet(c_in, c_out):
    return nn.Sequential(nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, c_out))


def nll(z, log_det):
    """Per-sample negative log-likelihood under N(0, I), without the constant."""
    return 0.5 * z.float().pow(2).flatten(1).sum(1) - log_det.float()


torch.manual_seed(0)
inn = Ff.SequenceINN(8)
inn.append(Fm.AllInOneBlock, subnet_constructor=subnet)
inn.append(Fm.GLOWCouplingBlock, subnet_constructor=subnet)
x = torch.randn(512, 8) * torch.linspace(0.5, 2.0, 8)

# %%
# Compiling
# ---------
# The default backend, inductor, generates and compiles C++ code for the CPU. That takes a
# while: on the busy 2-core machine these pages were written on, 40 s for this flow's training
# step and 15 s for its inverse (each direction, and training, compile anew). To keep the page
# quick we compile with ``backend="aot_eager"``: the same tracing (Dynamo, and AOTAutograd for
# the backward pass) without code generation. It shows that the flow compiles as one graph and
# gives the same numbers, not how fast it runs; for speed, leave ``backend`` out in your code.

compiled = torch.compile(inn, fullgraph=True, backend="aot_eager")

start = time.perf_counter()
z_compiled, log_det_compiled = compiled(x)  # traced with gradients: a training step
nll(z_compiled, log_det_compiled).mean().backward()
seconds = time.perf_counter() - start
print(f"first training step (compiles forward and backward): {seconds:.1f} s")

z, log_det = inn(x)
print(
    f"forward, compiled vs eager: max |dz| {(z_compiled - z).abs().max():.1e}, "
    f"max |d log-det| {(log_det_compiled - log_det).abs().max():.1e}"
)

with torch.no_grad():
    start = time.perf_counter()
    x_compiled, _ = compiled(z, rev=True)
    seconds = time.perf_counter() - start
    print(f"first inverse call (compiles the inverse): {seconds:.1f} s")
    x_eager, _ = inn(z, rev=True)
print(
    f"inverse, compiled vs eager: max |dx| {(x_compiled - x_eager).abs().max():.1e}"
)
print(f"round trip: max |x - f^-1(f(x))| {(x_compiled - x).abs().max():.1e}")

# %%
# ``compiled`` shares its parameters with ``inn``: train either, use either. A network with
# ``memory_efficient=True`` trains by standard backprop while it is being compiled.
#
# Mixed precision: what runs in which dtype
# -----------------------------------------
# Mixed precision pays off on convolutions, so we take an image flow: ``ActNorm``, then four
# ``AllInOneBlock`` couplings with convolutional subnets, on 4 x 16 x 16 inputs of small spread
# (standard deviation 0.05, as for normalised features). ``ActNorm`` initialises itself on the
# first batch it sees, to give that batch zero mean and unit variance; it thereby scales the
# data by about 20 in each of the 1024 dimensions, so the log-det is about
# :math:`1024 \ln 20 \approx 3070` per sample: a trained flow's log-dets are as large.


def conv_subnet(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, c_out, 1),  # 1x1
    )


torch.manual_seed(0)
image_flow = Ff.SequenceINN(4, 16, 16)
image_flow.append(Fm.ActNorm)
for _ in range(4):
    image_flow.append(Fm.AllInOneBlock, subnet_constructor=conv_subnet)
images = 0.3 + 0.05 * torch.randn(64, 4, 16, 16)
with torch.no_grad():
    image_flow(images)  # the first call initialises ActNorm
    z32, log_det32 = image_flow(images)
mean_nll = nll(z32, log_det32).mean()
print(f"float32: mean log-det {log_det32.mean():.1f}, mean NLL {mean_nll:.1f}")

# %%
# Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` PyTorch runs convolutions and linear
# layers in bfloat16 and most elementwise operations in the dtype of their inputs. Hooks on the
# modules show what reaches them and what leaves them:

seen = {}


def record(module, inputs, output):
    data = inputs[0] if torch.is_tensor(inputs[0]) else inputs[0][0]
    out = output if torch.is_tensor(output) else output[0][0]
    seen.setdefault(type(module).__name__, (data.dtype, out.dtype))


hooks = [
    m.register_forward_hook(record)
    for m in image_flow.modules()
    if isinstance(m, (nn.Conv2d, Fm.ActNorm, Fm.AllInOneBlock))
]
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    z_amp, log_det_amp = image_flow(images)
for hook in hooks:
    hook.remove()
for name, (dtype_in, dtype_out) in seen.items():
    print(f"{name:14s} gets {dtype_in}, returns {dtype_out}")
print(f"network output z: {z_amp.dtype}, log-det: {log_det_amp.dtype}")

# %%
# The subnets compute the scales and shifts in bfloat16; the couplings apply them to the
# float32 data, so ``z`` stays float32. Each block's log-det is added into a float32 sum:
# that is ``invertible``'s rule under autocast (outside autocast the sum keeps the input's
# dtype, so a float64 flow stays float64).
#
# How accurate is it? Compare with the float32 network, and with the whole network converted
# to bfloat16 (``.to(torch.bfloat16)``, data in bfloat16, no autocast), where every value and
# the log-det sum have bfloat16's 8 significant bits: near 3070 its spacing is 16.

with torch.no_grad():
    bf16_flow = copy.deepcopy(image_flow).to(torch.bfloat16)
    z16, log_det16 = bf16_flow(images.to(torch.bfloat16))

reference = nll(z32, log_det32)
for label, (z_low, log_det_low) in {
    "autocast bf16": (z_amp, log_det_amp),
    "bf16 network": (z16, log_det16),
}.items():
    log_det_error = (log_det_low.float() - log_det32).abs().max()
    nll_error = (nll(z_low, log_det_low) - reference).abs().max()
    print(
        f"{label:14s}: log-det {log_det_low.dtype}, max error {log_det_error:.3f}; "
        f"NLL max error {nll_error:.3f}"
    )

fig, ax = plt.subplots(figsize=(5.5, 3.8))
ax.scatter(log_det32, log_det16.float() - log_det32, s=8, label="bf16 network")
ax.scatter(log_det32, log_det_amp - log_det32, s=8, label="autocast bf16")
ax.axhline(0.0, color="black", linewidth=0.8)
ax.set_xlabel("log |det J| in float32")
ax.set_ylabel("error of the bfloat16 log-det")
ax.set_title("Log-determinant under bfloat16, per sample")
ax.legend()
fig.tight_layout()

# %%
# Under autocast the log-det stays within a few hundredths of float32's; the NLL's error comes
# mostly from ``z``, through the bfloat16 scales and shifts. That is fine for training; for
# scores that must match a float32 reference closely, run in float32. The inverse under
# autocast is not exact to float32 precision either, since the subnets see bfloat16-rounded
# copies of the reconstructed values:

with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    images_back, _ = image_flow(z_amp, rev=True)
error = (images_back - images).abs().max()
print(f"round trip under autocast: max |x - f^-1(f(x))| {error:.1e}")

# %%
# Outside autocast, dtypes must match: a block refuses data whose dtype differs from its
# parameters' with a ``TypeError`` that names it, before any subnet runs.

try:
    image_flow(images.to(torch.bfloat16))
except TypeError as error:
    print(textwrap.fill(f"TypeError: {error}", 88))
