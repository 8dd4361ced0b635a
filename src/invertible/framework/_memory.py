r"""Memory-efficient training by inversion: recompute each block's input from its output.

Standard backprop keeps every intermediate activation of every block until the backward pass.
An invertible network does not need to: block :math:`k` maps :math:`x_k \mapsto x_{k+1} =
f_k(x_k)`, so in the backward pass :math:`x_k = f_k^{-1}(x_{k+1})` can be recomputed from the
output, block after block from the last one, as in reversible residual networks. The whole run
of blocks is one :class:`torch.autograd.Function`:

* forward: run every block under ``no_grad`` and keep only the final outputs (and the log-det);
  each intermediate value is dropped as soon as the next block has consumed it;
* backward, for :math:`k = n, \dots, 1`, given :math:`x_{k+1}` and
  :math:`\bar x_{k+1} = \partial L / \partial x_{k+1}` (and :math:`\bar\ell = \partial L /
  \partial \log|\det J|`, the same for every block because the log-dets add up):
  reconstruct :math:`x_k = f_k^{-1}(x_{k+1})` without a graph, recompute
  :math:`(x_{k+1}, \ell_k) = f_k(x_k)` with a graph, and take the vector-Jacobian product
  :math:`\bar x_k, \bar\theta_k, \bar c = \mathrm{vjp}_{f_k}(\bar x_{k+1}, \bar\ell)`. Then that
  block's graph is freed. A coupling's subnets see the same values in the inverse and in the
  recompute, so they are evaluated once, with a graph, for both (:mod:`._subnet_memo`).

Peak activation memory is the boundary tensors plus one block's graph, independent of depth, at
the price of about one inverse per block. Gradients equal standard backprop up to the round-off
of the reconstruction. The parameters and conditions are inputs of the Function, so their
gradients leave its backward through autograd (gradient hooks, DDP's included, fire as usual);
it is once differentiable (no double backward).

A block takes part only if its inverse is exact and deterministic: :class:`MemoryEfficient`
refuses blocks that declare ``exact_inverse = False`` and train-mode dropout or batch norm inside
a block (they would not recompute identically).

References: Gomez, Ren, Urtasun, Grosse, "The Reversible Residual Network: Backpropagation
Without Storing Activations", NeurIPS 2017.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..modules.base import InvertibleModule, is_compiling
from ._calling import autocast_state, log_det_accumulator
from ._subnet_memo import SubnetMemo

__all__ = ["MemoryEfficient", "Step", "run_by_inversion"]

#: ``call(inputs, conditions, rev, jac) -> (outputs, log_det or None)`` runs one block.
Call = Callable[[Tuple[Tensor, ...], Tuple[Any, ...], bool, bool],
                Tuple[Tuple[Tensor, ...], Optional[Tensor]]]


class Step(NamedTuple):
    """One block of the run: how to call it, and the value-table slots it reads and writes."""

    module: nn.Module
    call: Call
    in_slots: Tuple[int, ...]
    cond_indices: Tuple[int, ...]
    out_slots: Tuple[int, ...]


def _refusal(module: nn.Module) -> Optional[str]:
    """Why ``module`` (or a submodule of it) cannot be recomputed exactly, else ``None``."""
    for sub in module.modules():
        name = type(sub).__name__
        article = "an" if name[:1].upper() in "AEIOU" else "a"
        if isinstance(sub, InvertibleModule) and not sub.exact_inverse:
            whose = ("its reverse" if sub is module
                     else f"it contains {article} {name}, whose reverse")
            return f"{whose} is not an exact, deterministic inverse (exact_inverse = False)"
        if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.training and sub.p > 0:
            return (f"it contains {article} {name} in training mode: recomputing the block would "
                    f"draw a different mask (use eval mode or standard backprop)")
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.training and (
                sub.track_running_stats):
            return (f"it contains {article} {name} in training mode: recomputing the block would "
                    f"update its running statistics again")
    return None


class MemoryEfficient:
    """The containers' ``memory_efficient`` switch: when on, training runs by inversion.

    A container lists its blocks in :meth:`_blocks_to_invert`. Turning the switch on, adding a
    block while it is on, and every run by inversion (train/eval modes may have changed since)
    refuse a block that cannot be recomputed exactly, with a ``ValueError`` naming it.
    """

    _memory_efficient = False  # class default: also for objects unpickled from older versions

    @property
    def memory_efficient(self) -> bool:
        """Whether training recomputes activations by inversion instead of storing them."""
        return self._memory_efficient

    @memory_efficient.setter
    def memory_efficient(self, value: bool) -> None:
        if value:
            self._refuse_inexact(self._blocks_to_invert())
        self._memory_efficient = bool(value)

    def _by_inversion(self) -> bool:
        """Whether this call runs by inversion: switched on, recording, not being compiled."""
        if self._memory_efficient and torch.is_grad_enabled() and not is_compiling():
            self._refuse_inexact(self._blocks_to_invert())
            return True
        return False

    def _blocks_to_invert(self) -> List[Tuple[str, nn.Module]]:
        """``(description, module)`` of every block a run by inversion inverts."""
        raise NotImplementedError

    def _refuse_inexact(self, blocks: Sequence[Tuple[str, nn.Module]]) -> None:
        """Raise ``ValueError`` naming the first block that cannot be recomputed by inversion."""
        for who, module in blocks:
            reason = _refusal(module)
            if reason is not None:
                raise ValueError(f"{type(self).__name__}(memory_efficient=True) cannot train {who} "
                                 f"by inversion: {reason}. Remove the block or use standard "
                                 f"backprop (memory_efficient=False).")


def _leaf(value: Tensor, needs_grad: bool) -> Tensor:
    """A detached copy of ``value`` that requires grad if asked (floating point only)."""
    return value.detach().requires_grad_(needs_grad and value.is_floating_point())


def _add(total: Optional[Tensor], part: Optional[Tensor]) -> Optional[Tensor]:
    """``total + part`` where either may be ``None`` (no contribution)."""
    return total if part is None else part if total is None else total + part


class _Run:
    """What the Function needs besides tensors: the steps, the slot layout, the parameters."""

    def __init__(self, steps: Sequence[Step], n_slots: int, starts: Tuple[int, ...],
                 ends: Tuple[int, ...], conditions: Sequence[Any], rev: bool, jac: bool) -> None:
        self.steps, self.n_slots, self.starts, self.ends = steps, n_slots, starts, ends
        self.rev, self.jac, self.conditions = rev, jac, list(conditions)  # non-tensors kept here
        own = [[p for p in step.module.parameters() if p.requires_grad] for step in steps]
        self.params: List[Tensor] = list({id(p): p for ps in own for p in ps}.values())  # shared
        index = {id(p): i for i, p in enumerate(self.params)}  # parameters count once
        self.step_params = [tuple(dict.fromkeys(index[id(p)] for p in ps)) for ps in own]
        self.dtypes: List[Optional[torch.dtype]] = [None] * n_slots
        self.autocast: Tuple[str, bool, torch.dtype] = ("cpu", False, torch.float32)


class _ByInversion(torch.autograd.Function):
    """A run of invertible steps whose backward recomputes inputs by inversion."""

    @staticmethod
    def forward(ctx: Any, run: _Run, n_inputs: int, *flat: Any) -> Tuple[Tensor, ...]:
        """Run the steps under ``no_grad``, dropping each value once consumed; save the outputs
        and the tensor conditions only."""
        inputs, cs = flat[:n_inputs], flat[n_inputs: n_inputs + len(run.conditions)]
        device = inputs[0].device.type
        run.autocast = (device, *autocast_state(device))
        values: List[Any] = [None] * run.n_slots
        for slot, value in zip(run.starts, inputs):
            values[slot], run.dtypes[slot] = value, value.dtype
        log_det = log_det_accumulator(inputs[0])
        for step in run.steps:
            xs = tuple(values[s] for s in step.in_slots)
            for s in step.in_slots:
                values[s] = None
            outs, j = step.call(xs, tuple(cs[i] for i in step.cond_indices), run.rev, run.jac)
            log_det = log_det + j if run.jac and j is not None else log_det
            for slot, value in zip(step.out_slots, outs):
                values[slot], run.dtypes[slot] = value, value.dtype
        # an output must be a new tensor of the Function, not an input or a view of one
        storages = {x.untyped_storage().data_ptr() for x in inputs}
        ends = tuple(values[s].clone() if values[s].untyped_storage().data_ptr() in storages
                     else values[s] for s in run.ends)
        ctx.run, ctx.n_inputs = run, n_inputs
        ctx.save_for_backward(*ends, *(c if isinstance(c, Tensor) else None for c in cs))
        return (*ends, log_det)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tuple[Optional[Tensor], ...]:
        """Walk the steps backwards: invert, recompute with a graph, vector-Jacobian product."""
        run: _Run = ctx.run
        n_ends, needs = len(run.ends), ctx.needs_input_grad[2:]
        saved = ctx.saved_tensors
        cs = [c if t is None else _leaf(t, need) for c, t, need in
              zip(run.conditions, saved[n_ends:], needs[ctx.n_inputs:])]
        values: List[Any] = [None] * run.n_slots
        grads: List[Optional[Tensor]] = [None] * run.n_slots
        for slot, value, grad in zip(run.ends, saved, grad_outputs):
            values[slot], grads[slot] = value.detach(), _add(grads[slot], grad)
        tables: Dict[str, List[Optional[Tensor]]] = {
            "slot": grads, "cond": [None] * len(cs), "param": [None] * len(run.params)}
        needs_start = dict(zip(run.starts, needs[:ctx.n_inputs]))
        device, enabled, dtype = run.autocast  # the forward's autocast state, restored
        amp = torch.autocast(device, dtype=dtype) if enabled else contextlib.nullcontext()
        with torch.enable_grad(), amp:
            for k in range(len(run.steps) - 1, -1, -1):
                step = run.steps[k]
                conds = tuple(cs[i] for i in step.cond_indices)
                with SubnetMemo(step.module) as memo:
                    with torch.no_grad():
                        xs, _ = step.call(tuple(values[s] for s in step.out_slots), conds,
                                          not run.rev, False)
                    xs = tuple(_leaf(x.to(run.dtypes[s]), needs_start.get(s, True))
                               for x, s in zip(xs, step.in_slots))
                    memo.replaying = True
                    outs, j = step.call(xs, conds, run.rev, run.jac)
                pairs = [(o, grads[s]) for o, s in zip(outs, step.out_slots)
                         if grads[s] is not None and o.requires_grad]
                if run.jac and j is not None and j.requires_grad:
                    pairs.append((j, grad_outputs[-1]))
                targets = ([("slot", s, x) for s, x in zip(step.in_slots, xs) if x.requires_grad]
                           + [("cond", i, cs[i]) for i in dict.fromkeys(step.cond_indices)
                              if isinstance(cs[i], Tensor) and cs[i].requires_grad]
                           + [("param", i, run.params[i]) for i in run.step_params[k]])
                found: Sequence[Optional[Tensor]] = [None] * len(targets)
                if pairs and targets:
                    found = torch.autograd.grad([o for o, _ in pairs], [t for *_, t in targets],
                                                [g for _, g in pairs], allow_unused=True)
                for s in step.out_slots:
                    values[s] = grads[s] = None
                for s, x in zip(step.in_slots, xs):
                    values[s] = x.detach()
                for (table, i, _), g in zip(targets, found):
                    tables[table][i] = _add(tables[table][i], g)
        return (None, None, *(grads[s] for s in run.starts), *tables["cond"], *tables["param"])


def run_by_inversion(
    steps: Sequence[Step], n_slots: int, slots: Tuple[Tuple[int, ...], Tuple[int, ...]],
    inputs: Sequence[Tensor], conditions: Sequence[Any], rev: bool, jac: bool,
) -> Tuple[Tuple[Tensor, ...], Tensor]:
    """Run ``steps`` as one memory-efficient autograd Function.

    Args:
        steps: the steps in execution order; slots index a value table of ``n_slots`` entries.
        n_slots: the size of the value table.
        slots: ``(start_slots, end_slots)``: where the inputs go, where the outputs are read.
        inputs: one tensor per start slot.
        conditions: the values ``Step.cond_indices`` index (tensors or other objects).
        rev: the direction of the run; each step is inverted in the other direction.
        jac: add the steps' log-dets (else the log-det stays zeros).

    Returns:
        ``(outputs, log_det)``: one tensor per end slot, and the ``(batch,)`` log-det.
    """
    run = _Run(steps, n_slots, *slots, conditions, rev, jac)
    result = _ByInversion.apply(run, len(inputs), *inputs, *conditions, *run.params)
    return tuple(result[:-1]), result[-1]
