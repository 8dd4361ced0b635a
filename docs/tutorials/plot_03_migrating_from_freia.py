"""
Migrating from FrEIA
====================

``invertible`` keeps FrEIA's module paths, class names, constructor keywords and
``state_dict`` keys. Moving a project over takes three steps, each shown on this page:

1. change the import lines;
2. load the checkpoints you trained with FrEIA, as they are;
3. for checkpoints of the PyPI release FrEIA 0.2, load them with
   :func:`invertible.compat.load_freia_02_checkpoint`, which also switches the network to the
   few formulas of 0.2 that FrEIA changed since, so it computes exactly what it computed before.

Code you cannot edit (a third-party package that says ``import FrEIA``) runs unchanged under
an import alias, shown at the end.
"""

# %%
# Step 1: the import lines
# ------------------------
# A network is written the FrEIA way; only the two import lines change. We keep the
# construction in a function of the two modules, so that the very same code builds the network
# with FrEIA and with ``invertible`` below.

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import invertible.framework as Ff  # was: import FrEIA.framework as Ff
import invertible.modules as Fm  # was: import FrEIA.modules as Fm


def subnet(c_in, c_out):
    return nn.Sequential(nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, c_out))


def build(framework, modules):
    """Nine blocks on 6-D vectors: 3 x (AllInOneBlock, GLOW, fixed permutation)."""
    inn = framework.SequenceINN(6)
    for k in range(3):
        inn.append(
            modules.AllInOneBlock, subnet_constructor=subnet, affine_clamping=1.5
        )
        inn.append(modules.GLOWCouplingBlock, subnet_constructor=subnet)
        inn.append(modules.PermuteRandom, seed=k)
    return inn


# %%
# Step 2: a checkpoint trained with FrEIA
# ---------------------------------------
# The FrEIA package installed next to ``invertible`` here is the PyPI release 0.2, the one
# anomalib and most older projects were trained with. We build the network with it, train it
# briefly by maximum likelihood on a skewed 6-D distribution, and save its ``state_dict``
# into a temporary folder, as a training script would.

import FrEIA.framework as freia_framework  # the real FrEIA, for comparison
import FrEIA.modules as freia_modules

torch.manual_seed(0)
# FrEIA 0.2 draws AllInOneBlock's permutations from numpy's global generator
np.random.seed(0)
mixing = torch.randn(6, 6)


def data(n):
    x = torch.randn(n, 6) @ mixing + 1.0
    return x + 0.5 * torch.tanh(x.pow(2))


freia_net = build(freia_framework, freia_modules)
optimizer = torch.optim.Adam(freia_net.parameters(), lr=1e-3)
for _ in range(150):
    z, log_det = freia_net(data(256))
    loss = (0.5 * z.pow(2).sum(1) - log_det).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"FrEIA 0.2 network trained: NLL {loss.item():.3f} (nats, without the constant)")

workdir = tempfile.TemporaryDirectory()  # removed at the end of the page
checkpoint = Path(workdir.name) / "freia_flow.pt"
torch.save(freia_net.state_dict(), checkpoint)
print(f"saved {len(freia_net.state_dict())} tensors to {checkpoint.name}")

# %%
# The same network built with ``invertible`` loads the file: every key matches (the
# permutations of ``AllInOneBlock``, which 0.2 stored as one-hot float matrices, are converted
# to index vectors on load).

net = build(Ff, Fm)
print(net.load_state_dict(torch.load(checkpoint)))

x = data(1000)
with torch.no_grad():
    z_freia, log_det_freia = freia_net(x)
    z, log_det = net(x)
print(f"max |z difference|       {(z - z_freia).abs().max():.3g}")
print(f"max |log-det difference| {(log_det - log_det_freia).abs().max():.3g}")

# %%
# Step 3: PyPI 0.2 checkpoints
# ----------------------------
# The outputs above differ, and not by round-off. ``AllInOneBlock`` bounds its log-scale
# softly by the clamp :math:`\kappa` (``affine_clamping``). PyPI FrEIA 0.2 computed
# :math:`s = \kappa \tanh(a)`; FrEIA's current code, and ``invertible``, compute
# :math:`s = \kappa \tanh(a / \kappa)`, which is close to :math:`a` for small :math:`a` (the
# subnet's output means the same thing whatever the clamp). Both are valid flows; a checkpoint
# was trained with one of them, and the weights do not say which. So a 0.2 checkpoint is loaded
# with one call that loads it and switches the network to 0.2's formulas:

from invertible.compat import load_freia_02_checkpoint

load_freia_02_checkpoint(net, checkpoint)  # a path, or the state_dict itself

with torch.no_grad():
    z, log_det = net(x)
print(f"max |z difference|       {(z - z_freia).abs().max():.3g}")
print(f"max |log-det difference| {(log_det - log_det_freia).abs().max():.3g}")
print(
    "AllInOneBlocks on 0.2's clamp:",
    all(b.legacy_clamp for b in net.modules() if isinstance(b, Fm.AllInOneBlock)),
)

# %%
# Now both packages compute the same function, to float32 round-off. The inverse is exact as
# before:

with torch.no_grad():
    x_back, _ = net(z, rev=True)
print(f"max |x - f^-1(f(x))|     {(x_back - x).abs().max():.3g}")

# %%
# The call sets ``legacy_clamp=True`` on every ``AllInOneBlock`` (an argument you can also
# give when building a block). In a ``GraphINN`` it also numbers the modules as the checkpoint
# does: 0.2 ordered the modules of parallel branches by the memory addresses of their nodes, so
# the ``module_list.<k>`` keys of a 0.2 graph may follow another order. Checkpoints saved by
# FrEIA's GitHub code (after 0.2) load with plain ``load_state_dict``: they were trained with
# the new clamp, which is ``invertible``'s default.
#
# Code you cannot edit: the FrEIA import alias
# --------------------------------------------
# Packages such as anomalib import ``FrEIA`` themselves. :func:`invertible.compat.freia_alias`
# makes every ``FrEIA`` import resolve to ``invertible`` (the very same module objects) while
# it is active; :func:`invertible.compat.install_freia_alias` does so for the whole process,
# and ``python -m invertible.compat train.py`` runs a script with it. Call it before anything
# imports FrEIA: if a real FrEIA is already imported (as on this page, which used it above), it
# refuses, unless ``force=True`` sets the real modules aside until the alias is removed.
#
# Under the alias ``PermuteRandom(seed=s)`` also reseeds numpy's global generator, as FrEIA
# did: FrEIA code may rely on that side effect (vislearn's GIN experiments draw each block's
# seed, then their training data, from ``np.random``). Plain ``invertible`` draws the same
# permutation from a local generator and leaves numpy's global state alone.

import invertible
from invertible.compat import freia_alias

with freia_alias(force=True):
    import FrEIA.framework
    import FrEIA.modules

    same = FrEIA.modules is invertible.modules
    print("FrEIA.modules is invertible.modules:", same)
    legacy_net = build(FrEIA.framework, FrEIA.modules)  # code written for FrEIA
    print("built a", type(legacy_net).__module__, type(legacy_net).__name__)
    # the last block, PermuteRandom(seed=2), reseeded numpy and drew 6 channels:
    draws = np.random.RandomState(2)
    draws.permutation(6)
    print("numpy reseeded as FrEIA did:", np.random.rand() == draws.rand())

import FrEIA.modules

print(
    "after the block, FrEIA is the real FrEIA again:",
    FrEIA.modules is freia_modules,
)
workdir.cleanup()
