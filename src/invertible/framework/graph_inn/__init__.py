"""Computation graphs of invertible modules: nodes and the `GraphINN` that runs them."""

from __future__ import annotations

from .graph_inn import GraphINN, topological_order
from .nodes import (
    AbstractNode,
    ConditionNode,
    FeedForwardNode,
    InputNode,
    Node,
    OutputNode,
    collect_nodes,
    parse_flexible_inputs,
)

__all__ = ["AbstractNode", "ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Node",
           "OutputNode", "collect_nodes", "parse_flexible_inputs", "topological_order"]
