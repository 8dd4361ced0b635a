"""`GraphINN`: an invertible network given as a graph of nodes, run in topological order."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ...modules.base import InvertibleModule
from .._calling import log_det_accumulator
from ._inversion import check_graph, forward_by_inversion
from ._pickling import flatten_node_references, restore_node_references
from ._plan import Plan, Shape, Step, build_plan
from ._topology import check_membership, topological_order
from .nodes import AbstractNode, ConditionNode, FeedForwardNode, InputNode, OutputNode

__all__ = ["GraphINN", "topological_order"]

Tensors = Union[Tensor, Sequence[Tensor]]


def _as_sequence(value: object, what: str) -> Tuple[Any, ...]:
    """A tensor becomes ``(tensor,)``; a list or tuple becomes a tuple."""
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise TypeError(f"GraphINN: {what} must be a tensor or a list/tuple, got {type(value)}.")


def _check_node_list(nodes: List[AbstractNode]) -> None:
    """Raise unless ``nodes`` holds only nodes (``TypeError``), each once (``ValueError``)."""
    for node in nodes:
        if not isinstance(node, AbstractNode):
            raise TypeError(f"GraphINN: node_list holds {node!r}, which is not a node.")
    if len(set(nodes)) != len(nodes):
        twice = sorted({repr(n) for n in nodes if nodes.count(n) > 1})
        raise ValueError(f"GraphINN: node_list holds nodes more than once: {twice}.")


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
        memory_efficient: train by inversion (also settable later as ``net.memory_efficient``):
            while autograd records, the invertible nodes run as one autograd Function that keeps
            no intermediate activations and recomputes every node's inputs from its outputs with
            the exact inverse in the backward pass (feed-forward nodes run normally). Nodes
            without an exact, deterministic inverse are refused with a ``ValueError``; the
            outputs are saved for the backward pass (do not modify them in place); not with
            ``intermediate_outputs=True``, not double-differentiable, not for ``torch.compile``.

    Under ``torch.autocast`` the log-det is accumulated in (at least) float32.

    Raises:
        ValueError: a node is missing from ``node_list``, an output is dangling
            (:class:`InvertibleTypeError`), an input is not connected, or the graph is cyclic.
    """

    _NODE_ATTRS = ("_nodes", "in_nodes", "out_nodes", "condition_nodes", "ff_nodes",
                   "node_list_fwd", "node_list_rev", "_plan_fwd", "_plan_rev")
    _memory_efficient = False  # class default: also for objects unpickled from older versions

    def __init__(
        self, node_list: Sequence[AbstractNode], force_tuple_output: bool = False,
        verbose: bool = False, memory_efficient: bool = False,
    ) -> None:
        nodes = list(node_list)
        _check_node_list(nodes)
        in_nodes = [n for n in nodes if isinstance(n, InputNode)]
        condition_nodes = [n for n in nodes if isinstance(n, ConditionNode)]
        check_membership(nodes)
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
        layout = (self.in_nodes, self.out_nodes, self.condition_nodes, module_index)
        self._plan_fwd = build_plan(self.node_list_fwd, *layout, rev=False)
        self._plan_rev = build_plan(self.node_list_rev, *layout, rev=True)
        self.memory_efficient = memory_efficient
        if verbose:
            print(self)

    @property
    def memory_efficient(self) -> bool:
        """Whether training recomputes activations by inversion instead of storing them."""
        return self._memory_efficient

    @memory_efficient.setter
    def memory_efficient(self, value: bool) -> None:
        if value:
            check_graph(self)
        self._memory_efficient = bool(value)

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
        if self._memory_efficient and torch.is_grad_enabled():
            return self._forward_by_inversion(plan, xs, cs, rev, jac, intermediate_outputs)
        slots: List[Any] = [None] * plan.n_slots
        for slot, value in zip(plan.start_slots + plan.cond_slots, xs + cs):
            slots[slot] = value
        log_det = log_det_accumulator(xs[0])
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

    @torch.compiler.disable  # an eager feature: under torch.compile the call runs uncompiled
    def _forward_by_inversion(
        self, plan: Plan, xs: Tuple[Any, ...], cs: Tuple[Any, ...], rev: bool, jac: bool,
        intermediate_outputs: bool,
    ) -> Tuple[Any, Any]:
        """``forward`` as one memory-efficient autograd Function (see ``memory_efficient``)."""
        if intermediate_outputs:
            raise ValueError(
                f"{type(self).__name__}(memory_efficient=True) keeps no intermediate values, so "
                f"it cannot return them (intermediate_outputs=True); set memory_efficient=False "
                f"or run under torch.no_grad()."
            )
        outputs, log_det = forward_by_inversion(self, plan, xs, cs, rev, jac)
        if len(outputs) == 1 and not self.force_tuple_output:
            return outputs[0], log_det
        return outputs, log_det

    def _check_call(self, plan: Plan, xs: Tuple[Any, ...], cs: Tuple[Any, ...], rev: bool) -> None:
        """Numbers and shapes of the inputs, with plain int comparisons (compile-safe)."""
        if len(xs) != len(plan.start_nodes):
            kind = "OutputNode" if rev else "InputNode"
            raise ValueError(
                f"{type(self).__name__}: Got {len(xs)} inputs, but expected "
                f"{len(plan.start_nodes)}. Pass one tensor per {kind}, in node_list order "
                f"({', '.join(repr(n.name) for n in plan.start_nodes)})."
            )
        if len(cs) != len(self.condition_nodes):
            raise ValueError(
                f"{type(self).__name__}: Got {len(cs)} conditions, but expected "
                f"{len(self.condition_nodes)}. Pass c=[...] with one value per ConditionNode "
                f"{[n.name for n in self.condition_nodes]}, in node_list order "
                f"({len(self.condition_nodes)} in all, {len(cs)} given)."
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

    def _run_step(self, step: Step, slots: List[Any], rev: bool, jac: bool) -> Tuple[Any, Any]:
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
        return flatten_node_references(super().__getstate__(), self._nodes, self._NODE_ATTRS)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        """Rebuild the nodes and restore their references."""
        super().__setstate__(restore_node_references(state, self._NODE_ATTRS))
