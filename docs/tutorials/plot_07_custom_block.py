r"""
Writing your own block and checking it
======================================

Every block of ``invertible`` follows one contract, FrEIA's: a block is built from the shapes of
its inputs (and conditions), and ``block(x, c, rev=False)`` returns the outputs and the
per-sample log-determinant of the direction it ran,

.. math::

    \texttt{rev=False}:\ \log\left|\det \frac{\partial f}{\partial x}\right|, \qquad
    \texttt{rev=True}:\ \log\left|\det \frac{\partial f^{-1}}{\partial z}\right|
    = -\log\left|\det \frac{\partial f}{\partial x}\right|.

A block that gets either wrong trains happily and computes wrong likelihoods. This tutorial
writes two blocks, one from scratch and one on the coupling base class, runs
:func:`invertible.testing.check_module` on them, and shows what a wrong log-determinant looks
like in its report.
"""

# %%
# A block from scratch
# --------------------
# A learned scale and shift per channel, :math:`y = x\, e^{s} + t`, for vectors ``(C,)`` and
# images ``(C, H, W)`` alike. Its Jacobian is diagonal, so the log-determinant of one sample is
# :math:`\sum_c s_c` times the number of positions (1 for a vector, :math:`HW` for an image).
# A block subclasses :class:`~invertible.modules.InvertibleModule`, implements ``forward`` and
# ``output_dims`` (used when a network is built, to wire the next block), and returns the
# log-det as a ``(batch,)`` tensor. Two class attributes describe a block to the containers:
# ``exact_inverse`` (default ``True``; set it to ``False`` when ``rev=True`` is only approximate,
# and memory-efficient training will refuse the block) and ``fixed_size`` (default ``False``:
# the block runs at any image size, as this one does).

import math
from typing import ClassVar

import torch
from torch import nn

import invertible.framework as Ff
import invertible.modules as Fm
from invertible.testing import check_module


class ChannelAffine(Fm.InvertibleModule):
    """``y = x * exp(log_scale) + shift``, one learned pair per channel."""

    def __init__(self, dims_in, dims_c=None):
        super().__init__(dims_in, dims_c)
        channels = self.dims_in[0][0]
        self.log_scale = nn.Parameter(0.1 * torch.randn(channels))
        self.shift = nn.Parameter(0.1 * torch.randn(channels))

    def forward(self, x, c=None, rev=False, jac=True):
        (x,) = x
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast over an image
        s, t = self.log_scale.view(shape), self.shift.view(shape)
        y = (x - t) * torch.exp(-s) if rev else x * torch.exp(s) + t
        log_det = self.log_scale.sum() * math.prod(x.shape[2:])
        log_det = (-log_det if rev else log_det).expand(x.shape[0])
        return (y,), log_det

    def output_dims(self, input_dims):
        return input_dims


torch.manual_seed(0)
block = ChannelAffine([(3, 4, 4)])
(z,), log_det = block([torch.randn(2, 3, 4, 4)])
print("output", tuple(z.shape), " log-det", [round(v, 4) for v in log_det.tolist()])

# %%
# Checking it
# -----------
# ``check_module`` runs the property suite of the library's own tests on one module: output
# shapes against ``output_dims``, the inverse in both directions, the log-det against the
# log-determinant of the Jacobian computed by autograd (both directions), ``jac=False``,
# gradients to every parameter, conditions, independence of the samples in a batch,
# ``state_dict`` and pickling round trips, inputs left unmodified. It converts the module to
# float64 in place (so the tolerances can be tight), draws random inputs from the shapes, never
# stops at a failure and returns a report.

report = check_module(ChannelAffine([(3, 4, 4)]))
print(report)

# %%
# ``report.passed`` is the verdict, made for a one-line test in your own suite
# (``assert check_module(...).passed``, or ``report.raise_if_failed()`` to fail with the table).

print("passed:", report.passed)

# %%
# A new coupling in a few lines
# -----------------------------
# Most blocks are couplings: split the channels in two halves, transform one half with
# parameters that a subnet computes from the other half (and the conditions), then the other
# way round. :class:`~invertible.modules.CouplingBlock` does the splitting, the conditions, the
# subnets, both directions and the sum of the log-det. A new coupling declares
#
# * ``subnets``: subnet name → the half (1 or 2) whose parameters it computes;
# * ``params_per_channel``: how many numbers each subnet outputs per channel of that half;
# * ``transform(x, params, rev)``: the map of one half, returning the output and the *forward*
#   log-derivative per element (also when ``rev=True``).
#
# Here each half gets :math:`y = x\, e^{\tanh a} + b`: a scale bounded in
# :math:`[e^{-1}, e]`, with :math:`(a, b)` from the subnet.


class TanhScaleCoupling(Fm.CouplingBlock):
    """Each half: ``y = x * exp(tanh(a)) + b``, ``(a, b)`` from the other half."""

    # subnet1's output transforms half 2, subnet2's half 1
    subnets: ClassVar[dict[str, int]] = {"subnet1": 2, "subnet2": 1}
    params_per_channel = 2  # a and b

    def transform(self, x, params, rev):
        a, b = params[0].chunk(2, dim=1)
        log_scale = torch.tanh(a)
        y = (x - b) * torch.exp(-log_scale) if rev else x * torch.exp(log_scale) + b
        return y, log_scale


def mlp(c_in, c_out):
    return nn.Sequential(nn.Linear(c_in, 16), nn.Tanh(), nn.Linear(16, c_out))


# %%
# Built with a condition, the report also checks that the condition changes the output.

coupling = TanhScaleCoupling([(4,)], [(2,)], subnet_constructor=mlp)
print(check_module(coupling))

# %%
# Custom blocks mix with the built-in ones in any container:

inn = Ff.SequenceINN(4)
inn.append(TanhScaleCoupling, subnet_constructor=mlp)
inn.append(Fm.PermuteRandom, seed=0)
inn.append(ChannelAffine)
x = torch.randn(5, 4)
z, log_det = inn(x)
print(f"inverse error of the chain: {(inn(z, rev=True)[0] - x).abs().max():.1e}")
print("log-det:", [round(v, 4) for v in log_det.tolist()])

# %%
# What a failure looks like
# -------------------------
# A classic mistake: on images, forgetting that every position contributes its own
# :math:`\sum_c s_c`. The map and its inverse are still right, so nothing looks wrong while
# training; only the log-determinant is off by a factor of :math:`HW`.


class ChannelAffineWrong(ChannelAffine):
    """As ``ChannelAffine``, but the log-det misses the factor H*W of an image."""

    def forward(self, x, c=None, rev=False, jac=True):
        (y,), _ = super().forward(x, c, rev, jac)
        log_det = self.log_scale.sum().expand(y.shape[0])
        return (y,), -log_det if rev else log_det


report = check_module(ChannelAffineWrong([(3, 4, 4)]))
print(report)

# %%
# The round trips pass; the two log-det rows fail and give the block's value next to the
# log-determinant of the Jacobian that autograd computed. Their ratio, 16 = 4 × 4, points at
# the missing factor :math:`HW`. In a test suite, ``raise_if_failed`` turns the report into an
# ``AssertionError`` that carries the table:

try:
    report.raise_if_failed()
except AssertionError as error:
    print("AssertionError:", str(error).splitlines()[0], "...")
print("failed checks:", [failure.name for failure in report.failures])
