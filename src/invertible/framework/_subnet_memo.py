"""Reversible-network economy: one subnet evaluation serves a block's inversion and recompute.

Used by :mod:`invertible.framework._memory`. When a coupling block is inverted in the backward
pass, its subnets see the passthrough half, and when it is then recomputed they see the same
values again, so (as in RevNets) the evaluation made for the inversion, recorded with a graph,
can stand in for the second one. Nothing here knows a block's structure: calls are matched by
equal arguments, so a block whose subnet inputs differ simply runs its subnets twice.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..modules.base import InvertibleModule

__all__ = ["SubnetMemo"]


def _leaf(value: Tensor) -> Tensor:
    """A detached copy that requires grad if it is floating point (the block may later write
    into its own tensors in place, so the recorded input must not share their storage)."""
    return value.detach().clone().requires_grad_(value.is_floating_point())


class _Recorded:
    """One subnet call of an inversion: detached input leaves, output with graph, parameters."""

    def __init__(self, leaves: Tuple[Tensor, ...], out: Tensor, params: List[Tensor]) -> None:
        self.leaves, self.out, self.params = leaves, out, params
        self.version = out._version
        self.used = False

    def matches(self, args: Tuple[Tensor, ...]) -> bool:
        """Unused, its output untouched since, and called with equal arguments."""
        return not self.used and self.out._version == self.version and _equal(self.leaves, args)


class _Replay(torch.autograd.Function):
    """Hands a recorded subnet output to the recomputation; its VJP runs the recorded graph."""

    @staticmethod
    def forward(ctx: Any, call: _Recorded, *tensors: Tensor) -> Tensor:  # type: ignore[override]
        """A copy of the recorded output (``tensors``: the new inputs, then the parameters)."""
        ctx.call = call
        return call.out.detach().clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
        """Gradients of the recorded call's inputs and parameters."""
        call: _Recorded = ctx.call
        wrt = [t for t in (*call.leaves, *call.params) if t.requires_grad]
        found = iter(torch.autograd.grad(call.out, wrt, grad, allow_unused=True) if wrt else ())
        return (None, *(next(found) if t.requires_grad else None
                        for t in (*call.leaves, *call.params)))


class SubnetMemo:
    """Evaluates a block's subnets once for both its inversion and its recomputation.

    For a coupling block the subnets see the same values when the block is inverted and when it
    is recomputed (the passthrough half), so, as in reversible networks, one evaluation with a
    graph serves both. While the block is inverted, each call of a child module that holds
    parameters (and is not itself invertible) runs with a graph on detached inputs and is
    recorded; while it is recomputed, a call whose tensor arguments equal a recorded call's
    (``torch.equal``) returns that output through :class:`_Replay`, whose backward runs the
    recorded graph. Any other call runs normally. The children's ``forward`` is replaced on the
    instances only inside this object's ``with`` block.
    """

    def __init__(self, block: nn.Module) -> None:
        self.children = [m for m in block.children() if _is_subnet(m)]
        self.calls: List[Tuple[nn.Module, _Recorded]] = []
        self.own: List[Any] = []
        self.replaying = False

    def __enter__(self) -> SubnetMemo:
        self.own = [child.__dict__.get("forward") for child in self.children]
        for child in self.children:
            child.forward = _MemoForward(self, child, child.forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for child, own in zip(self.children, self.own):
            if own is None:  # the usual case: the class's forward
                del child.forward
            else:  # a forward the user had set on the instance
                child.forward = own

    def call(self, child: nn.Module, real: Callable[..., Any], args: Tuple[Any, ...],
             kwargs: Dict[str, Any]) -> Any:
        """Record (while inverting) or replay (while recomputing) one call of ``child``."""
        if kwargs or not args or not all(isinstance(a, Tensor) for a in args):
            return real(*args, **kwargs)
        params = [p for p in child.parameters() if p.requires_grad]
        if not self.replaying:
            leaves = tuple(_leaf(a) for a in args)
            with torch.enable_grad():
                out = real(*leaves)
            if not isinstance(out, Tensor):
                return out
            self.calls.append((child, _Recorded(leaves, out, params)))
            return out.detach()  # an in-place change by the block disables the replay
        for owner, rec in self.calls:
            if owner is child and rec.matches(args):
                rec.used = True
                return _Replay.apply(rec, *args, *params)
        return real(*args)


class _MemoForward:
    """The replacement ``forward`` of a child module while a :class:`SubnetMemo` is active."""

    def __init__(self, memo: SubnetMemo, child: nn.Module, real: Callable[..., Any]) -> None:
        self.memo, self.child, self.real = memo, child, real

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Route the call through the memo."""
        return self.memo.call(self.child, self.real, args, kwargs)


def _is_subnet(module: nn.Module) -> bool:
    """A child worth recording: it holds trainable parameters and is not an invertible block."""
    if isinstance(module, (InvertibleModule, nn.ModuleList, nn.ModuleDict)):
        return False
    return any(p.requires_grad for p in module.parameters())


def _equal(recorded: Tuple[Tensor, ...], given: Tuple[Tensor, ...]) -> bool:
    """Whether the arguments have the same shapes, dtypes and values."""
    return len(recorded) == len(given) and all(
        r.shape == g.shape and r.dtype == g.dtype and r.device == g.device and torch.equal(r, g)
        for r, g in zip(recorded, given)
    )
