"""Graph nodes: each wraps one module and records its connections (FrEIA's node API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor, nn

from ..._errors import InvertibleIndexError
from ...modules._common import is_int
from ...modules.base import InvertibleModule, list_of_int_tuples
from .._calling import call_module
from ._results import NodeResult, checked_result
from ._topology import collect_nodes

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


def _parse_item(item: object, given: object) -> Connection:
    """One entry of an input list: a node (its output 0) or a ``(node, index)`` pair."""
    if isinstance(item, AbstractNode):
        return (item, 0)
    if (
        isinstance(item, (list, tuple)) and len(item) == 2
        and isinstance(item[0], AbstractNode) and is_int(item[1])
    ):
        return (item[0], int(item[1]))
    raise ValueError(
        f"Cannot parse {item!r} in the inputs {given!r}: each entry must be a node or a "
        f"connection (node, output_index) such as node.out0."
    )


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
        raise TypeError(
            f"Received object of invalid type ({type(inputs).__name__}) as input: {inputs!r}. "
            f"Expected a node, a connection (node, index) or a list of them."
        )
    if len(inputs) == 2 and is_int(inputs[1]):
        return [_parse_item(tuple(inputs), inputs)]
    return [_parse_item(item, inputs) for item in inputs]


def _type_name(module_type: object) -> str:
    """Readable name of a module class or factory for messages and ``str(node)``."""
    if module_type is None:
        return ""
    return str(getattr(module_type, "__name__", type(module_type).__name__))


def _is_instance(module_type: object) -> bool:
    """Whether a node was given a ready-made module rather than a class or factory."""
    return isinstance(module_type, nn.Module)


def _check_no_args_for_instance(node: AbstractNode) -> None:
    """A module instance comes with no constructor arguments (``module_args`` must be None)."""
    if node.module_args is not None:
        raise ValueError(
            f"You passed an instance of {type(node.module_type).__name__} to {node!r}, but also "
            f"provided arguments to its constructor: {node.module_args!r}."
        )


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

    _consumable = True

    def __init__(
        self,
        inputs: object,
        module_type: object,
        module_args: Optional[Dict[str, Any]] = None,
        conditions: object = None,
        name: Optional[str] = None,
    ) -> None:
        self.name = name if name else hex(id(self))[-6:]
        self.inputs = parse_flexible_inputs(inputs)
        self.conditions = [] if conditions is None else parse_flexible_inputs(conditions)
        self._check_inputs_available()
        self.input_dims = [self._dims_of(conn, "input") for conn in self.inputs]
        self.condition_dims = [self._dims_of(conn, "condition") for conn in self.conditions]
        self.module_type = module_type
        self.module_args = module_args
        self.module, output_dims = self.build_module(self.condition_dims, self.input_dims)
        if _is_instance(module_type):
            self.module_type = type(module_type)
        self.output_dims = list_of_int_tuples(output_dims, f"output_dims of {self!r}")
        self.outputs: List[Optional[Tuple[AbstractNode, int]]] = (
            [None] * len(self.output_dims) if self._consumable else []
        )
        for position, (pred, index) in enumerate(self.inputs):
            pred.consume_output(index, self, position)
        for index in range(len(self.output_dims)):
            setattr(self, f"out{index}", (self, index))
        self._label = f"Module of {self!r} ({_type_name(self.module_type)})"

    def _check_inputs_available(self) -> None:
        """Every input can be consumed by this node (checked before the module is built)."""
        seen = set()
        for pred, index in self.inputs:
            pred._check_consumable(index)
            if (id(pred), index) in seen:
                raise ValueError(f"Output {index} of node {pred} is already consumed.")
            seen.add((id(pred), index))

    def _check_consumable(self, index: int) -> None:
        """Raise unless output ``index`` exists and is still free."""
        if not 0 <= index < len(self.outputs):
            raise InvertibleIndexError(
                f"Output index {index} is out of range: {self} has {len(self.outputs)} outputs."
            )
        if self.outputs[index] is not None:
            raise ValueError(
                f"Output {index} of node {self} is already consumed by {self.outputs[index]}: "
                f"every output feeds exactly one node."
            )

    def _dims_of(self, connection: Connection, kind: str) -> Shape:
        """The shape carried by ``connection``; a clear error for an out-of-range index."""
        pred, index = connection
        if not 0 <= index < len(pred.output_dims):
            raise InvertibleIndexError(
                f"{self.__class__.__name__} {self.name!r}: {kind} ({pred!r}, {index}) refers to "
                f"output {index}, but {pred} has {len(pred.output_dims)} outputs."
            )
        return pred.output_dims[index]

    def build_module(
        self, condition_shapes: List[Shape], input_shapes: List[Shape]
    ) -> Tuple[Optional[nn.Module], List[Shape]]:
        """Build the module; return it with its output shapes. Implemented by subclasses."""
        raise NotImplementedError(f"{self.__class__.__name__} does not implement build_module.")

    def consume_output(self, index: int, consumer: AbstractNode, position: int) -> None:
        """Register ``consumer`` (at its input ``position``) as the one user of output ``index``."""
        self._check_consumable(index)
        self.outputs[index] = (consumer, position)

    def rev_input(self, index: int) -> Optional[Tuple[AbstractNode, int]]:
        """The value-table key of output ``index`` in a reverse pass (``None`` if unconsumed)."""
        return self.outputs[index]

    def rev_conditions(self) -> List[Tuple[AbstractNode, int]]:
        """The value-table keys of this node's conditions in a reverse pass."""
        return [cond.rev_input(index) for cond, index in self.conditions]

    def forward(
        self, x_or_z: Sequence[Tensor], c: Optional[Sequence[Any]] = None, rev: bool = False,
        jac: bool = True,
    ) -> NodeResult:
        """Run this node's module on ``x_or_z`` and validate what it returns."""
        return self._run(self.module, x_or_z, c, rev, jac)

    def _run(
        self, module: Optional[nn.Module], x_or_z: Sequence[Tensor], c: Optional[Sequence[Any]],
        rev: bool, jac: bool,
    ) -> NodeResult:
        """Run ``module`` (this node's module, or its replica under ``DataParallel``)."""
        raise NotImplementedError(f"{self.__class__.__name__} cannot be executed.")

    def __str__(self) -> str:
        """``<Class> '<name>': <input_dims> -> <module class> -> <output_dims>`` (FrEIA's)."""
        module_hint = _type_name(self.module_type)
        return (
            f"{self.__class__.__name__} {self.name!r}: {self.input_dims} -> {module_hint} -> "
            f"{self.output_dims}"
        )

    def __repr__(self) -> str:
        """``<Class> '<name>'`` (FrEIA's)."""
        return f"{self.__class__.__name__} {self.name!r}"


class Node(AbstractNode):
    """The ordinary operation node: an invertible module applied to its inputs.

    A class or factory is built as ``module_type(input_dims, dims_c=condition_dims, **args)``
    (``dims_c`` only when the node has conditions); an ``InvertibleModule`` instance is used as
    is and must have ``dims_in == input_dims``.
    """

    def build_module(
        self, condition_shapes: List[Shape], input_shapes: List[Shape]
    ) -> Tuple[Optional[nn.Module], List[Shape]]:
        """Build (or check) the module and infer its output shapes."""
        module_type = self.module_type
        if _is_instance(module_type):
            module = module_type
            _check_no_args_for_instance(self)
            dims_in = getattr(module, "dims_in", None)
            if dims_in is None or list_of_int_tuples(dims_in, "dims_in") != input_shapes:
                raise ValueError(
                    f"{type(module).__name__} instance given to {self!r} has dims_in={dims_in}, "
                    f"but the node's inputs have shapes {input_shapes}."
                )
        else:
            if not callable(module_type):
                raise TypeError(
                    f"{self!r}: module_type must be a module class, a factory or an "
                    f"InvertibleModule instance; got {module_type!r}."
                )
            args = {} if self.module_args is None else dict(self.module_args)
            if condition_shapes:
                args["dims_c"] = list(condition_shapes)
            module = module_type(list(input_shapes), **args)
        return module, module.output_dims(list(input_shapes))

    def _run(
        self, module: Optional[nn.Module], x_or_z: Sequence[Tensor], c: Optional[Sequence[Any]],
        rev: bool, jac: bool,
    ) -> NodeResult:
        """Call the module with FrEIA's convention, then check and normalise its result."""
        result = call_module(module, tuple(x_or_z), tuple(c) if self.conditions else None,
                             rev, jac)
        expected = len(self.inputs) if rev else len(self.output_dims)
        return checked_result(self._label, result, expected, rev, jac, x_or_z)


class _ShapeNode(AbstractNode):
    """Shared base of ``InputNode`` and ``ConditionNode``: a source of one tensor of ``dims``."""

    def __init__(self, *dims: int, name: Optional[str] = None) -> None:
        if len(dims) == 0:
            raise ValueError(
                f"{self.__class__.__name__} got empty shape as input. Give the shape as "
                f"separate ints (batch excluded), e.g. {self.__class__.__name__}(3, 32, 32)."
            )
        self.dims = dims
        super().__init__([], None, {}, name=name)

    def build_module(
        self, condition_shapes: List[Shape], input_shapes: List[Shape]
    ) -> Tuple[Optional[nn.Module], List[Shape]]:
        """No module; one output of shape ``dims``."""
        if len(condition_shapes) > 0:
            raise ValueError(f"{self.__class__.__name__} cannot be conditioned.")
        return None, [self.dims]


class InputNode(_ShapeNode):
    """A graph input: ``InputNode(3, 32, 32, name='x')`` feeds one tensor of that shape."""


class ConditionNode(_ShapeNode):
    """A graph condition: usable as a condition of any number of nodes, never as an input."""

    _consumable = False

    def _check_consumable(self, index: int) -> None:
        """A condition is never an input: always ``TypeError``."""
        raise TypeError(
            f"ConditionNode's outputs cannot be consumed as inputs to another node, only as "
            f"conditions ({self!r} given as input)."
        )

    def rev_input(self, index: int) -> Tuple[AbstractNode, int]:
        """A condition keeps its key in both directions."""
        return (self, index)


class OutputNode(AbstractNode):
    """A graph output: ``OutputNode(node.out1)`` returns that connection's tensor."""

    _consumable = False

    def __init__(self, in_node: object, name: Optional[str] = None) -> None:
        super().__init__(in_node, None, {}, name=name)

    def build_module(
        self, condition_shapes: List[Shape], input_shapes: List[Shape]
    ) -> Tuple[Optional[nn.Module], List[Shape]]:
        """No module and no outputs; exactly one input."""
        if len(condition_shapes) > 0:
            raise ValueError("OutputNode cannot be conditioned.")
        if len(input_shapes) != 1:
            raise ValueError(
                f"Output node received {len(input_shapes)} inputs, but only single input is "
                f"allowed."
            )
        return None, []

    def _check_consumable(self, index: int) -> None:
        """An OutputNode has no outputs: always ``TypeError``."""
        raise TypeError(f"{self!r} is an OutputNode: its value cannot be consumed by another node.")

    def rev_input(self, index: int) -> Tuple[AbstractNode, int]:
        """An OutputNode has no outputs to address."""
        raise ValueError(f"{self!r} is an OutputNode and has no outputs.")


class FeedForwardNode(AbstractNode):
    """A non-invertible helper that computes a condition from other conditions.

    Its module is ``module_type(**module_args)`` (no dims passed) or a given ``nn.Module``
    instance; it is called as ``module(*c)`` in both directions and adds no log-det. An
    ``InvertibleModule`` is called as ``module(c)`` and its log-det is ignored (FrEIA added it).

    Args:
        conditions: the inputs of the module, usually ConditionNodes.
        output_dims: the shape (one tuple) of the condition it computes.
        module_type: an ``nn.Module`` class or instance.
        module_args: constructor keyword arguments.
        name: a readable name.
    """

    _consumable = False

    def __init__(
        self,
        conditions: object,
        output_dims: Sequence[int],
        module_type: object,
        module_args: Optional[Dict[str, Any]] = None,
        name: Optional[str] = None,
    ) -> None:
        self.module_output_dims = list_of_int_tuples([output_dims], "output_dims")[0]
        super().__init__([], module_type, module_args, conditions=conditions, name=name)
        self._invertible = isinstance(self.module, InvertibleModule)

    def build_module(
        self, condition_shapes: List[Shape], input_shapes: List[Shape]
    ) -> Tuple[Optional[nn.Module], List[Shape]]:
        """Build (or take) the module; its single output has ``module_output_dims``."""
        if _is_instance(self.module_type):
            _check_no_args_for_instance(self)
            module = self.module_type
        else:
            module = self.module_type(**({} if self.module_args is None else self.module_args))
        return module, [self.module_output_dims]

    def _check_consumable(self, index: int) -> None:
        """A computed condition is never an input: always ``TypeError``."""
        raise TypeError(
            f"{self!r} is a FeedForwardNode: its output can only be used as a condition."
        )

    def rev_input(self, index: int) -> Tuple[AbstractNode, int]:
        """A computed condition keeps its key in both directions."""
        return (self, index)

    def _run(
        self, module: Optional[nn.Module], x_or_z: Sequence[Tensor], c: Optional[Sequence[Any]],
        rev: bool, jac: bool,
    ) -> NodeResult:
        """Always the forward sense; no log-det (an InvertibleModule's is dropped, D11)."""
        conds = () if c is None else tuple(c)
        if self._invertible:
            result = module(conds)
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise ValueError(
                    f"InvertibleModule of {self!r} must return (outputs, log_det), got "
                    f"{type(result).__name__}."
                )
            return tuple(result[0]), None
        return (module(*conds),), None

