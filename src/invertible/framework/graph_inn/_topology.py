"""Graph structure of GraphINN: membership checks, traversal and the deterministic order."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Dict, List, Set

from ..._errors import InvertibleTypeError

if TYPE_CHECKING:  # nodes.py imports this module; node types are only needed for hints
    from .nodes import AbstractNode

__all__ = ["check_membership", "collect_nodes", "topological_order"]


def _dangling(node: AbstractNode, index: int) -> InvertibleTypeError:
    """The error for output ``index`` of ``node`` that no node consumes (D9)."""
    return InvertibleTypeError(
        f"Output {index} of {node} is not consumed by any node (dangling output): connect it to "
        f"a later node or to an OutputNode."
    )


def _predecessors(node: AbstractNode, rev: bool) -> List[AbstractNode]:
    """Nodes ``node`` reads from in direction ``rev``, unique, in order of first appearance."""
    conns = list(node.outputs) + node.rev_conditions() if rev else node.inputs + node.conditions
    for index, conn in enumerate(conns):
        if conn is None:
            raise _dangling(node, index)
    return list(dict.fromkeys(pred for pred, _ in conns))


def topological_order(
    all_nodes: Sequence[AbstractNode],
    in_nodes: Sequence[AbstractNode],
    out_nodes: Sequence[AbstractNode],
    rev: bool = False,
) -> List[AbstractNode]:
    """Deterministic execution order of a graph (Kahn's algorithm run backwards from the ends).

    Starting from the end nodes (``out_nodes``, or ``in_nodes`` when ``rev``), a node is queued
    once every node reading from it has been listed; predecessors are visited in the order of
    the node's inputs, then its conditions. The reversed list is the execution order. This equals
    FrEIA's order wherever FrEIA's (set-based) order does not depend on memory addresses.

    Raises:
        ValueError: a start node is not connected to any end node, or edges remain (a cycle, or
            a node such as an unused FeedForwardNode that does not lead to an output).
    """
    ends, starts = (in_nodes, out_nodes) if rev else (out_nodes, in_nodes)
    preds = {node: _predecessors(node, rev) for node in all_nodes}
    succs: Dict[AbstractNode, Set[AbstractNode]] = {node: set() for node in all_nodes}
    for node, node_preds in preds.items():
        for pred in node_preds:
            succs.setdefault(pred, set()).add(node)
    result: List[AbstractNode] = []
    queue = deque(ends)
    while queue:
        node = queue.popleft()
        result.append(node)
        for pred in preds.get(node, []):
            succs[pred].discard(node)
            if not succs[pred]:
                queue.append(pred)
        preds[node] = []
    listed = set(result)
    cycle = _find_cycle(preds, listed) if len(listed) < len(preds) else []
    cyclic = (f"Graph is cyclic: {' -> '.join(repr(n) for n in cycle)} -> {cycle[0]!r} (each "
              f"node reads from the next)." if cycle else "")
    for start in starts:
        if start not in listed:
            kind = "input" if rev else "output"
            raise ValueError(
                f"Error in graph: {start} is not connected to any {kind}. {cyclic}".rstrip()
            )
    left = [node for node, node_succs in succs.items() if node_succs]
    if cycle:
        raise ValueError(cyclic)
    if left:
        raise ValueError(
            f"Graph is cyclic, or some node does not lead to an output (e.g. an unused "
            f"FeedForwardNode): unresolved edges from {left}."
        )
    return result[::-1]


def _find_cycle(preds: Dict[AbstractNode, List[AbstractNode]], listed: Set[AbstractNode]
                ) -> List[AbstractNode]:
    """The nodes of one cycle among the unlisted nodes, following predecessors; ``[]`` if none.

    Nodes listed by Kahn's algorithm cannot lie on a cycle; the others kept their predecessor
    lists, which a depth-first search walks.
    """
    done: Set[AbstractNode] = set()
    for root in preds:
        if root in listed or root in done:
            continue
        path, stack = [root], [iter(preds[root])]
        while stack:
            pred = next(stack[-1], None)
            if pred is None:
                done.add(path.pop())
                stack.pop()
            elif pred in path:
                return path[path.index(pred):]
            elif pred not in listed and pred not in done and pred in preds:
                path.append(pred)
                stack.append(iter(preds[pred]))
    return []


def check_membership(nodes: Sequence[AbstractNode]) -> None:
    """Every neighbour of every node is in ``nodes``, and every output slot is consumed.

    Raises:
        ValueError: a neighbour outside ``nodes``; a dangling output
            (:class:`~invertible._errors.InvertibleTypeError`, also a ``TypeError``).
    """
    members = set(nodes)
    tail = "but the latter is not in the node_list passed to GraphINN."
    for node in nodes:
        for pred, _ in node.inputs:
            if pred not in members:
                raise ValueError(f"{node} gets input from {pred}, {tail}")
        for index, conn in enumerate(node.outputs):
            if conn is None:
                raise _dangling(node, index)
            if conn[0] not in members:
                raise ValueError(f"{node} gives output {index} to {conn[0]}, {tail}")
        for cond, _ in node.conditions:
            if cond not in members:
                raise ValueError(f"{node} gets condition from {cond}, {tail}")


def collect_nodes(*input_nodes: AbstractNode) -> List[AbstractNode]:
    """All nodes reachable from ``input_nodes`` through consumers and conditions (BFS order).

    Follows ``node.outputs`` (the consumers) and ``node.conditions``; it does not walk inputs
    backwards, so a second InputNode that only feeds a later node must be passed as well.

    Raises:
        InvertibleTypeError: some output slot is not consumed by any node.
    """
    found: List[AbstractNode] = []
    seen: Set[int] = set()
    queue = deque(input_nodes)
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        found.append(node)
        for index, conn in enumerate(node.outputs):
            if conn is None:
                raise InvertibleTypeError(
                    f"collect_nodes: output {index} of {node} is not consumed by any node."
                )
            queue.append(conn[0])
        queue.extend(cond for cond, _ in node.conditions)
    return found
