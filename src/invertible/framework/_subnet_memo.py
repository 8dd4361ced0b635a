"""One subnet evaluation serves a block's inversion and its recomputation (memory-efficient mode).

When a coupling block is inverted in the backward pass, its subnets see the passthrough half;
when it is then recomputed they see the same values again, so (as in RevNets) the evaluation made
for the inversion, recorded with a graph, can stand in for the second one. Nothing here knows a
block's structure: calls are matched by equal arguments, so a block whose subnet inputs differ
simply runs its subnets twice.

Why it is kept: it saves one of about five subnet evaluations of a block's training step.
Measured on the benchmark workload W2 (``benchmarks/workloads.py``: 8 AllInOneBlocks on
(64, 32, 32), 3x3 conv subnets with 64 hidden channels, batch 8; one thread, Adam), in three
runs of 50, 50 and 80 alternating pairs of steps on a shared CPU: without it a step takes 1.126,
1.112 and 1.122 times as long (medians; interquartile ranges 1.099-1.152, 1.084-1.130 and
1.098-1.138). Where subnets are cheaper the gain shrinks (a FastFlow-like chain with 1x1 and 3x3
subnets of the input's width: 1.06-1.07; dense couplings on vectors: none). The price is one
``torch.equal`` per subnet call in the backward pass, a device synchronisation on a GPU.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..modules.base import InvertibleModule

__all__ = ["SubnetMemo"]


class _Recorded:
    """One subnet call of an inversion: detached input leaves, output with graph, parameters."""

    def __init__(self, leaves: Tuple[Tensor, ...], out: Tensor, params: List[Tensor]) -> None:
        self.leaves, self.out, self.params = leaves, out, params
        self.version, self.used = out._version, False

    def matches(self, args: Tuple[Tensor, ...]) -> bool:
        """Unused, its output untouched since, and called with equal arguments."""
        return not self.used and self.out._version == self.version and len(args) == len(
            self.leaves) and all(r.shape == a.shape and r.dtype == a.dtype and r.device == a.device
                                 and torch.equal(r, a) for r, a in zip(self.leaves, args))


class _Replay(torch.autograd.Function):
    """Hands a recorded subnet output to the recomputation; its VJP runs the recorded graph."""

    @staticmethod
    def forward(ctx: Any, call: _Recorded, *tensors: Tensor) -> Tensor:
        """A copy of the recorded output (``tensors``: the new inputs, then the parameters)."""
        ctx.call = call
        return call.out.detach().clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
        """Gradients of the recorded call's inputs and parameters."""
        wrt = (*ctx.call.leaves, *ctx.call.params)
        need = [t for t in wrt if t.requires_grad]
        found = iter(torch.autograd.grad(ctx.call.out, need, grad, allow_unused=True)
                     if need else ())
        return (None, *(next(found) if t.requires_grad else None for t in wrt))


class SubnetMemo:
    """Evaluates a block's subnets once for both its inversion and its recomputation.

    While the block is inverted, each call of a child module that holds trainable parameters
    (and is not itself invertible) runs with a graph on detached copies of its inputs and is
    recorded; once ``replaying`` is set (the recomputation), a call whose tensor arguments equal
    a recorded call's returns that output through :class:`_Replay`, whose backward runs the
    recorded graph. Any other call runs normally. The children's ``forward`` is replaced on the
    instances only inside this object's ``with`` block.
    """

    def __init__(self, block: nn.Module) -> None:
        self.children = [m for m in block.children() if not isinstance(
            m, (InvertibleModule, nn.ModuleList, nn.ModuleDict)) and any(
            p.requires_grad for p in m.parameters())]
        self.calls: List[Tuple[nn.Module, _Recorded]] = []
        self.own: List[Any] = []
        self.replaying = False

    def __enter__(self) -> SubnetMemo:
        self.own = [child.__dict__.get("forward") for child in self.children]
        for child in self.children:
            child.forward = functools.partial(self.call, child, child.forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for child, own in zip(self.children, self.own):
            if own is None:  # the usual case: the class's forward
                del child.forward
            else:  # a forward the user had set on the instance
                child.forward = own

    def call(self, child: nn.Module, real: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Record (while inverting) or replay (while recomputing) one call of ``child``."""
        if kwargs or not args or not all(isinstance(a, Tensor) for a in args):
            return real(*args, **kwargs)
        params: List[Tensor] = [p for p in child.parameters() if p.requires_grad]
        if not self.replaying:
            # copies: the block may later write into its own tensors in place
            leaves = tuple(a.detach().clone().requires_grad_(a.is_floating_point()) for a in args)
            with torch.enable_grad():
                out = real(*leaves)
            if isinstance(out, Tensor):
                self.calls.append((child, _Recorded(leaves, out, params)))
                return out.detach()  # an in-place change by the block disables the replay
            return out
        for owner, rec in self.calls:
            if owner is child and rec.matches(args):
                rec.used = True
                return _Replay.apply(rec, *args, *params)
        return real(*args)
