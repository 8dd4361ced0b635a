r"""
A multi-scale image flow: Glow on digits
========================================

Glow (Kingma and Dhariwal, 2018) is a flow on images built in levels. Each level *squeezes*
the image, :math:`(C, H, W) \to (4C, H/2, W/2)`, runs a few flow steps (ActNorm, a learned
invertible :math:`1 \times 1` convolution, an affine coupling), then *factors out* half of the
channels as a latent and passes the other half on to the next level. Fine detail thus leaves
the network early, and the deep levels work on small, coarse tensors.

:func:`invertible.flows.Glow` builds this network as a
:class:`~invertible.framework.GraphINN` from the public blocks, with Glow's learned prior on
the factored-out latents, and returns a :class:`~invertible.distributions.FlowDistribution`.
Here it learns scikit-learn's bundled 8 × 8 handwritten digits (no download).

The numbers come from a short run (8 epochs of a small network, a few seconds on one CPU
thread); the samples are recognisable strokes rather than crisp digits.
"""

# %%
# Data and dequantisation
# -----------------------
# The digits have 17 grey levels :math:`k \in \{0, \dots, 16\}`. A density on continuous
# values would put infinite density on these discrete points, so each image is
# *dequantised*: :math:`x = (k + u)/17 - \tfrac12` with fresh uniform noise
# :math:`u \sim U[0, 1)^{64}` at every use (:func:`invertible.metrics.dequantize`). The
# model's bits per dimension then bound the code length of the discrete digits.

import math

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits

from invertible import flows
from invertible.metrics import dequantize

LEVELS = 17
grey_levels = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1)
gen = torch.Generator().manual_seed(0)
order = torch.randperm(len(grey_levels), generator=gen)
train, test = grey_levels[order[:1400]], grey_levels[order[1400:]]


def to_data(k: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Grey levels to dequantised model inputs in [-1/2, 1/2)."""
    return dequantize(k, LEVELS, offset=-0.5, generator=generator)


print("train", tuple(train.shape), " test", tuple(test.shape))

# %%
# The Glow preset
# ---------------
# Two levels of four steps each. The network has two outputs: the latent factored out after
# the first level, :math:`(2, 4, 4)`, and the final one, :math:`(8, 2, 2)`; together they hold
# the 64 numbers of an image. ActNorm initialises its scale and bias from the first batch it
# sees, so the first call is on data.

glow = flows.Glow((1, 8, 8), levels=2, steps=4, hidden_channels=32, seed=0)
print("latent shapes:", glow.output_shapes)
print("parameters:", sum(p.numel() for p in glow.parameters()))
with torch.no_grad():
    glow.log_prob(to_data(train[:256], gen))  # initialises ActNorm from data

# %%
# Training in bits per dimension
# ------------------------------
# ``bits_per_dim(x, n_bins=17)`` is :math:`-\log p(x) / (64 \ln 2) + \log_2 17`: the NLL in
# bits per pixel plus the dequantisation term. A model that spreads its mass uniformly over
# the 17 levels scores :math:`\log_2 17 = 4.09`. The test set is scored under one fixed noise
# draw, so that the epochs are comparable.

optimiser = torch.optim.Adam(glow.parameters(), lr=5e-3)
test_x = to_data(test, torch.Generator().manual_seed(1))
history = []
for epoch in range(1, 9):
    glow.train()
    for idx in torch.randperm(len(train), generator=gen).split(64):
        loss = glow.bits_per_dim(to_data(train[idx], gen), n_bins=LEVELS)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    glow.eval()
    with torch.no_grad():
        history.append(glow.bits_per_dim(test_x, n_bins=LEVELS).item())
    print(f"epoch {epoch}  last batch {loss.item():.3f}  "
          f"test {history[-1]:.3f} bits/dim")

fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
ax.plot(range(1, 9), history, marker="o", label="Glow, test set")
ax.axhline(math.log2(LEVELS), color="grey", linestyle="--",
           label="uniform over 17 levels")
ax.set(title="held-out bits/dim during training", xlabel="epoch", ylabel="bits/dim")
ax.legend()
plt.show()

# %%
# The inverse is exact up to float round-off, through squeezes, splits and the graph:

with torch.no_grad():
    z = glow.inn(test_x)[0]  # (factored-out latent, final latent)
    error = (glow.inn(z, rev=True)[0] - test_x).abs().max()
print(f"inverse error max|x - f^-1(f(x))|: {error:.1e}")

# %%
# Samples at two temperatures
# ---------------------------
# Sampling draws the final latent, then the factored-out one from its learned prior, and runs
# the inverse. At *temperature* :math:`T` every Gaussian's standard deviation is multiplied by
# :math:`T`; :math:`T < 1` trades variety for cleaner strokes. The learned prior samples from
# torch's global generator, so we seed it.

torch.manual_seed(0)
rows = {"real test digits": test_x[:10]}
for t in (0.7, 1.0):
    rows[f"samples, temperature {t}"] = glow.sample(10, temperature=t)

fig = plt.figure(figsize=(9, 4.4), layout="constrained")
fig.suptitle("Glow on 8 × 8 digits: real images (top) against samples")
for subfig, (title, images) in zip(fig.subfigures(3, 1, hspace=0.05), rows.items()):
    subfig.set_facecolor("#e8f0f8" if title.startswith("real") else "#fbeee4")
    subfig.suptitle(title, fontsize=10)
    for ax, image in zip(subfig.subplots(1, 10), images):
        ax.imshow((image[0] + 0.5).clamp(0, 1), cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
plt.show()
