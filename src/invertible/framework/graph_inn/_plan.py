"""GraphINN's execution plans: value-table slots of every connection, fixed at construction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Dict, NamedTuple, Tuple

from .nodes import AbstractNode, ConditionNode, FeedForwardNode, InputNode, OutputNode

__all__ = ["Connection", "Plan", "Shape", "Step", "build_plan"]

Shape = Tuple[int, ...]
Connection = Tuple[AbstractNode, int]


class Step(NamedTuple):
    """One node's work in one direction: value-table slots it reads and writes."""

    node: AbstractNode
    module_index: int
    in_slots: Tuple[int, ...]
    cond_slots: Tuple[int, ...]
    out_slots: Tuple[int, ...]


class Plan(NamedTuple):
    """Everything ``forward`` needs for one direction, precomputed at construction."""

    start_nodes: Tuple[AbstractNode, ...]
    start_slots: Tuple[int, ...]
    cond_slots: Tuple[int, ...]
    steps: Tuple[Step, ...]
    end_slots: Tuple[int, ...]
    n_slots: int
    keys: Dict[Connection, int]


def build_plan(
    order: Sequence[AbstractNode],
    in_nodes: Sequence[AbstractNode],
    out_nodes: Sequence[AbstractNode],
    condition_nodes: Sequence[AbstractNode],
    module_index: Dict[int, int],
    rev: bool,
) -> Plan:
    """Assign a value-table slot to every connection and list each node's slots.

    Args:
        order: the nodes in execution order of this direction.
        in_nodes: the graph's InputNodes; out_nodes: its OutputNodes; condition_nodes: its
            ConditionNodes (each in ``node_list`` order).
        module_index: ``id(node) -> k`` of the node's module in ``module_list``.
        rev: plan the reverse direction (start at the OutputNodes).
    """
    starts, ends = (out_nodes, in_nodes) if rev else (in_nodes, out_nodes)
    keys: Dict[Any, int] = {}  # connection -> slot
    for node in [*starts, *condition_nodes]:
        keys[(node, 0)] = len(keys)
    steps = []
    for node in order:
        if isinstance(node, (InputNode, OutputNode, ConditionNode)):
            continue
        # the order lists every node after those it reads from, so each key exists
        in_slots = tuple(keys[c] for c in (node.outputs if rev else node.inputs))
        cond_slots = tuple(keys[c] for c in (node.rev_conditions() if rev else node.conditions))
        # a node's reverse outputs are its forward inputs; FeedForwardNodes always run forwards
        reverses = rev and not isinstance(node, FeedForwardNode)
        first = len(keys)
        n_out = len(node.inputs) if reverses else len(node.output_dims)
        keys.update({(node, k): first + k for k in range(n_out)})
        steps.append(Step(node, module_index.get(id(node), -1), in_slots, cond_slots,
                          tuple(range(first, first + n_out))))
    n_slots = len(keys)
    for end in ends:
        keys[(end, 0)] = keys[end.outputs[0] if rev else end.inputs[0]]
    return Plan(tuple(starts), tuple(keys[(n, 0)] for n in starts),
                tuple(keys[(n, 0)] for n in condition_nodes), tuple(steps),
                tuple(keys[(n, 0)] for n in ends), n_slots, keys)
