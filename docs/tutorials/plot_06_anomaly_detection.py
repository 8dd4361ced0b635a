r"""
Anomaly detection, FastFlow-style
=================================

FastFlow (Yu et al., 2021), one of the flow models in anomalib, detects defects in images
without ever seeing one: a frozen feature extractor turns an image into a map of feature
vectors, one per pixel, and a fully convolutional flow learns the density of those maps on
*normal* images only. At test time a pixel whose features the flow maps far from the origin of
the latent space is unusual; an image with many such pixels is an anomaly.

This tutorial builds that pipeline at toy scale on scikit-learn's 8 × 8 digits: the normal
class is the digit 0, and every other digit is an anomaly. The feature extractor is a fixed
bank of four 3 × 3 filters instead of a pretrained network, so that the page builds in seconds
without a download; the numbers come from a short run (30 epochs on about 140 images).
"""

# %%
# Data: one normal class
# ----------------------

import functools

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.metrics import roc_curve
from torch import nn

NORMAL = 0
digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
labels = torch.tensor(digits.target)
gen = torch.Generator().manual_seed(0)
order = torch.randperm(len(images), generator=gen)
train_images = images[order[:1200]][labels[order[:1200]] == NORMAL]  # normal only
test_images, test_labels = images[order[1200:]], labels[order[1200:]]
is_anomaly = test_labels != NORMAL
print(f"train: {len(train_images)} images of digit {NORMAL}")
print(f"test: {int((~is_anomaly).sum())} normal, {int(is_anomaly.sum())} anomalous")

# %%
# Per-pixel features
# ------------------
# Four fixed filters give every pixel a feature vector: its intensity, the local mean, and the
# horizontal and vertical gradients (Sobel), a ``(4, 8, 8)`` map per image. A real FastFlow
# takes these maps from the middle of a pretrained CNN.

bank = torch.tensor([
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
], dtype=torch.float32).unsqueeze(1)
bank = bank / torch.tensor([1.0, 9.0, 4.0, 4.0]).view(4, 1, 1, 1)  # unit gains
names = ["intensity", "local mean", "gradient x", "gradient y"]


def features(x: torch.Tensor) -> torch.Tensor:
    """``(n, 1, 8, 8)`` images to ``(n, 4, 8, 8)`` feature maps."""
    return F.conv2d(x, bank, padding=1)


train_features, test_features = features(train_images), features(test_images)
fig, axes = plt.subplots(1, 4, figsize=(9, 2.6), layout="constrained")
for ax, name, channel in zip(axes, names, train_features[0]):
    shown = ax.imshow(channel, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set(title=name, xticks=[], yticks=[])
fig.colorbar(shown, ax=axes, label="feature value")
fig.suptitle(f"the feature map of one training image (digit {NORMAL})")
plt.show()

# %%
# The flow
# --------
# As in FastFlow: a :class:`~invertible.framework.SequenceINN` on ``(4, 8, 8)`` of
# :class:`~invertible.modules.AllInOneBlock` couplings whose subnets are small convolutional
# networks, alternating 3 × 3 and 1 × 1 kernels, with fixed (hard) channel permutations. The
# flow is fully convolutional: each output pixel depends on a neighbourhood of input pixels
# only, so it would run unchanged on larger feature maps.

import invertible.framework as Ff
import invertible.modules as Fm
from invertible.distributions import FlowDistribution


def conv_subnet(c_in: int, c_out: int, kernel: int) -> nn.Module:
    """Conv, ReLU, conv with ``kernel x kernel`` kernels, same spatial size."""
    pad = kernel // 2
    return nn.Sequential(nn.Conv2d(c_in, 32, kernel, padding=pad), nn.ReLU(),
                         nn.Conv2d(32, c_out, kernel, padding=pad))


torch.manual_seed(0)  # subnet weights and the hard permutations
flow = Ff.SequenceINN(4, 8, 8)
for kernel in (3, 1, 3, 1):
    flow.append(Fm.AllInOneBlock, affine_clamping=2.0, permute_soft=False,
                subnet_constructor=functools.partial(conv_subnet, kernel=kernel))
dist = FlowDistribution(flow)

# %%
# Training on normal images only
# ------------------------------
# Maximum likelihood of the feature maps. One detail matters: 64 pixels determine all
# :math:`4 \times 64` features, so the feature maps fill only a thin subset of their space, on
# which a flow could pile up unbounded density. A little Gaussian noise on the training
# features (standard deviation 0.05) keeps the density finite.

optimiser = torch.optim.Adam(dist.parameters(), lr=2e-3)
for epoch in range(1, 31):
    for idx in torch.randperm(len(train_features), generator=gen).split(32):
        batch = train_features[idx]
        loss = dist.nll(batch + 0.05 * torch.randn(batch.shape, generator=gen))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    if epoch % 10 == 0:
        print(f"epoch {epoch}  train NLL {loss.item():.1f} nats per image")

# %%
# The anomaly score
# -----------------
# The flow maps the feature vector of every pixel :math:`(i, j)` to a latent
# :math:`z_{ij} \in \mathbb R^4`, which is standard normal for normal images. FastFlow's
# anomaly map is the Gaussian energy of that latent,
#
# .. math::
#
#     s_{ij} = \frac{1}{2C} \lVert z_{ij} \rVert^2,
#
# the negative log-density of the pixel's latent per channel, up to a constant. It leaves out
# the log-determinant: that term belongs to the whole feature map, not to single pixels (every
# coupling mixes neighbouring pixels), so FastFlow ranks pixels by their latents alone. A high
# :math:`s_{ij}` means: features that normal images rarely produce at this place. The image
# score is the mean over the pixels. The full NLL of the feature map, log-det included, ranks
# whole images too; both AUROCs are printed.

dist.eval()  # evaluation mode from here on
with torch.no_grad():
    z, _ = flow(test_features)
anomaly_map = 0.5 * z.pow(2).mean(dim=1)  # (n, 8, 8)
scores = anomaly_map.mean(dim=(1, 2))

from invertible.metrics import roc_auc

auroc = roc_auc(scores, is_anomaly)
with torch.no_grad():
    auroc_nll = roc_auc(-dist.log_prob(test_features), is_anomaly)
print(f"image AUROC, FastFlow score: {auroc:.3f}")
print(f"image AUROC, NLL of the feature map (log-det included): {auroc_nll:.3f}")

# %%
# Normal test digits score low, the other digits high.

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
bins = torch.linspace(float(scores.min()), float(scores.quantile(0.99)), 40)
left.hist(scores[~is_anomaly].tolist(), bins=bins.tolist(), density=True, alpha=0.6,
          label=f"normal: digit {NORMAL}")
left.hist(scores[is_anomaly].tolist(), bins=bins.tolist(), density=True, alpha=0.6,
          label="anomalies: digits 1-9")
left.set(xlabel="anomaly score (mean of the anomaly map)", ylabel="density",
         title=f"scores of the test set, normal class = digit {NORMAL}")
left.legend()
fpr, tpr, _ = roc_curve(is_anomaly.numpy(), scores.numpy())
right.plot(fpr, tpr, label="FastFlow score")
right.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance")
right.set(xlabel="false positive rate (normal digits flagged)",
          ylabel="true positive rate (anomalies found)",
          title=f"ROC, normal class = digit {NORMAL}, AUROC = {auroc:.3f}")
right.legend(loc="lower right")
plt.show()

# %%
# Some digits overlap the zeros more than others; the AUROC of each digit against the zeros
# shows which.

for d in sorted(set(range(10)) - {NORMAL}):
    keep = (test_labels == d) | ~is_anomaly
    digit_auroc = roc_auc(scores[keep], is_anomaly[keep])
    print(f"digit {d} against digit {NORMAL}: AUROC {digit_auroc:.3f}")

# %%
# Where the flow sees the anomaly
# -------------------------------
# The anomaly maps of three normal and three anomalous test digits, on one colour scale:
# the anomalies light up where their strokes differ from a 0.

picks = torch.cat([torch.nonzero(~is_anomaly)[:3, 0],
                   torch.nonzero(is_anomaly)[:3, 0]])
fig, axes = plt.subplots(2, 6, figsize=(10, 3.8), layout="constrained")
vmax = float(anomaly_map[picks].max())
for column, i in enumerate(picks.tolist()):
    axes[0, column].imshow(test_images[i, 0], cmap="gray_r")
    axes[0, column].set_title(f"digit {int(test_labels[i])}, score {scores[i]:.2f}",
                              fontsize=9)
    shown = axes[1, column].imshow(anomaly_map[i], cmap="inferno", vmin=0,
                                   vmax=vmax)
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
axes[0, 0].set_ylabel("image")
axes[1, 0].set_ylabel("anomaly map")
fig.colorbar(shown, ax=axes[1], label="$s_{ij}$")
fig.suptitle(f"anomaly maps (normal class = digit {NORMAL})")
plt.show()
