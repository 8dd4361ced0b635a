"""Containers that compose invertible modules: `SequenceINN` chains and `GraphINN` graphs."""

from __future__ import annotations

from ..modules.base import InvertibleModule as InvertibleModule  # reachable as Ff.X, as in FrEIA
from ..modules.inverse import Inverse as Inverse
from .graph_inn import (
    ConditionNode,
    FeedForwardNode,
    GraphINN,
    InputNode,
    Node,
    OutputNode,
    collect_nodes,
)
from .reversible_graph_net import ReversibleGraphNet
from .reversible_sequential_net import ReversibleSequential
from .sequence_inn import SequenceINN

__all__ = ["ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Node", "OutputNode",
           "ReversibleGraphNet", "ReversibleSequential", "SequenceINN", "collect_nodes"]
