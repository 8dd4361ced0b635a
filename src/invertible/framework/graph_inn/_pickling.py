"""Flat pickling of GraphINN's nodes: node references become indices, so depth stays constant.

Nodes refer to each other (inputs, outputs, conditions), so pickling a deep graph node by node
would recurse once per node (FrEIA needed a raised recursion limit for CS-Flow). Instead, the
graph pickles a list of node states whose connections name nodes by their index in that list,
and rebuilds the references when loading.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Tuple, Type

from .nodes import AbstractNode

__all__ = ["flat_node_states", "nodes_from_states"]

_LINKS = ("inputs", "conditions", "outputs")  # lists of (node, index) pairs, or None


class _Unpicklable:
    """Stands in for a construction argument that cannot be pickled (e.g. a closure)."""

    def __init__(self, value: object) -> None:
        self.__name__ = str(getattr(value, "__name__", type(value).__name__))
        self.description = repr(value)

    def __repr__(self) -> str:
        """``<unpicklable ...>`` with the original's ``repr``."""
        return f"<unpicklable {self.description}>"


def _picklable(value: object) -> object:
    """``value`` if it pickles, else its picklable parts (dict values) or a placeholder."""
    try:
        pickle.dumps(value)
        return value
    except Exception:
        if isinstance(value, dict):
            return {key: _picklable(item) for key, item in value.items()}
        return _Unpicklable(value)


def _relink(links: List[Any], convert: Any) -> List[Optional[Tuple[Any, int]]]:
    """``[(node or index, k) or None]`` with each node or index replaced by ``convert(it)``."""
    return [None if link is None else (convert(link[0]), link[1]) for link in links]


NodeStates = List[Tuple[Type[AbstractNode], Dict[str, Any]]]


def flat_node_states(nodes: Sequence[AbstractNode]) -> NodeStates:
    """Each node's class and attributes, its connections given by node indices; ``module_type``
    and ``module_args`` that cannot be pickled (closures) are replaced by placeholders."""
    index = {id(node): k for k, node in enumerate(nodes)}
    states = []
    for node in nodes:
        state = {key: value for key, value in node.__dict__.items()
                 if not (key.startswith("out") and key[3:].isdigit())}  # rebuilt from output_dims
        state.update({key: _relink(state[key], lambda n: index[id(n)]) for key in _LINKS})
        state.update({key: _picklable(state[key]) for key in ("module_type", "module_args")})
        states.append((type(node), state))
    return states


def nodes_from_states(states: NodeStates) -> List[AbstractNode]:
    """The inverse of :func:`flat_node_states`: the nodes, connected again."""
    nodes = [cls.__new__(cls) for cls, _ in states]
    for node, (_, state) in zip(nodes, states):
        node.__dict__.update(state)
        for key in _LINKS:
            setattr(node, key, _relink(state[key], nodes.__getitem__))
        for k in range(len(node.output_dims)):
            setattr(node, f"out{k}", (node, k))
    return nodes
