"""Graph structure of GraphINN: membership checks and the deterministic execution order."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Dict, List, Set

from ..._errors import InvertibleTypeError
from .nodes import AbstractNode

__all__ = ["check_membership", "topological_order"]


def _dangling(node: AbstractNode, index: int) -> InvertibleTypeError:
    """The error for output ``index`` of ``node`` that no node consumes (FrEIA crashed with a raw
    ``TypeError`` here; the class is both a ``ValueError`` and a ``TypeError``)."""
    return InvertibleTypeError(f"Output {index} of {node} is not consumed by any node (dangling "
                               f"output): connect it to a later node or to an OutputNode.")


def topological_order(all_nodes: Sequence[AbstractNode], in_nodes: Sequence[AbstractNode],
                      out_nodes: Sequence[AbstractNode], rev: bool = False) -> List[AbstractNode]:
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
    preds: Dict[AbstractNode, List[AbstractNode]] = {}
    succs: Dict[AbstractNode, Set[AbstractNode]] = {node: set() for node in all_nodes}
    for node in all_nodes:
        conns = (list(node.outputs) + node.rev_conditions() if rev
                 else node.inputs + node.conditions)
        for index, conn in enumerate(conns):
            if conn is None:
                raise _dangling(node, index)
        preds[node] = list(dict.fromkeys(pred for pred, _ in conns))  # type: ignore[misc]
        for pred in preds[node]:
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
    listed = set(result)
    left = [node for node, node_succs in succs.items() if node_succs]  # edges never resolved
    problem = (f"Graph is cyclic, or some node does not lead to an output (e.g. an unused "
               f"FeedForwardNode): unresolved edges from {left}." if left else "")
    for start in starts:
        if start not in listed:
            raise ValueError(f"Error in graph: {start} is not connected to any "
                             f"{'input' if rev else 'output'}. {problem}".rstrip())
    if left:
        raise ValueError(problem)
    return result[::-1]


def check_membership(nodes: Sequence[AbstractNode]) -> None:
    """Every neighbour of every node is in ``nodes``, and every output slot is consumed.

    Raises:
        ValueError: a neighbour outside ``nodes``; a dangling output
            (:class:`~invertible._errors.InvertibleTypeError`, also a ``TypeError``).
    """
    members = set(nodes)
    for node in nodes:
        index = next((k for k, conn in enumerate(node.outputs) if conn is None), None)
        if index is not None:
            raise _dangling(node, index)
        links = [("gets input from", p) for p, _ in node.inputs] + [
            (f"gives output {k} to", c[0]) for k, c in enumerate(node.outputs) if c is not None] + [
            ("gets condition from", c) for c, _ in node.conditions]
        for what, other in links:
            if other not in members:
                raise ValueError(f"{node} {what} {other}, but the latter is not in the node_list "
                                 f"passed to GraphINN.")
