"""Flat pickling of GraphINN's nodes: node references become indices, so depth stays constant.

Nodes refer to each other (inputs, outputs, conditions), so pickling a deep graph node by node
would recurse once per node (FrEIA needed a raised recursion limit for CS-Flow). Instead, the
graph pickles every node's attributes with references replaced by :class:`NodeRef` indices and
rebuilds the references when loading.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

if TYPE_CHECKING:
    from .nodes import AbstractNode

__all__ = ["NODE_STATES_KEY", "NodeRef", "flatten_node_references", "restore_node_references"]

#: Key of the flattened node states in the pickled ``__dict__`` of a graph.
NODE_STATES_KEY = "_node_states"


class NodeRef:
    """Placeholder for a node while a graph is pickled (keeps pickling depth constant)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> Tuple[type, Tuple[int]]:
        """Pickle as ``NodeRef(index)``."""
        return (NodeRef, (self.index,))

    def __eq__(self, other: object) -> bool:
        """Equal to another reference to the same node."""
        return isinstance(other, NodeRef) and other.index == self.index

    def __hash__(self) -> int:
        """Hash of the index, consistent with ``__eq__``."""
        return hash(("NodeRef", self.index))


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


def _map_nodes(value: object, convert: Callable[[object], object]) -> object:
    """Rebuild lists, tuples and dicts with ``convert`` applied to each leaf (shallow types)."""
    if isinstance(value, (list, tuple)):
        items = [_map_nodes(item, convert) for item in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(type(value), "_fields") else tuple(items)
    if type(value) is dict:
        return {_map_nodes(k, convert): _map_nodes(v, convert) for k, v in value.items()}
    return convert(value)


def flatten_node_references(
    state: Dict[str, Any], nodes: Sequence[AbstractNode], attrs: Sequence[str]
) -> Dict[str, Any]:
    """Replace references to ``nodes`` in ``state[attr]`` (for ``attrs``) by :class:`NodeRef`.

    The nodes' own attributes are stored under ``NODE_STATES_KEY`` as ``(type, attributes)``
    with their references replaced too; ``module_type``/``module_args`` that cannot be pickled
    (closures) are replaced by placeholders. ``state`` is changed in place and returned.
    """
    index = {id(node): k for k, node in enumerate(nodes)}

    def to_ref(value: object) -> object:
        """One of ``nodes`` becomes its :class:`NodeRef`; anything else stays."""
        if id(value) in index and value is nodes[index[id(value)]]:
            return NodeRef(index[id(value)])
        return value

    node_states: List[Tuple[type, object]] = []
    for node in nodes:
        node_attrs = dict(node.__dict__)
        for key in ("module_type", "module_args"):
            if key in node_attrs:
                node_attrs[key] = _picklable(node_attrs[key])
        node_states.append((type(node), _map_nodes(node_attrs, to_ref)))
    for attr in attrs:
        state[attr] = _map_nodes(state[attr], to_ref)
    state[NODE_STATES_KEY] = node_states
    return state


def restore_node_references(state: Dict[str, Any], attrs: Sequence[str]) -> Dict[str, Any]:
    """The inverse of :func:`flatten_node_references`: rebuild the nodes, restore references.

    ``state`` is changed in place (``NODE_STATES_KEY`` is removed) and returned.
    """
    node_states = state.pop(NODE_STATES_KEY)
    nodes = [cls.__new__(cls) for cls, _ in node_states]

    def from_ref(value: object) -> object:
        """A :class:`NodeRef` becomes its rebuilt node; anything else stays."""
        return nodes[value.index] if isinstance(value, NodeRef) else value

    for node, (_, node_attrs) in zip(nodes, node_states):
        node.__dict__.update(_map_nodes(node_attrs, from_ref))
    for attr in attrs:
        state[attr] = _map_nodes(state[attr], from_ref)
    return state
