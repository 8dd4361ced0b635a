"""
Memory-efficient training
=========================

Backpropagation normally keeps every intermediate activation of every block until the
backward pass, so the memory of a training step grows with the depth of the network. An
invertible network does not need to keep them: block :math:`k` maps :math:`x_k` to
:math:`x_{k+1} = f_k(x_k)`, so during the backward pass its input can be recomputed from its
output, :math:`x_k = f_k^{-1}(x_{k+1})`, one block after the other from the last one (the trick
of reversible residual networks, Gomez et al., 2017).

``SequenceINN`` and ``GraphINN`` do this when built with ``memory_efficient=True`` (or when
``inn.memory_efficient = True`` is set later). The forward pass keeps only the network's outputs;
the backward pass inverts each block, recomputes it with a graph, takes its gradients and frees
that graph before moving to the previous block. It costs about one extra inverse per block,
and it gives the same gradients.
"""

# %%
# A small image flow
# ------------------
# Six ``AllInOneBlock`` couplings with convolutional subnets on 4 x 16 x 16 inputs. The
# function builds the same weights every time it is called with the same seed.

import textwrap

import matplotlib.pyplot as plt
import torch
from torch import nn

import invertible.framework as Ff
import invertible.modules as Fm


def conv_subnet(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, c_out, 3, padding=1),
    )


def image_flow(depth, memory_efficient=False, seed=0):
    torch.manual_seed(seed)
    inn = Ff.SequenceINN(4, 16, 16, memory_efficient=memory_efficient)
    for _ in range(depth):
        inn.append(
            Fm.AllInOneBlock, subnet_constructor=conv_subnet, affine_clamping=2.0
        )
    return inn


def nll(inn, x):
    z, log_det = inn(x)
    return (0.5 * z.pow(2).flatten(1).sum(1) - log_det).mean()


torch.manual_seed(1)
x = torch.randn(8, 4, 16, 16)

# %%
# Same gradients
# --------------
# One network, trained one step each way: the switch changes how the gradients are computed,
# not what they are. The differences are float32 round-off of the reconstructed inputs.

inn = image_flow(6)
trainable = [
    p for p in inn.parameters() if p.requires_grad
]  # w_perm is a frozen Parameter
nll(inn, x).backward()
standard = [p.grad.clone() for p in trainable]

inn.zero_grad()
inn.memory_efficient = True
loss = nll(inn, x)
loss.backward()
efficient = [p.grad for p in trainable]

worst = max(
    float((a - b).abs().max() / b.abs().max()) for a, b in zip(efficient, standard)
)
print(
    f"loss {loss.item():.4f}; largest gradient difference, relative to the "
    f"gradient's size: {worst:.2e}"
)

# %%
# What stays in memory between forward and backward
# -------------------------------------------------
# Autograd keeps the tensors that the backward pass needs; the hooks of
# :class:`torch.autograd.graph.saved_tensors_hooks` see each of them as it is saved. Counting
# the bytes of their distinct storages, after a forward pass, measures the activation memory
# that a training step holds. The parameters are saved too, but they are in memory anyway, so
# we leave them out.


def saved_activation_bytes(inn, x):
    parameters = {p.untyped_storage().data_ptr() for p in inn.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        nll(inn, x)
    return sum(storages.values())


depths = [1, 2, 4, 8, 16]
megabytes = {
    mode: [saved_activation_bytes(image_flow(d, mode), x) / 2**20 for d in depths]
    for mode in (False, True)
}
for d, plain, low in zip(depths, megabytes[False], megabytes[True]):
    print(
        f"depth {d:2d}: standard {plain:6.2f} MiB, memory-efficient {low:5.3f} MiB"
    )
print(f"the input batch itself: {x.nbytes / 2**20:.3f} MiB")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(depths, megabytes[False], "o-", label="standard backprop")
ax.plot(depths, megabytes[True], "s-", label="memory_efficient=True")
ax.set_xticks(depths)
ax.set_xlabel("number of blocks")
ax.set_ylabel("activations saved for backward (MiB)")
ax.set_title("Memory held between forward and backward")
ax.legend()
fig.tight_layout()

# %%
# Standard backprop stores the subnets' intermediate feature maps of every block, so its
# memory grows linearly with depth. The memory-efficient network keeps the output ``z`` (the
# same size as the input) whatever the depth. During the backward pass it holds one block's
# graph at a time in addition, so the peak is about one block's activations more than this.
#
# The price is time: each block is inverted and run a second time in the backward pass. The
# subnets run only once more, because inversion and recomputation share them. We time a
# training step (forward and backward) by the CPU time of this process, the best of five, which
# a busy machine disturbs less than the wall clock.

import time


def step_time(inn, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        nll(inn, x).backward()
        best = min(best, time.process_time() - start)
    return best


plain = step_time(image_flow(8))
low = step_time(image_flow(8, memory_efficient=True))
print(
    f"8 blocks, forward + backward: standard {plain * 1e3:.0f} ms, "
    f"memory-efficient {low * 1e3:.0f} ms ({low / plain:.2f}x)"
)

# %%
# Blocks that cannot take part
# ----------------------------
# The backward pass relies on the inverse being exact and deterministic. Blocks whose reverse
# is only approximate declare ``exact_inverse = False`` (among the built-in ones
# ``IResNetLayer``, ``InvAutoFC``, ``InvAutoConv2D``, ``OrthogonalTransform`` and
# ``GaussianMixtureModel``); a memory-efficient container refuses them when they are added or
# when the switch is turned on. Set the attribute on your own block if its inverse is
# approximate.

vector_flow = Ff.SequenceINN(8, memory_efficient=True)
vector_flow.append(Fm.PermuteRandom, seed=0)
try:
    vector_flow.append(Fm.IResNetLayer, internal_size=16)
except ValueError as error:
    print(textwrap.fill(f"ValueError: {error}", 88))

# %%
# The same holds for subnets with dropout or batch normalisation in training mode: recomputing
# the block would draw another dropout mask or update the running statistics a second time.


def dropout_subnet(c_in, c_out):
    return nn.Sequential(nn.Linear(c_in, 32), nn.Dropout(0.1), nn.Linear(32, c_out))


torch.manual_seed(2)
dropout_flow = Ff.SequenceINN(8)
dropout_flow.append(Fm.GLOWCouplingBlock, subnet_constructor=dropout_subnet)
dropout_flow.eval()  # dropout does nothing in eval mode: the block is accepted
dropout_flow.memory_efficient = True
print(f"eval mode: NLL {nll(dropout_flow, torch.randn(4, 8)).item():.3f}")
dropout_flow.train()  # checked again at every memory-efficient call
try:
    nll(dropout_flow, torch.randn(4, 8))
except ValueError as error:
    print(textwrap.fill(f"ValueError: {error}", 88))

# %%
# Under ``torch.compile`` the containers train by standard backprop; everything else
# (conditions, ``GraphINN``, ``torch.autocast``, DDP) works with the switch on.
