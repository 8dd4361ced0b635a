"""Graph nodes: each wraps one module and records its connections (FrEIA's node API)."""

from __future__ import annotations

import numbers
from collections import deque
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Set, Tuple

from torch import Tensor, nn

from ..._errors import InvertibleIndexError, InvertibleTypeError
from ...modules.base import InvertibleModule, list_of_int_tuples
from ...utils import call_module, normalise_log_det

__all__ = [
    "AbstractNode",
    "ConditionNode",
    "FeedForwardNode",
    "InputNode",
    "Node",
    "OutputNode",
    "collect_nodes",
    "parse_flexible_inputs",
]

Shape = Tuple[int, ...]
Connection = Tuple["AbstractNode", int]
Built = Tuple[Optional[nn.Module], List[Shape]]  # a node's module and its output shapes
Values = Optional[Sequence[Any]]
#: What a node returns: its output values and its ``(batch,)`` log-det (``None``: none).
NodeResult = Tuple[Tuple[Any, ...], Optional[Tensor]]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_flexible_inputs(inputs: object) -> List[Connection]:
    """Normalise the ways node inputs can be given to a list of ``(node, index)`` connections.

    A node ``n`` means ``[(n, 0)]``; a pair ``(n, i)`` whose second item is an int is *one*
    connection; a list or tuple of nodes and connections gives one connection per entry.

    Raises:
        TypeError: ``inputs`` is neither a node nor a list or tuple.
        ValueError: an entry of a list cannot be read as a node or a connection.
    """
    if isinstance(inputs, AbstractNode):
        return [(inputs, 0)]
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"Received object of invalid type ({type(inputs).__name__}) as input: "
                        f"{inputs!r}. Expected a node, a connection (node, index) or a list.")
    connections: List[Connection] = []
    for item in [tuple(inputs)] if len(inputs) == 2 and _is_int(inputs[1]) else inputs:
        item = (item, 0) if isinstance(item, AbstractNode) else item
        if not (isinstance(item, (list, tuple)) and len(item) == 2
                and isinstance(item[0], AbstractNode) and _is_int(item[1])):
            raise ValueError(f"Cannot parse {item!r} in the inputs {inputs!r}: each entry must be "
                             f"a node or a connection (node, output_index) such as node.out0.")
        connections.append((item[0], int(item[1])))
    return connections


class AbstractNode:
    """Base of all node types: a module together with its incoming and outgoing connections.

    The attributes are public API (FrEIA's): ``name``, ``inputs``, ``conditions`` (lists of
    connections ``(node, output_index)``), ``input_dims``, ``condition_dims``, ``output_dims``
    (shape lists), ``module``, ``module_type``, ``module_args``, ``outputs`` (one slot per output:
    ``None`` until a later node consumes it, then ``(consumer, input_position)``) and one attribute
    ``outN == (self, N)`` per output.

    Args:
        inputs: the data inputs (see :func:`parse_flexible_inputs`).
        module_type: a module class, a factory, or a module instance.
        module_args: constructor keyword arguments (``None``: none).
        conditions: the condition inputs, parsed like ``inputs`` (``None``: none).
        name: a readable name; by default the last 6 hex digits of ``id(self)``.
    """

    #: Why this node's outputs cannot feed another node's inputs (``None``: they can).
    _not_consumable: Optional[str] = None

    def __init__(self, inputs: object, module_type: Any, module_args: Optional[Dict] = None,
                 conditions: object = None, name: Optional[str] = None) -> None:
        self.name = name if name else hex(id(self))[-6:]
        self.inputs = parse_flexible_inputs(inputs)
        self.conditions = [] if conditions is None else parse_flexible_inputs(conditions)
        for k, (pred, index) in enumerate(self.inputs):  # all checked before any is consumed
            pred._check_consumable(index)
            if (pred, index) in self.inputs[:k]:
                raise ValueError(f"Output {index} of node {pred} is already consumed.")
        self.input_dims = [self._dims_of(conn, "input") for conn in self.inputs]
        self.condition_dims = [self._dims_of(conn, "condition") for conn in self.conditions]
        self.module_type = module_type
        self.module_args = module_args
        if isinstance(module_type, nn.Module) and module_args is not None:
            raise ValueError(f"You passed an instance of {type(module_type).__name__} to {self!r}, "
                             f"but also provided arguments to its constructor: {module_args!r}.")
        self.module, output_dims = self.build_module(self.condition_dims, self.input_dims)
        if isinstance(module_type, nn.Module):
            self.module_type = type(module_type)
        self.output_dims = list_of_int_tuples(output_dims, f"output_dims of {self!r}")
        self.outputs: List[Optional[Tuple[AbstractNode, int]]] = (
            [] if self._not_consumable else [None] * len(self.output_dims))
        for position, (pred, index) in enumerate(self.inputs):
            pred.consume_output(index, self, position)
        for index in range(len(self.output_dims)):
            setattr(self, f"out{index}", (self, index))
        self._label = f"Module of {self!r} ({_type_name(self.module_type)})"

    def _check_consumable(self, index: int) -> None:
        """Raise unless output ``index`` exists and is still free."""
        if self._not_consumable:
            raise TypeError(f"{self!r}: {self._not_consumable}")
        if not 0 <= index < len(self.outputs):
            raise InvertibleIndexError(f"Output index {index} is out of range: {self} has "
                                       f"{len(self.outputs)} outputs.")
        if self.outputs[index] is not None:
            raise ValueError(f"Output {index} of node {self} is already consumed by "
                             f"{self.outputs[index]}: every output feeds exactly one node.")

    def _dims_of(self, connection: Connection, kind: str) -> Shape:
        """The shape carried by ``connection``; a clear error for an out-of-range index."""
        pred, index = connection
        if not 0 <= index < len(pred.output_dims):
            raise InvertibleIndexError(f"{self!r}: {kind} ({pred!r}, {index}) refers to output "
                                       f"{index}, but {pred} has {len(pred.output_dims)} outputs.")
        return pred.output_dims[index]

    def build_module(self, condition_shapes: List[Shape], input_shapes: List[Shape]) -> Built:
        """Build the module; return it with its output shapes. Implemented by subclasses."""
        raise NotImplementedError(f"{self.__class__.__name__} does not implement build_module.")

    def consume_output(self, index: int, consumer: AbstractNode, position: int) -> None:
        """Register ``consumer`` (at its input ``position``) as the one user of output ``index``."""
        self._check_consumable(index)
        self.outputs[index] = (consumer, position)

    def rev_input(self, index: int) -> Optional[Tuple[AbstractNode, int]]:
        """The value-table key of output ``index`` in a reverse pass (``None`` if unconsumed)."""
        return self.outputs[index] if self._not_consumable is None else (self, index)

    def rev_conditions(self) -> List[Optional[Tuple[AbstractNode, int]]]:
        """The value-table keys of this node's conditions in a reverse pass."""
        return [cond.rev_input(index) for cond, index in self.conditions]

    def forward(self, x_or_z: Sequence[Tensor], c: Values = None, rev: bool = False,
                jac: bool = True) -> NodeResult:
        """Run this node's module on ``x_or_z`` and validate what it returns."""
        return self._run(self.module, x_or_z, c, rev, jac)

    def _run(self, module: Optional[nn.Module], x_or_z: Sequence[Tensor], c: Values, rev: bool,
             jac: bool) -> NodeResult:
        """Run ``module`` (this node's module, or its replica under ``DataParallel``)."""
        raise NotImplementedError(f"{self.__class__.__name__} cannot be executed.")

    def __str__(self) -> str:
        """``<Class> '<name>': <input_dims> -> <module class> -> <output_dims>`` (FrEIA's)."""
        return (f"{self.__class__.__name__} {self.name!r}: {self.input_dims} -> "
                f"{_type_name(self.module_type)} -> {self.output_dims}")

    def __repr__(self) -> str:
        """``<Class> '<name>'`` (FrEIA's)."""
        return f"{self.__class__.__name__} {self.name!r}"


def _type_name(module_type: object) -> str:
    """Readable name of a module class or factory for messages and ``str(node)``."""
    if module_type is None:
        return ""
    return str(getattr(module_type, "__name__", type(module_type).__name__))


class Node(AbstractNode):
    """The ordinary operation node: an invertible module applied to its inputs.

    A class or factory is built as ``module_type(input_dims, dims_c=condition_dims, **args)``
    (``dims_c`` only when the node has conditions); an ``InvertibleModule`` instance is used as
    is and must have ``dims_in == input_dims``.
    """

    def build_module(self, condition_shapes: List[Shape], input_shapes: List[Shape]) -> Built:
        """Build (or check) the module and infer its output shapes."""
        module_type, name = self.module_type, _type_name(self.module_type)
        if isinstance(module_type, InvertibleModule):
            module = module_type
            if list_of_int_tuples(module.dims_in, "dims_in") != input_shapes:
                raise ValueError(f"{name} instance given to {self!r} has dims_in={module.dims_in}, "
                                 f"but the node's inputs have shapes {input_shapes}.")
        elif (isinstance(module_type, nn.Module) or not callable(module_type) or (
                isinstance(module_type, type) and not issubclass(module_type, InvertibleModule))):
            raise TypeError(f"{self!r}: module_type must be an InvertibleModule class, a factory "
                            f"returning one, or an InvertibleModule instance; got {module_type!r}.")
        else:
            args = {} if self.module_args is None else dict(self.module_args)
            if condition_shapes:
                args["dims_c"] = list(condition_shapes)
            module = module_type(list(input_shapes), **args)
            if not isinstance(module, InvertibleModule):
                raise TypeError(f"{self!r}: the factory {name} returned a "
                                f"{type(module).__name__}, not an InvertibleModule.")
        return module, module.output_dims(list(input_shapes))

    def _run(self, module: Optional[nn.Module], x_or_z: Sequence[Tensor], c: Values, rev: bool,
             jac: bool) -> NodeResult:
        """Call the module with FrEIA's convention, then check and normalise its result."""
        assert module is not None
        conditions = tuple(c or ()) if self.conditions else None
        result = call_module(module, tuple(x_or_z), conditions, rev, jac)
        expected, who = len(self.inputs) if rev else len(self.output_dims), self._label
        if not isinstance(result, (tuple, list)) or isinstance(result, Tensor):
            raise ValueError(f"{who} returned {type(result).__name__} instead of a tuple "
                             f"(outputs, log_det).")
        if len(result) != 2:
            raise ValueError(f"{who} returned {len(result)} values instead of (outputs, log_det).")
        outputs, log_det = result
        if not isinstance(outputs, (tuple, list)) or isinstance(outputs, Tensor):
            raise ValueError(f"{who} returned {type(outputs).__name__} as outputs instead of a "
                             f"tuple or list of tensors.")
        if len(outputs) != expected:
            raise ValueError(f"{who} returned {len(outputs)} {'inputs' if rev else 'outputs'}, "
                             f"expected {expected}.")
        if jac and log_det is None:
            raise ValueError(f"{who} returned a non-tensor as Jacobian: None (with jac=True).")
        return tuple(outputs), normalise_log_det(log_det, outputs[0] if len(outputs) else x_or_z[0],
                                                 who, jac)


class _ShapeNode(AbstractNode):
    """Shared base of ``InputNode`` and ``ConditionNode``: a source of one tensor of ``dims``."""

    def __init__(self, *dims: int, name: Optional[str] = None) -> None:
        if len(dims) == 0:
            kind = type(self).__name__
            raise ValueError(f"{kind} got empty shape as input. Give the shape as separate ints "
                             f"(batch excluded), e.g. {kind}(3, 32, 32).")
        self.dims = dims
        super().__init__([], None, {}, name=name)

    def build_module(self, condition_shapes: List[Shape], input_shapes: List[Shape]) -> Built:
        """No module (its constructor takes no conditions); one output of shape ``dims``."""
        return None, [self.dims]


class InputNode(_ShapeNode):
    """A graph input: ``InputNode(3, 32, 32, name='x')`` feeds one tensor of that shape."""


class ConditionNode(_ShapeNode):
    """A graph condition: usable as a condition of any number of nodes, never as an input."""

    _not_consumable = ("ConditionNode's outputs cannot be consumed as inputs to another node, "
                       "only as conditions.")


class OutputNode(AbstractNode):
    """A graph output: ``OutputNode(node.out1)`` returns that connection's tensor."""

    _not_consumable = "it is an OutputNode: its value cannot be consumed by another node."

    def __init__(self, in_node: object, name: Optional[str] = None) -> None:
        super().__init__(in_node, None, {}, name=name)

    def build_module(self, condition_shapes: List[Shape], input_shapes: List[Shape]) -> Built:
        """No module and no outputs; exactly one input (its constructor takes no conditions)."""
        if len(input_shapes) != 1:
            raise ValueError(f"Output node received {len(input_shapes)} inputs, but only single "
                             f"input is allowed.")
        return None, []

    def rev_input(self, index: int) -> Tuple[AbstractNode, int]:
        """An OutputNode has no outputs to address."""
        raise ValueError(f"{self!r} is an OutputNode and has no outputs.")


class FeedForwardNode(AbstractNode):
    """A non-invertible helper that computes a condition from other conditions.

    Its module is ``module_type(**module_args)`` (no dims passed) or a given ``nn.Module``
    instance; it is called as ``module(*c)`` in both directions and adds no log-det. An
    ``InvertibleModule`` is called as ``module(c)`` and its log-det is ignored (FrEIA added it,
    although a condition's transformation is not part of the flow's change of variables).

    Args:
        conditions: the inputs of the module, usually ConditionNodes.
        output_dims: the shape (one tuple) of the condition it computes.
        module_type: an ``nn.Module`` class or instance.
        module_args: constructor keyword arguments.
        name: a readable name.
    """

    _not_consumable = "it is a FeedForwardNode: its output can only be used as a condition."

    def __init__(self, conditions: object, output_dims: Sequence[int], module_type: Any,
                 module_args: Optional[Dict[str, Any]] = None, name: Optional[str] = None) -> None:
        self.module_output_dims = list_of_int_tuples([output_dims], "output_dims")[0]
        super().__init__([], module_type, module_args, conditions=conditions, name=name)
        self._invertible = isinstance(self.module, InvertibleModule)

    def build_module(self, condition_shapes: List[Shape], input_shapes: List[Shape]) -> Built:
        """Build (or take) the module; its single output has ``module_output_dims``."""
        module = self.module_type
        if not isinstance(module, nn.Module):
            module = module(**({} if self.module_args is None else self.module_args))
        return module, [self.module_output_dims]

    def _run(self, module: Optional[nn.Module], x_or_z: Sequence[Tensor], c: Values, rev: bool,
             jac: bool) -> NodeResult:
        """Always the forward sense; no log-det."""
        conds = () if c is None else tuple(c)
        assert module is not None
        if not self._invertible:
            return (module(*conds),), None
        result = module(conds)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise ValueError(f"InvertibleModule of {self!r} must return (outputs, log_det), got "
                             f"{type(result).__name__}.")
        return tuple(result[0]), None


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
