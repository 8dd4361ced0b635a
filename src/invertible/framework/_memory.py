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
the price of about one inverse per block (standard: forward + backward; here: forward, inverse,
cheap recompute, backward). Gradients equal standard backprop up to the round-off of the
reconstruction. The parameters and conditions are inputs of the Function,
so their gradients leave its backward through autograd (gradient hooks, DDP's included, fire as
usual); it is once differentiable (no double backward).

A block takes part only if its inverse is exact and deterministic: :func:`check_blocks` refuses
the approximately invertible built-ins, modules whose class sets ``exact_inverse = False``, and
train-mode dropout or batch norm inside a block (they would not recompute identically).

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

from ..modules.base import InvertibleModule
from ..modules.gaussian_mixture import GaussianMixtureModel
from ..modules.inv_auto_layers import InvAutoConv2D, InvAutoFC
from ..modules.invertible_resnet import IResNetLayer
from ..modules.orthogonal import OrthogonalTransform
from ._calling import autocast_state, log_det_accumulator
from ._subnet_memo import SubnetMemo

__all__ = ["Runner", "Step", "check_blocks", "run_by_inversion"]

#: ``runner(k, inputs, conditions, rev) -> (outputs, log_det or None)`` runs step ``k``.
Runner = Callable[[int, Tuple[Tensor, ...], Tuple[Any, ...], bool],
                  Tuple[Tuple[Tensor, ...], Optional[Tensor]]]

#: Built-in blocks without an exact, deterministic inverse, and why.
_REFUSED: Dict[type, str] = {
    IResNetLayer: "its inverse is a fixed-point iteration (approximate) and its log-det a "
    "stochastic Hutchinson estimate, so the input cannot be recomputed exactly",
    InvAutoFC: "its reverse is only an approximate inverse unless the weights are orthogonal",
    InvAutoConv2D: "its reverse is only an approximate inverse unless the weights are orthogonal",
    OrthogonalTransform: "its reverse assumes orthogonal weights, which training moves away from "
    "between the periodic corrections (and the correction runs in a backward hook)",
    GaussianMixtureModel: "its component index is a condition that may be None (every component "
    "at once, not a bijection) or an int seed, which inversion cannot reproduce as a tensor",
}
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)


class Step(NamedTuple):
    """One block of the run: value-table slots it reads and writes, and its module."""

    module: nn.Module
    in_slots: Tuple[int, ...]
    cond_indices: Tuple[int, ...]
    out_slots: Tuple[int, ...]


def _refusal(module: nn.Module) -> Optional[str]:
    """Why ``module`` (or a submodule of it) cannot be inverted exactly, else ``None``."""
    for sub in module.modules():
        for kind, reason in _REFUSED.items():
            if isinstance(sub, kind):
                return f"it contains a {kind.__name__}: {reason}"
        if isinstance(sub, InvertibleModule) and getattr(type(sub), "exact_inverse", True) is False:
            return f"it contains a {type(sub).__name__}, whose class sets exact_inverse = False"
        if isinstance(sub, _DROPOUT) and sub.training and sub.p > 0:
            return (f"it contains a {type(sub).__name__} in training mode: recomputing the block "
                    f"would draw a different mask (use eval mode or standard backprop)")
        if (isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.training
                and sub.track_running_stats):
            return (f"it contains a {type(sub).__name__} in training mode: recomputing the block "
                    f"would update its running statistics again")
    return None


def check_blocks(container: str, blocks: Sequence[Tuple[str, nn.Module]]) -> None:
    """Raise ``ValueError`` naming the first block that cannot be recomputed by inversion.

    Args:
        container: the container's name for the message.
        blocks: ``(description, module)`` pairs.
    """
    for who, module in blocks:
        reason = _refusal(module)
        if reason is not None:
            raise ValueError(
                f"{container}(memory_efficient=True) cannot train {who} by inversion: {reason}. "
                f"Remove the block or use standard backprop (memory_efficient=False)."
            )


class _Tape:
    """What the Function needs besides tensors: the steps, runner, layout and non-tensors."""

    def __init__(self, runner: Runner, steps: Sequence[Step], n_slots: int,
                 slots: Tuple[Tuple[int, ...], Tuple[int, ...]], rev: bool, jac: bool) -> None:
        self.runner, self.steps, self.n_slots, self.rev, self.jac = runner, steps, n_slots, rev, jac
        self.start_slots, self.end_slots = slots
        self.dtypes: List[Optional[torch.dtype]] = [None] * n_slots
        self.autocast: Tuple[str, bool, torch.dtype] = ("cpu", False, torch.bfloat16)
        self.conditions: List[Any] = []  # non-tensor conditions; tensors travel as inputs
        self.tensor_positions: List[int] = []
        self.params: List[Tensor] = []
        self.step_params: List[Tuple[int, ...]] = []

    def set_conditions(self, conditions: Sequence[Any]) -> List[Tensor]:
        """Keep the non-tensor conditions; return the tensors, which become inputs."""
        self.conditions = [None if isinstance(c, Tensor) else c for c in conditions]
        self.tensor_positions = [i for i, c in enumerate(conditions) if isinstance(c, Tensor)]
        return [conditions[i] for i in self.tensor_positions]

    def merge_conditions(self, tensors: Sequence[Any]) -> List[Any]:
        """All conditions, the tensor ones (or their leaves) put back in their places."""
        merged = list(self.conditions)
        for i, t in zip(self.tensor_positions, tensors):
            merged[i] = t
        return merged

    def set_params(self, steps: Sequence[Step]) -> List[Tensor]:
        """The distinct trainable parameters of all steps (inputs of the Function)."""
        index: Dict[int, int] = {}
        for step in steps:
            own = []
            for p in step.module.parameters():
                if p.requires_grad:
                    if id(p) not in index:
                        index[id(p)] = len(self.params)
                        self.params.append(p)
                    own.append(index[id(p)])
            self.step_params.append(tuple(dict.fromkeys(own)))
        return self.params


def _forward_pass(tape: _Tape, inputs: Sequence[Tensor], conds: Sequence[Any]
                  ) -> Tuple[Tuple[Tensor, ...], Tensor]:
    """Run every step without a graph; drop each value once its consumer has run."""
    values: List[Any] = [None] * tape.n_slots
    for slot, value in zip(tape.start_slots, inputs):
        values[slot] = value
        tape.dtypes[slot] = value.dtype
    log_det = log_det_accumulator(inputs[0])
    for k, step in enumerate(tape.steps):
        xs = tuple(values[s] for s in step.in_slots)
        for s in step.in_slots:
            values[s] = None
        outs, j = tape.runner(k, xs, tuple(conds[i] for i in step.cond_indices), tape.rev)
        if tape.jac and j is not None:
            log_det = log_det + j
        for slot, value in zip(step.out_slots, outs):
            values[slot] = value
            tape.dtypes[slot] = value.dtype
    ends = tuple(values[s] for s in tape.end_slots)
    # an output must be a new tensor of the Function, not an input or a view of one
    storages = {x.untyped_storage().data_ptr() for x in inputs}
    return tuple(e.clone() if e.untyped_storage().data_ptr() in storages else e
                 for e in ends), log_det


def _leaf(value: Any, needs_grad: bool) -> Any:
    """A detached copy of a tensor that requires grad if asked (floats only); others as is."""
    if not isinstance(value, Tensor):
        return value
    return value.detach().requires_grad_(needs_grad and value.is_floating_point())


def _needs(value: Any) -> bool:
    """Whether ``value`` is a tensor that requires grad."""
    return isinstance(value, Tensor) and value.requires_grad


def _add(total: Optional[Tensor], part: Optional[Tensor]) -> Optional[Tensor]:
    """``total + part`` where either may be ``None`` (no contribution)."""
    if part is None:
        return total
    return part if total is None else total + part


class _Walk:
    """The state of the backward walk: values and gradients per slot, per condition, per param."""

    def __init__(self, tape: _Tape, ends: Sequence[Tensor], grad_outputs: Sequence[Tensor],
                 leaves: List[Any]) -> None:
        self.tape, self.leaves = tape, leaves
        self.values: List[Any] = [None] * tape.n_slots
        self.grads: List[Optional[Tensor]] = [None] * tape.n_slots
        for slot, value, grad in zip(tape.end_slots, ends, grad_outputs):
            self.values[slot] = value.detach()
            self.grads[slot] = _add(self.grads[slot], grad)
        self.g_log_det = grad_outputs[-1] if tape.jac else None
        self.cond_grads: List[Optional[Tensor]] = [None] * len(leaves)
        self.param_grads: List[Optional[Tensor]] = [None] * len(tape.params)

    def step(self, k: int, needs_start: Dict[int, bool]) -> None:
        """Reconstruct step ``k``'s inputs, recompute it with a graph, add its VJP."""
        xs, outs, j = self._recompute(k, needs_start)
        tape, step = self.tape, self.tape.steps[k]
        pairs = [(o, self.grads[s]) for o, s in zip(outs, step.out_slots)
                 if self.grads[s] is not None and o.requires_grad]
        if self.g_log_det is not None and j is not None and j.requires_grad:
            pairs.append((j, self.g_log_det))
        x_slots = [s for s, x in zip(step.in_slots, xs) if _needs(x)]
        conds = [i for i in dict.fromkeys(step.cond_indices) if _needs(self.leaves[i])]
        wrt = ([x for x in xs if _needs(x)] + [self.leaves[i] for i in conds]
               + [tape.params[i] for i in tape.step_params[k]])
        found: Sequence[Optional[Tensor]] = [None] * len(wrt)
        if pairs and wrt:
            found = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs],
                                        allow_unused=True)
        for s in step.out_slots:
            self.values[s], self.grads[s] = None, None
        for s, x in zip(step.in_slots, xs):
            self.values[s] = x.detach()
        targets = ([(self.grads, s) for s in x_slots] + [(self.cond_grads, i) for i in conds]
                   + [(self.param_grads, i) for i in tape.step_params[k]])
        for (table, i), g in zip(targets, found):
            table[i] = _add(table[i], g)

    def _recompute(self, k: int, needs_start: Dict[int, bool]
                   ) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...], Optional[Tensor]]:
        """Step ``k``'s reconstructed inputs (leaves), and its outputs and log-det with a graph."""
        tape, step = self.tape, self.tape.steps[k]
        ys = tuple(self.values[s] for s in step.out_slots)
        cs = tuple(self.leaves[i] for i in step.cond_indices)
        with SubnetMemo(step.module) as memo:
            with torch.no_grad():
                xs, _ = tape.runner(k, ys, cs, not tape.rev)
            xs = tuple(_leaf(x.to(tape.dtypes[s]), needs_start.get(s, True))
                       for x, s in zip(xs, step.in_slots))
            memo.replaying = True
            outs, j = tape.runner(k, xs, cs, tape.rev)
        return xs, outs, j


class _InversionFunction(torch.autograd.Function):
    """A run of invertible steps whose backward recomputes inputs by inversion."""

    @staticmethod
    def forward(ctx: Any, tape: _Tape, n_inputs: int, *flat: Tensor  # type: ignore[override]
                ) -> Tuple[Tensor, ...]:
        """Run the steps under ``no_grad``; save only the outputs and the tensor conditions."""
        inputs = flat[:n_inputs]
        conds = flat[n_inputs: n_inputs + len(tape.tensor_positions)]
        device = inputs[0].device.type
        tape.autocast = (device, *autocast_state(device))
        ends, log_det = _forward_pass(tape, inputs, tape.merge_conditions(conds))
        ctx.tape, ctx.n_inputs = tape, n_inputs
        ctx.save_for_backward(*ends, *conds)
        return (*ends, log_det)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tuple[Optional[Tensor], ...]:
        """Walk the steps backwards: invert, recompute, vector-Jacobian product."""
        tape: _Tape = ctx.tape
        n_in, n_ends = ctx.n_inputs, len(tape.end_slots)
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad[2:]
        tensor_leaves = [_leaf(c, need) for c, need in zip(saved[n_ends:], needs[n_in:])]
        walk = _Walk(tape, saved[:n_ends], grad_outputs, tape.merge_conditions(tensor_leaves))
        needs_start = dict(zip(tape.start_slots, needs[:n_in]))
        device, enabled, dtype = tape.autocast  # the forward's autocast state, restored
        amp = torch.autocast(device, dtype=dtype) if enabled else contextlib.nullcontext()
        with torch.enable_grad(), amp:
            for k in range(len(tape.steps) - 1, -1, -1):
                walk.step(k, needs_start)
        cond_grads = [walk.cond_grads[i] for i in tape.tensor_positions]
        return (None, None, *(walk.grads[s] for s in tape.start_slots), *cond_grads,
                *walk.param_grads)


def run_by_inversion(
    runner: Runner, steps: Sequence[Step], n_slots: int,
    slots: Tuple[Tuple[int, ...], Tuple[int, ...]], inputs: Sequence[Tensor],
    conditions: Sequence[Any], rev: bool, jac: bool,
) -> Tuple[Tuple[Tensor, ...], Tensor]:
    """Run ``steps`` as one memory-efficient autograd Function.

    Args:
        runner: runs step ``k`` in a given direction (``rev`` for the run, ``not rev`` to invert).
        steps: the steps in execution order; slots index a value table of ``n_slots`` entries.
        n_slots: the size of the value table.
        slots: ``(start_slots, end_slots)``: where the inputs go, where the outputs are read.
        inputs: one tensor per start slot.
        conditions: the values ``Step.cond_indices`` index (tensors or other objects).
        rev: the direction of the run.
        jac: add the steps' log-dets (else the log-det stays zeros).

    Returns:
        ``(outputs, log_det)``: one tensor per end slot, and the ``(batch,)`` log-det.
    """
    tape = _Tape(runner, steps, n_slots, slots, rev, jac)
    cond_tensors = tape.set_conditions(conditions)
    params = tape.set_params(steps)
    result = _InversionFunction.apply(tape, len(inputs), *inputs, *cond_tensors, *params)
    return tuple(result[:-1]), result[-1]
