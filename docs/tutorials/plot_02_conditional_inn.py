r"""
A conditional INN
=================

A conditional invertible network computes :math:`z = f(x;\, c)`: for every condition
:math:`c` it is an invertible map of :math:`x`, and the condition enters only the subnets of its
couplings, so the inverse and the log-determinant stay as cheap as without one. With a standard
normal base this gives a conditional density,

.. math::

    \log p(x \mid c) = \log \mathcal N\big(f(x; c);\, 0, I\big)
    + \log \left| \det \frac{\partial f(x; c)}{\partial x} \right|,

trained by maximum likelihood on pairs :math:`(x, c)`. Here :math:`c` is a one-hot class label
and :math:`x` a 2-D point; one network then samples any class on demand, and Bayes' rule turns
it into a classifier.

The numbers come from a short run (a few hundred steps) so that the page builds in seconds.
"""

# %%
# Class-conditional data
# ----------------------
# Three classes, each a noisy arc of the circle of radius 1.5, centred at the angles
# :math:`90°`, :math:`210°` and :math:`330°` and :math:`160°` long, so that neighbouring arcs
# overlap at their ends, where no classifier can be sure.

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.nn.functional import one_hot

CLASSES = 3


def arcs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``(n, 2)`` on ``CLASSES`` arcs, and their labels ``(n,)``."""
    labels = torch.randint(CLASSES, (n,), generator=generator)
    angle = math.pi / 2 + 2 * math.pi * labels / CLASSES + 2.8 * (
        torch.rand(n, generator=generator) - 0.5)
    points = 1.5 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return points + 0.1 * torch.randn(n, 2, generator=generator), labels


gen = torch.Generator().manual_seed(0)
x_train, y_train = arcs(6000, gen)
x_test, y_test = arcs(1500, gen)
c_train = one_hot(y_train, CLASSES).float()  # the conditions: (n, 3) one-hot

fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
for k in range(CLASSES):
    ax.scatter(*x_train[y_train == k][:500].T, s=3, label=f"class {k}")
ax.set(title="training data by class", xlabel="$x_1$", ylabel="$x_2$",
       aspect="equal")
ax.legend(markerscale=4)
plt.show()

# %%
# The network
# -----------
# ``append(..., cond=0, cond_shape=(3,))`` tells each block to read condition number 0, a
# vector of length 3: the block concatenates it to the input of its subnets, so
# ``subnet_constructor`` is called with ``c_in`` = half the point + 3. The subnets come from
# :class:`~invertible.flows.DenseSubnet`, the presets' constructor: ``Linear`` and ``ReLU`` per
# hidden width, and a last layer that starts at zero, so each block starts as the identity.

import invertible.framework as Ff
import invertible.modules as Fm
from invertible.flows import DenseSubnet

torch.manual_seed(0)  # the subnets' initial weights
np.random.seed(0)  # AllInOneBlock draws its rotation from numpy's global RNG
cinn = Ff.SequenceINN(2)
for _ in range(6):
    cinn.append(Fm.AllInOneBlock, cond=0, cond_shape=(CLASSES,),
                subnet_constructor=DenseSubnet((64, 64)), permute_soft=True)

# Conditions are passed as a list, one tensor per condition index.
z, log_det = cinn(x_train[:4], c=[c_train[:4]])
print("z:", tuple(z.shape), " log-det:", tuple(log_det.shape))

# %%
# Conditional maximum likelihood
# ------------------------------
# :class:`~invertible.distributions.FlowDistribution` takes the condition as its second
# argument everywhere: ``nll(x, c)``, ``log_prob(x, c)``, ``sample(n, c)``.

from invertible.distributions import FlowDistribution

dist = FlowDistribution(cinn)
optimiser = torch.optim.Adam(dist.parameters(), lr=5e-3)
steps = 600
schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
for step in range(1, steps + 1):
    idx = torch.randint(len(x_train), (256,), generator=gen)
    loss = dist.nll(x_train[idx], c_train[idx])
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    schedule.step()
    if step % 150 == 0:
        print(f"step {step:4d}  train NLL -log p(x|c) {loss.item():.3f} nats")

# %%
# Sampling each class
# -------------------
# A condition of batch size 1 is expanded to the ``n`` samples asked for. The same latent
# draws :math:`z` map to a different class for every :math:`c`: the class lives in the
# network, not in the latent.

dist.eval()  # evaluation mode from here on
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharex=True, sharey=True,
                         layout="constrained")
for k in range(CLASSES):
    axes[0].scatter(*x_test[y_test == k].T, s=3, color=f"C{k}", label=f"class {k}")
    c_k = one_hot(torch.tensor([k]), CLASSES).float()
    samples = dist.sample(500, c_k, generator=torch.Generator().manual_seed(1))
    axes[1].scatter(*samples.T, s=3, color=f"C{k}", label=f"c = class {k}")
titles = ("held-out data", "samples of p(x | c), a colour per c")
for ax, title in zip(axes, titles):
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", xlim=(-2.5, 2.5),
           ylim=(-2.5, 2.5), aspect="equal")
    ax.legend(markerscale=4, loc="center")
plt.show()

# %%
# A generative classifier
# -----------------------
# With equal class priors, Bayes' rule gives
# :math:`p(c \mid x) \propto p(x \mid c)`: evaluate the conditional density once per class
# and take the largest. The marginal density
# :math:`p(x) = \frac{1}{3} \sum_c p(x \mid c)` comes for free.
# Half of every arc overlaps a neighbour, where both classes are equally likely, so even the
# true densities classify only about 75 % of the points correctly.



@torch.no_grad()
def class_log_likelihoods(x: torch.Tensor) -> torch.Tensor:
    """``log p(x | c = k)`` for every class ``k``, shape ``(n, CLASSES)``."""
    labels = [torch.full((len(x),), k) for k in range(CLASSES)]
    conditions = [one_hot(y, CLASSES).float() for y in labels]
    return torch.stack([dist.log_prob(x, c) for c in conditions], dim=1)


log_lik = class_log_likelihoods(x_test)
with torch.no_grad():
    conditional_nll = dist.nll(x_test, one_hot(y_test, CLASSES).float()).item()
marginal_nll = -(log_lik.logsumexp(1) - math.log(CLASSES)).mean().item()
accuracy = (log_lik.argmax(1) == y_test).float().mean().item()
print(f"test NLL -log p(x|c): {conditional_nll:.3f} nats/sample")
print(f"test NLL -log p(x):   {marginal_nll:.3f} nats/sample")
print(f"classifier accuracy:  {100 * accuracy:.1f} %, chance {100 / CLASSES:.1f} %")

# %%
# The posterior over the plane: the probability of class 0 given the point. It is shown only
# where the marginal density :math:`p(x)` exceeds 0.01; elsewhere there are no data and the
# ratio of two tiny densities means nothing.

grid = torch.linspace(-2.5, 2.5, 120)
xx, yy = torch.meshgrid(grid, grid, indexing="xy")
grid_lik = class_log_likelihoods(torch.stack([xx.flatten(), yy.flatten()], 1))
marginal = (grid_lik.logsumexp(1) - math.log(CLASSES)).exp()
posterior = grid_lik.softmax(1)[:, 0].masked_fill(marginal < 0.01, float("nan"))
fig, ax = plt.subplots(figsize=(5.2, 4.2), layout="constrained")
image = ax.imshow(posterior.reshape(120, 120), origin="lower",
                  extent=(-2.5, 2.5, -2.5, 2.5), cmap="RdBu_r", vmin=0, vmax=1)
fig.colorbar(image, ax=ax, label="$p(c = 0 \\mid x)$")
ax.set(title="posterior of class 0 where p(x) > 0.01", xlabel="$x_1$",
       ylabel="$x_2$")
plt.show()
