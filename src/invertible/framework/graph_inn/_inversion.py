"""GraphINN's memory-efficient pass: the invertible nodes run as one inversion Function.

The feed-forward nodes (condition embeddings) only read conditions; they run first with ordinary
autograd and their outputs enter the Function as conditions. Every other node is a step of
:func:`invertible.framework._memory.run_by_inversion`, in the plan's execution order, with the
plan's value-table slots; its inverse is the same node run in the other direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from torch import Tensor

from .._memory import Step, check_blocks, run_by_inversion
from ._plan import Plan
from ._plan import Step as PlanStep
from .nodes import FeedForwardNode

if TYPE_CHECKING:
    from .graph_inn import GraphINN

__all__ = ["check_graph", "forward_by_inversion"]


def _invertible_steps(plan: Plan) -> List[PlanStep]:
    """The plan's steps that run an invertible node (not a feed-forward node)."""
    return [s for s in plan.steps if not isinstance(s.node, FeedForwardNode)]


def check_graph(net: GraphINN) -> None:
    """``ValueError`` naming the first node whose module cannot be recomputed by inversion."""
    modules = [(step.node, net.module_list[step.module_index])
               for step in _invertible_steps(net._plan_fwd)]
    check_blocks(type(net).__name__, [(f"{node!r} ({type(m).__name__})", m) for node, m in modules])


class _GraphRunner:
    """Runs one invertible node of a memory-efficient pass in either direction."""

    def __init__(self, net: GraphINN, steps: List[PlanStep], rev: bool, jac: bool) -> None:
        self.net, self.steps, self.rev, self.jac = net, steps, rev, jac

    def __call__(
        self, k: int, xs: Tuple[Tensor, ...], cs: Tuple[Any, ...], rev: bool
    ) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        """Node ``k``'s outputs and log-det (``jac=False`` when it only inverts)."""
        n = len(xs)  # the node's inputs in this direction, then its conditions
        step = self.steps[k]._replace(in_slots=tuple(range(n)),
                                      cond_slots=tuple(range(n, n + len(cs))))
        return self.net._run_step(step, [*xs, *cs], rev, self.jac and rev == self.rev)


def forward_by_inversion(
    net: GraphINN, plan: Plan, xs: Sequence[Tensor], cs: Sequence[Any], rev: bool, jac: bool
) -> Tuple[Tuple[Tensor, ...], Tensor]:
    """The graph's outputs and log-det, computed by one inversion Function.

    Args:
        net: the graph.
        plan: its plan for the direction ``rev``.
        xs: one tensor per start node; cs: one value per ConditionNode.
        rev: the direction; jac: accumulate log-dets.
    """
    check_graph(net)  # train/eval modes may have changed since memory_efficient was set
    slots: List[Any] = [None] * plan.n_slots
    for slot, value in zip(plan.start_slots + plan.cond_slots, tuple(xs) + tuple(cs)):
        slots[slot] = value
    for step in plan.steps:
        if isinstance(step.node, FeedForwardNode):
            out, _ = net._run_step(step, slots, rev, jac)
            for slot, value in zip(step.out_slots, out):
                slots[slot] = value
    inv = _invertible_steps(plan)
    cond_slots = list(dict.fromkeys(s for step in inv for s in step.cond_slots))
    index = {slot: i for i, slot in enumerate(cond_slots)}
    steps = [Step(net.module_list[s.module_index], s.in_slots,
                  tuple(index[c] for c in s.cond_slots), s.out_slots) for s in inv]
    return run_by_inversion(_GraphRunner(net, inv, rev, jac), steps, plan.n_slots,
                            (plan.start_slots, plan.end_slots), xs,
                            [slots[s] for s in cond_slots], rev, jac)
