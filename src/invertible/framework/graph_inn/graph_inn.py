"""`GraphINN`: an invertible network given as a graph of nodes, run in topological order."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ... import utils
from ...modules.base import InvertibleModule, check_tensors
from .._calling import log_det_accumulator
from .._memory import MemoryEfficient, run_by_inversion
from .._memory import Step as MemoryStep
from ._pickling import flat_node_states, nodes_from_states
from ._plan import Plan, Shape, Step, build_plan
from ._topology import check_membership, topological_order
from .nodes import AbstractNode, ConditionNode, FeedForwardNode, InputNode, NodeResult, OutputNode

__all__ = ["GraphINN", "topological_order"]

Tensors = Union[Tensor, Sequence[Tensor]]
_DERIVED = ("_nodes", "in_nodes", "out_nodes", "condition_nodes", "ff_nodes", "node_list_fwd",
            "node_list_rev", "_plan_fwd", "_plan_rev")  # rebuilt from the nodes after unpickling


def _as_tuple(value: object, what: str) -> Tuple[Any, ...]:
    """A tensor becomes ``(tensor,)``; a list or tuple becomes a tuple."""
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise TypeError(f"GraphINN: {what} must be a tensor or a list/tuple of tensors, got "
                    f"{type(value).__name__}.")


class GraphINN(MemoryEfficient, InvertibleModule):
    r"""An invertible network given as a directed acyclic graph of nodes.

    The inputs, outputs and conditions are the ``InputNode``, ``OutputNode`` and
    ``ConditionNode`` objects of ``node_list``, in that list's order. Every other node runs in
    the deterministic topological order of :func:`topological_order`; the log-dets of all nodes
    add up: :math:`\log|\det J_f| = \sum_n \log|\det J_n|`. Its modules are registered in
    ``module_list`` in forward order (``state_dict`` keys ``module_list.<k>.*``).

    The graph's shapes are proved when it is built (each node's module is built for, or checked
    against, its inputs' shapes), so a call checks only the number of tensors and, forwards, each
    input's type, rank and channel count: a fully convolutional graph runs at any image size, and
    each block checks what its own math needs. Reverse inputs are not checked against the output
    shapes the blocks declared, because some blocks return more than their declared shape (the
    Gaussian mixture with all components gives ``(B, K, D)``) and take it back in reverse.

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
            ``intermediate_outputs=True``, not double-differentiable; under ``torch.compile``
            the graph runs the standard way.

    Under ``torch.autocast`` the log-det is accumulated in (at least) float32.

    Raises:
        ValueError: a node is missing from ``node_list``, an output is dangling
            (:class:`InvertibleTypeError`), an input is not connected, or the graph is cyclic.
    """

    def __init__(self, node_list: Sequence[AbstractNode], force_tuple_output: bool = False,
                 verbose: bool = False, memory_efficient: bool = False) -> None:
        nodes = list(node_list)
        for node in (n for n in nodes if not isinstance(n, AbstractNode)):
            raise TypeError(f"GraphINN: node_list holds {node!r}, which is not a node.")
        if len(set(nodes)) != len(nodes):
            twice = sorted({repr(n) for n in nodes if nodes.count(n) > 1})
            raise ValueError(f"GraphINN: node_list holds nodes more than once: {twice}.")
        check_membership(nodes)
        super().__init__([n.output_dims[0] for n in nodes if isinstance(n, InputNode)],
                         [n.output_dims[0] for n in nodes if isinstance(n, ConditionNode)])
        self.force_tuple_output = force_tuple_output
        self._wire(nodes)
        self.module_list = nn.ModuleList([n.module for n in self.node_list_fwd
                                          if n.module is not None])
        self.memory_efficient = memory_efficient
        if verbose:
            print(self)

    def _wire(self, nodes: List[AbstractNode]) -> None:
        """The node lists, orders and execution plans derived from ``nodes``."""
        self._nodes = nodes
        self.in_nodes = [n for n in nodes if isinstance(n, InputNode)]
        self.condition_nodes = [n for n in nodes if isinstance(n, ConditionNode)]
        self.out_nodes = [n for n in nodes if isinstance(n, OutputNode)]
        self.ff_nodes = [n for n in nodes if isinstance(n, FeedForwardNode)]
        self.global_out_shapes = [n.input_dims[0] for n in self.out_nodes]
        self.node_list_fwd = topological_order(nodes, self.in_nodes, self.out_nodes, rev=False)
        self.node_list_rev = topological_order(nodes, self.in_nodes, self.out_nodes, rev=True)
        with_module = [n for n in self.node_list_fwd if n.module is not None]
        layout = (self.in_nodes, self.out_nodes, self.condition_nodes,
                  {id(n): k for k, n in enumerate(with_module)})
        self._plan_fwd = build_plan(self.node_list_fwd, *layout, rev=False)
        self._plan_rev = build_plan(self.node_list_rev, *layout, rev=True)

    def _blocks_to_invert(self) -> List[Tuple[str, nn.Module]]:
        """The modules of all nodes but the feed-forward ones, named by their nodes."""
        modules = [(s.node, self.module_list[s.module_index]) for s in self._plan_fwd.steps
                   if not isinstance(s.node, FeedForwardNode)]
        return [(f"{n!r} ({type(m).__name__})", m) for n, m in modules]

    @property
    def node_list(self) -> List[AbstractNode]:
        """The nodes in forward execution order."""
        return self.node_list_fwd

    def output_dims(self, input_dims: Optional[List[Shape]] = None) -> List[Shape]:
        """The output shapes (``input_dims`` is ignored); only for tuple-returning graphs."""
        if len(self.global_out_shapes) == 1 and not self.force_tuple_output:
            raise ValueError("You can only call output_dims on a GraphINN with more than one "
                             "output or when setting force_tuple_output=True.")
        return list(self.global_out_shapes)

    def forward(
            self, x_or_z: Optional[Tensors] = None, c: Optional[Tensors] = None, rev: bool = False,
            jac: bool = True, intermediate_outputs: bool = False, x: Optional[Tensors] = None,
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
        plan = self._plan_rev if rev else self._plan_fwd
        xs, cs = self._checked_call(plan, _as_tuple(x_or_z, "x_or_z"),
                                    () if c is None else _as_tuple(c, "c"), rev)
        slots: List[Any] = [None] * plan.n_slots
        for slot, value in zip(plan.start_slots + plan.cond_slots, xs + cs):
            slots[slot] = value
        if self._by_inversion():
            outputs, log_det = self._forward_by_inversion(plan, slots, rev, jac,
                                                          intermediate_outputs)
        else:
            log_det = log_det_accumulator(xs[0])
            jacobians: Dict[AbstractNode, Tensor] = {}
            for step in plan.steps:
                out, j = self._run_node(step, tuple(slots[s] for s in step.in_slots),
                                        tuple(slots[s] for s in step.cond_slots), rev, jac)
                if jac and j is not None:
                    log_det = log_det + j
                    jacobians[step.node] = j
                for slot, value in zip(step.out_slots, out):
                    slots[slot] = value
            if intermediate_outputs:
                return {key: slots[s] for key, s in plan.keys.items()}, (jacobians if jac else None)
            outputs = tuple(slots[s] for s in plan.end_slots)
        if len(outputs) == 1 and not self.force_tuple_output:
            return outputs[0], log_det
        return outputs, log_det

    def _checked_call(self, plan: Plan, xs: Tuple[Any, ...], cs: Tuple[Any, ...], rev: bool
                      ) -> Tuple[Tuple[Tensor, ...], Tuple[Any, ...]]:
        """The checks the first nodes cannot make: the numbers of inputs and conditions, and,
        forwards, each input's type, rank and channel count against its InputNode."""
        if len(xs) != len(plan.start_nodes) or not xs:
            raise ValueError(
                f"GraphINN: Got {len(xs)} inputs, but expected {len(plan.start_nodes)}. Pass one "
                f"tensor per {'Output' if rev else 'Input'}Node, in node_list order "
                f"{[n.name for n in plan.start_nodes]}.")
        if len(cs) != len(self.condition_nodes):
            raise ValueError(
                f"GraphINN: Got {len(cs)} conditions, but expected {len(self.condition_nodes)}. "
                f"Pass one per ConditionNode, in node_list order "
                f"{[n.name for n in self.condition_nodes]}.")
        for node, value in zip(plan.start_nodes, xs):
            if not isinstance(value, Tensor) or not rev:
                check_tensors("GraphINN", f"the tensor for {node!r}", [value],
                              node.input_dims if rev else node.output_dims, floating=False)
        return xs, cs

    def _run_node(self, step: Step, inputs: Tuple[Any, ...], conditions: Tuple[Any, ...],
                  rev: bool, jac: bool) -> NodeResult:
        """Run one node; any error becomes a ``RuntimeError`` naming the node and carrying the
        original error as its cause (FrEIA's wrapping, with the cause's message added)."""
        module = self.module_list[step.module_index] if step.module_index >= 0 else None
        try:
            return step.node._run(module, inputs, conditions, rev, jac)
        except Exception as error:
            raise RuntimeError(f"{step.node} encountered an error: {type(error).__name__}: "
                               f"{error}") from error

    def _forward_by_inversion(self, plan: Plan, slots: List[Any], rev: bool, jac: bool,
                              intermediate_outputs: bool) -> Tuple[Tuple[Tensor, ...], Tensor]:
        """The outputs and log-det computed by one inversion Function (see ``memory_efficient``):
        the feed-forward nodes (condition embeddings) run first with ordinary autograd, and their
        outputs enter the Function as conditions."""
        if intermediate_outputs:
            raise ValueError("GraphINN(memory_efficient=True) keeps no intermediate values, so it "
                             "cannot return them (intermediate_outputs=True); set "
                             "memory_efficient=False or run under torch.no_grad().")
        steps = []
        for step in plan.steps:
            if isinstance(step.node, FeedForwardNode):
                conds = tuple(slots[s] for s in step.cond_slots)
                slots[step.out_slots[0]] = self._run_node(step, (), conds, rev, jac)[0][0]
            else:
                steps.append(step)
        used = {s for step in steps for s in step.cond_slots}  # conditions indexed by slot
        return run_by_inversion(
            [MemoryStep(self.module_list[s.module_index], functools.partial(self._run_node, s),
                        s.in_slots, s.cond_slots, s.out_slots) for s in steps],
            plan.n_slots, (plan.start_slots, plan.end_slots), [slots[s] for s in plan.start_slots],
            [v if s in used else None for s, v in enumerate(slots)], rev, jac)

    def get_node_by_name(self, name: str) -> Optional[AbstractNode]:
        """The first node of ``node_list`` called ``name``, else ``None``."""
        return next((node for node in self.node_list if node.name == name), None)

    def get_module_by_name(self, name: str) -> Optional[nn.Module]:
        """The module of the node called ``name`` (``None`` if absent or module-less)."""
        node = self.get_node_by_name(name)
        return None if node is None else node.module

    def log_jacobian_numerical(self, x: Tensors, c: Optional[Tensors] = None, rev: bool = False,
                               h: float = 1e-4) -> Tensor:
        """``log|det J|`` per sample from central finite differences with step ``h``."""
        xs = _as_tuple(x, "x")
        batch, sizes = xs[0].shape[0], [t[0].numel() for t in xs]
        flat = torch.cat([t.reshape(batch, -1) for t in xs], dim=1)
        columns = []
        with torch.no_grad():
            for i in range(flat.shape[1]):
                shift = torch.zeros_like(flat)
                shift[:, i] = h
                ends = []
                for point in (flat + shift, flat - shift):
                    parts = [p.reshape(t.shape) for p, t in zip(point.split(sizes, dim=1), xs)]
                    out, _ = self.forward(parts, c=c, rev=rev, jac=False)
                    ends.append(torch.cat([o.reshape(batch, -1) for o in _as_tuple(out, "out")], 1))
                columns.append((ends[0] - ends[1]) / (2 * h))
        return torch.linalg.slogdet(torch.stack(columns, dim=2))[1]

    def plot(self, path: str, filename: str) -> None:
        """Draw the graph with Graphviz to ``path/filename`` (see ``invertible.utils``)."""
        utils.plot_graph(self.node_list, path, filename)

    def __getstate__(self) -> Dict[str, Any]:
        """Pickle the nodes flat (node references become indices), so depth stays constant; the
        orders and plans derived from them are rebuilt when loading."""
        state = {k: v for k, v in super().__getstate__().items() if k not in _DERIVED}
        state["_node_states"] = flat_node_states(self._nodes)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        """Rebuild the nodes, their references and the plans."""
        nodes = nodes_from_states(state.pop("_node_states"))
        super().__setstate__(state)
        self._wire(nodes)
