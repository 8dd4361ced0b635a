"""`GraphINN`: an invertible network given as a graph of nodes, run in topological order."""

from __future__ import annotations

import pickle
import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..._errors import InvertibleTypeError
from ...modules.base import InvertibleModule
from .nodes import AbstractNode, ConditionNode, FeedForwardNode, InputNode, OutputNode

__all__ = ["GraphINN", "topological_order"]

Shape = Tuple[int, ...]
Connection = Tuple[AbstractNode, int]
Tensors = Union[Tensor, Sequence[Tensor]]


def _predecessors(node: AbstractNode, rev: bool) -> List[AbstractNode]:
    """Nodes ``node`` reads from in direction ``rev``, unique, in order of first appearance."""
    conns = list(node.outputs) + node.rev_conditions() if rev else node.inputs + node.conditions
    for index, conn in enumerate(conns):
        if conn is None:
            raise InvertibleTypeError(
                f"Output {index} of {node} is not consumed by any node (dangling output)."
            )
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
    succs: Dict[AbstractNode, set] = {node: set() for node in all_nodes}
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
    for start in starts:
        if start not in listed:
            kind = "input" if rev else "output"
            raise ValueError(f"Error in graph: {start} is not connected to any {kind}.")
    left = [node for node, node_succs in succs.items() if node_succs]
    if left:
        raise ValueError(
            f"Graph is cyclic, or some node does not lead to an output (e.g. an unused "
            f"FeedForwardNode): unresolved edges from {left}."
        )
    return result[::-1]


class _Step(NamedTuple):
    """One node's work in one direction: value-table slots it reads and writes."""

    node: AbstractNode
    module_index: int
    in_slots: Tuple[int, ...]
    cond_slots: Tuple[int, ...]
    out_slots: Tuple[int, ...]


class _Plan(NamedTuple):
    """Everything ``forward`` needs for one direction, precomputed at construction."""

    start_nodes: Tuple[AbstractNode, ...]
    start_shapes: Tuple[Shape, ...]
    start_slots: Tuple[int, ...]
    cond_slots: Tuple[int, ...]
    steps: Tuple[_Step, ...]
    end_slots: Tuple[int, ...]
    n_slots: int
    keys: Dict[Connection, int]


def _slot(keys: Dict[Connection, int], conn: Connection, reader: AbstractNode) -> int:
    """The slot holding ``conn``; an error if nothing computes it before ``reader`` runs."""
    if conn not in keys:
        raise ValueError(f"{reader} reads {conn}, which no earlier node computes.")
    return keys[conn]


def _build_plan(
    order: Sequence[AbstractNode], graph: GraphINN, module_index: Dict[int, int], rev: bool
) -> _Plan:
    """Assign a value-table slot to every connection and list each node's slots."""
    starts, ends = (graph.out_nodes, graph.in_nodes) if rev else (graph.in_nodes, graph.out_nodes)
    keys: Dict[Connection, int] = {}
    for node in list(starts) + list(graph.condition_nodes):
        keys[(node, 0)] = len(keys)
    n_slots = len(keys)
    steps = []
    for node in order:
        if isinstance(node, (InputNode, OutputNode, ConditionNode)):
            continue
        in_keys = node.outputs if rev else node.inputs
        cond_keys = node.rev_conditions() if rev else node.conditions
        in_slots = tuple(_slot(keys, conn, node) for conn in in_keys)
        cond_slots = tuple(_slot(keys, conn, node) for conn in cond_keys)
        # a node's reverse outputs are its forward inputs; FeedForwardNodes always run forwards
        reverses = rev and not isinstance(node, FeedForwardNode)
        n_out = len(node.inputs) if reverses else len(node.output_dims)
        out_slots = tuple(range(n_slots, n_slots + n_out))
        keys.update({(node, k): n_slots + k for k in range(n_out)})
        n_slots += n_out
        steps.append(_Step(node, module_index.get(id(node), -1), in_slots, cond_slots, out_slots))
    end_slots = []
    for end in ends:
        conn = end.outputs[0] if rev else end.inputs[0]
        keys[(end, 0)] = _slot(keys, conn, end)
        end_slots.append(keys[(end, 0)])
    shapes = [n.input_dims[0] if rev else n.output_dims[0] for n in starts]
    return _Plan(tuple(starts), tuple(shapes), tuple(keys[(n, 0)] for n in starts),
                 tuple(keys[(n, 0)] for n in graph.condition_nodes), tuple(steps),
                 tuple(end_slots), n_slots, keys)


def _check_membership(nodes: Sequence[AbstractNode]) -> None:
    """Every neighbour of every node is in ``nodes``, and every output slot is consumed."""
    members = set(nodes)
    tail = "but the latter is not in the node_list passed to GraphINN."
    for node in nodes:
        for pred, _ in node.inputs:
            if pred not in members:
                raise ValueError(f"{node} gets input from {pred}, {tail}")
        for index, conn in enumerate(node.outputs):
            if conn is None:
                raise InvertibleTypeError(
                    f"Output {index} of {node} is not consumed by any node (dangling output): "
                    f"connect it to a later node or to an OutputNode."
                )
            if conn[0] not in members:
                raise ValueError(f"{node} gives output {index} to {conn[0]}, {tail}")
        for cond, _ in node.conditions:
            if cond not in members:
                raise ValueError(f"{node} gets condition from {cond}, {tail}")


def _as_sequence(value: object, what: str) -> Tuple[Any, ...]:
    """A tensor becomes ``(tensor,)``; a list or tuple becomes a tuple."""
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise TypeError(f"GraphINN: {what} must be a tensor or a list/tuple, got {type(value)}.")


class _NodeRef:
    """Placeholder for a node while a graph is pickled (keeps pickling depth constant)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> Tuple[type, Tuple[int]]:
        return (_NodeRef, (self.index,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NodeRef) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("_NodeRef", self.index))


class _Unpicklable:
    """Stands in for a construction argument that cannot be pickled (e.g. a closure)."""

    def __init__(self, value: object) -> None:
        self.__name__ = str(getattr(value, "__name__", type(value).__name__))
        self.description = repr(value)

    def __repr__(self) -> str:
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


def _map_nodes(value: object, convert: Any) -> object:
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


class GraphINN(InvertibleModule):
    r"""An invertible network given as a directed acyclic graph of nodes.

    The inputs, outputs and conditions are the ``InputNode``, ``OutputNode`` and
    ``ConditionNode`` objects of ``node_list``, in that list's order. Every other node runs in
    the deterministic topological order of :func:`topological_order`; the log-dets of all nodes
    add up: :math:`\log|\det J_f| = \sum_n \log|\det J_n|`. Its modules are registered in
    ``module_list`` in forward order (``state_dict`` keys ``module_list.<k>.*``).

    Args:
        node_list: every node of the graph (the order of nodes of the same kind matters).
        force_tuple_output: return a tuple also for a single output (needed for embedding).
        verbose: print the network after building it.

    Raises:
        ValueError: a node is missing from ``node_list``, an output is dangling
            (:class:`InvertibleTypeError`), an input is not connected, or the graph is cyclic.
    """

    _NODE_ATTRS = ("_nodes", "in_nodes", "out_nodes", "condition_nodes", "ff_nodes",
                   "node_list_fwd", "node_list_rev", "_plan_fwd", "_plan_rev")

    def __init__(
        self, node_list: Sequence[AbstractNode], force_tuple_output: bool = False,
        verbose: bool = False,
    ) -> None:
        nodes = list(node_list)
        for node in nodes:
            if not isinstance(node, AbstractNode):
                raise TypeError(f"GraphINN: node_list holds {node!r}, which is not a node.")
        if len(set(nodes)) != len(nodes):
            twice = sorted({repr(n) for n in nodes if nodes.count(n) > 1})
            raise ValueError(f"GraphINN: node_list holds nodes more than once: {twice}.")
        in_nodes = [n for n in nodes if isinstance(n, InputNode)]
        condition_nodes = [n for n in nodes if isinstance(n, ConditionNode)]
        _check_membership(nodes)
        super().__init__([n.output_dims[0] for n in in_nodes],
                         [n.output_dims[0] for n in condition_nodes])
        self._nodes = nodes
        self.in_nodes = in_nodes
        self.condition_nodes = condition_nodes
        self.out_nodes = [n for n in nodes if isinstance(n, OutputNode)]
        self.ff_nodes = [n for n in nodes if isinstance(n, FeedForwardNode)]
        self.global_out_shapes = [n.input_dims[0] for n in self.out_nodes]
        self.force_tuple_output = force_tuple_output
        self.node_list_fwd = topological_order(nodes, in_nodes, self.out_nodes, rev=False)
        self.node_list_rev = topological_order(nodes, in_nodes, self.out_nodes, rev=True)
        with_module = [n for n in self.node_list_fwd if n.module is not None]
        self.module_list = nn.ModuleList([n.module for n in with_module])
        module_index = {id(n): k for k, n in enumerate(with_module)}
        self._plan_fwd = _build_plan(self.node_list_fwd, self, module_index, rev=False)
        self._plan_rev = _build_plan(self.node_list_rev, self, module_index, rev=True)
        if verbose:
            print(self)

    @property
    def node_list(self) -> List[AbstractNode]:
        """The nodes in forward execution order."""
        return self.node_list_fwd

    def output_dims(self, input_dims: Optional[List[Shape]] = None) -> List[Shape]:
        """The output shapes (``input_dims`` is ignored); only for tuple-returning graphs."""
        if len(self.global_out_shapes) == 1 and not self.force_tuple_output:
            raise ValueError(
                "You can only call output_dims on a GraphINN with more than one output or when "
                "setting force_tuple_output=True."
            )
        return list(self.global_out_shapes)

    def forward(
        self,
        x_or_z: Optional[Tensors] = None,
        c: Optional[Union[Tensor, Sequence[Any]]] = None,
        rev: bool = False,
        jac: bool = True,
        intermediate_outputs: bool = False,
        x: Optional[Tensors] = None,
    ) -> Tuple[Any, Any]:
        """Run the graph forwards (``x -> z``) or in reverse (``z -> x``, ``rev=True``).

        Args:
            x_or_z: one tensor per InputNode (per OutputNode when ``rev``): a tensor, list or
                tuple.
            c: one value per ConditionNode: a tensor, list, tuple or ``None``.
            rev: run the inverse.
            jac: accumulate the log-determinant (with ``False`` it stays zeros).
            intermediate_outputs: return the value table and the per-node log-dets instead.
            x: deprecated alias of ``x_or_z``.

        Returns:
            ``(outputs, log_det)``: a bare tensor for a single output unless
            ``force_tuple_output``, else a tuple; ``log_det`` is ``(batch,)``. With
            ``intermediate_outputs``: ``(values by connection, log-dets by node or None)``.
        """
        if x is not None:
            warnings.warn("GraphINN.forward(x=...) is deprecated; use x_or_z.", DeprecationWarning)
            x_or_z = x
        if x_or_z is None:
            raise ValueError("GraphINN.forward needs the input tensors x_or_z.")
        xs = _as_sequence(x_or_z, "x_or_z")
        cs = () if c is None else _as_sequence(c, "c")
        plan = self._plan_rev if rev else self._plan_fwd
        self._check_call(plan, xs, cs, rev)
        slots: List[Any] = [None] * plan.n_slots
        for slot, value in zip(plan.start_slots + plan.cond_slots, xs + cs):
            slots[slot] = value
        log_det = xs[0].new_zeros(xs[0].shape[0])
        jacobians: Dict[AbstractNode, Tensor] = {}
        for step in plan.steps:
            out, j = self._run_step(step, slots, rev, jac)
            if jac and j is not None:
                log_det = log_det + j
                if intermediate_outputs:
                    jacobians[step.node] = j
            for slot, value in zip(step.out_slots, out):
                slots[slot] = value
        if intermediate_outputs:
            return {key: slots[s] for key, s in plan.keys.items()}, (jacobians if jac else None)
        outputs = tuple(slots[s] for s in plan.end_slots)
        if len(outputs) == 1 and not self.force_tuple_output:
            return outputs[0], log_det
        return outputs, log_det

    def _check_call(self, plan: _Plan, xs: Tuple[Any, ...], cs: Tuple[Any, ...], rev: bool) -> None:
        """Numbers and shapes of the inputs, with plain int comparisons (compile-safe)."""
        if len(xs) != len(plan.start_nodes):
            raise ValueError(f"Got {len(xs)} inputs, but expected {len(plan.start_nodes)}.")
        if len(cs) != len(self.condition_nodes):
            raise ValueError(
                f"Got {len(cs)} conditions, but expected {len(self.condition_nodes)}."
            )
        if not xs:
            raise ValueError(f"{type(self).__name__} has no {'outputs' if rev else 'inputs'}.")
        if torch.jit.is_tracing():  # traced sizes are tensors: comparing them would warn
            return
        for node, shape, value in zip(plan.start_nodes, plan.start_shapes, xs):
            if not isinstance(value, Tensor):
                raise TypeError(f"GraphINN: the value for {node!r} must be a tensor, got "
                                f"{type(value).__name__}.")
            if value.dim() != len(shape) + 1 or tuple(value.shape[1:]) != shape:
                raise ValueError(
                    f"GraphINN: the tensor for {node!r} has shape {tuple(value.shape)}, but "
                    f"expected (batch, *{shape}) = (B, {', '.join(str(d) for d in shape)})."
                )

    def _run_step(self, step: _Step, slots: List[Any], rev: bool, jac: bool) -> Tuple[Any, Any]:
        """Run one node; any error becomes a ``RuntimeError`` naming the node (K8)."""
        module = self.module_list[step.module_index] if step.module_index >= 0 else None
        inputs = tuple(slots[s] for s in step.in_slots)
        conditions = tuple(slots[s] for s in step.cond_slots)
        try:
            return step.node._run(module, inputs, conditions, rev, jac)
        except Exception as error:
            raise RuntimeError(
                f"{step.node} encountered an error: {type(error).__name__}: {error}"
            ) from error

    def get_node_by_name(self, name: str) -> Optional[AbstractNode]:
        """The first node of ``node_list`` called ``name``, else ``None``."""
        for node in self.node_list:
            if node.name == name:
                return node
        return None

    def get_module_by_name(self, name: str) -> Optional[nn.Module]:
        """The module of the node called ``name`` (``None`` if absent or module-less)."""
        node = self.get_node_by_name(name)
        return None if node is None else node.module

    def log_jacobian_numerical(
        self, x: Tensors, c: Optional[Union[Tensor, Sequence[Any]]] = None, rev: bool = False,
        h: float = 1e-4,
    ) -> Tensor:
        """``log|det J|`` per sample from central finite differences with step ``h``."""
        xs = _as_sequence(x, "x")
        batch = xs[0].shape[0]
        sizes = [t[0].numel() for t in xs]
        flat = torch.cat([t.reshape(batch, -1) for t in xs], dim=1)
        columns = []
        with torch.no_grad():
            for i in range(flat.shape[1]):
                shift = torch.zeros_like(flat)
                shift[:, i] = h
                plus = self._flat_forward(flat + shift, xs, sizes, c, rev)
                minus = self._flat_forward(flat - shift, xs, sizes, c, rev)
                columns.append((plus - minus) / (2 * h))
        return torch.linalg.slogdet(torch.stack(columns, dim=2))[1]

    def _flat_forward(
        self, flat: Tensor, like: Sequence[Tensor], sizes: List[int], c: Any, rev: bool
    ) -> Tensor:
        """Run the graph on flattened inputs; return the flattened, concatenated outputs."""
        parts = flat.split(sizes, dim=1)
        inputs = [p.reshape(t.shape) for p, t in zip(parts, like)]
        outputs, _ = self.forward(inputs, c=c, rev=rev, jac=False)
        outputs = (outputs,) if isinstance(outputs, Tensor) else outputs
        return torch.cat([o.reshape(flat.shape[0], -1) for o in outputs], dim=1)

    def plot(self, path: str, filename: str) -> None:
        """Draw the graph with Graphviz to ``path/filename`` (see ``invertible.utils``)."""
        from ...utils import plot_graph

        plot_graph(self.node_list, path, filename)

    def __getstate__(self) -> Dict[str, Any]:
        """Pickle the nodes flat (node references become indices), so depth stays constant."""
        state = super().__getstate__()
        index = {id(node): k for k, node in enumerate(self._nodes)}

        def to_ref(value: object) -> object:
            if isinstance(value, AbstractNode) and id(value) in index:
                return _NodeRef(index[id(value)])
            return value

        node_states = []
        for node in self._nodes:
            attrs = dict(node.__dict__)
            for key in ("module_type", "module_args"):
                if key in attrs:
                    attrs[key] = _picklable(attrs[key])
            node_states.append((type(node), _map_nodes(attrs, to_ref)))
        for attr in self._NODE_ATTRS:
            state[attr] = _map_nodes(state[attr], to_ref)
        state["_node_states"] = node_states
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        """Rebuild the nodes and restore their references."""
        node_states = state.pop("_node_states")
        nodes = [cls.__new__(cls) for cls, _ in node_states]

        def from_ref(value: object) -> object:
            return nodes[value.index] if isinstance(value, _NodeRef) else value

        for node, (_, attrs) in zip(nodes, node_states):
            node.__dict__.update(_map_nodes(attrs, from_ref))
        for attr in self._NODE_ATTRS:
            state[attr] = _map_nodes(state[attr], from_ref)
        super().__setstate__(state)
