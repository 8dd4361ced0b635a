"""Opt-in NaN guard: name the first block whose output or log-det stops being finite."""

from __future__ import annotations

from itertools import chain
from types import TracebackType
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple, Type

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FiniteGuard", "NonFiniteError", "NonFiniteEvent", "check_finite"]


class NonFiniteError(FloatingPointError):
    """A block of a guarded network produced NaN or infinite outputs or log-det."""


class NonFiniteEvent(NamedTuple):
    """Where a non-finite value appeared.

    Attributes:
        block: the block's description, e.g. ``"module_list.3 (AllInOneBlock)"`` or, in a
            ``GraphINN``, ``"node 'coupling_2' (GLOWCouplingBlock)"``.
        direction: ``"forward"`` or ``"reverse"``.
        what: ``"output 0"``, ``"log-det"``, ``"input 0"``, ``"condition 1"``, ...
        n_bad: how many values are NaN or infinite.
        numel: how many values the tensor has.
        first_index: the index of the first bad value in that tensor.
    """

    block: str
    direction: str
    what: str
    n_bad: int
    numel: int
    first_index: Tuple[int, ...]

    def message(self) -> str:
        """A readable one-line description."""
        return (
            f"non-finite values in the {self.direction} pass at {self.block}: {self.what} has "
            f"{self.n_bad} NaN/inf value(s) of {self.numel}, the first at index "
            f"{self.first_index}."
        )


def _tensors(value: Any, prefix: str) -> Iterator[Tuple[str, Tensor]]:
    """``(label, tensor)`` for a tensor or each tensor of a list/tuple (others are skipped)."""
    if isinstance(value, Tensor):
        yield prefix, value
    elif isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            if isinstance(item, Tensor):
                yield f"{prefix} {k}", item


def _first_bad(
    block: str, direction: str, labelled: Iterator[Tuple[str, Tensor]]
) -> Optional[NonFiniteEvent]:
    """The event of the first floating tensor in ``labelled`` with a NaN or inf, else None."""
    for what, t in labelled:
        if not (t.is_floating_point() or t.is_complex()):
            continue
        bad = ~torch.isfinite(t.detach())
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0].tolist())
            return NonFiniteEvent(block, direction, what, int(bad.sum()), t.numel(), index)
    return None


def _direction(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
    """``"reverse"`` when the call had ``rev=True`` (always passed by keyword by containers)."""
    return "reverse" if kwargs.get("rev", False) else "forward"


def _node_names(model: nn.Module) -> Dict[int, str]:
    """``id(module) -> "node '<name>'"`` for the nodes of a ``GraphINN``, else empty."""
    names: Dict[int, str] = {}
    for node in getattr(model, "node_list", None) or []:
        module = getattr(node, "module", None)
        if module is not None:
            names[id(module)] = f"node {getattr(node, 'name', '?')!r}"
    return names


def _guarded_blocks(model: nn.Module, prefix: str = "") -> Iterator[Tuple[str, nn.Module]]:
    """``(description, block)`` of every block of a container, nested containers included.

    A ``SequenceINN``/``GraphINN`` (anything with a ``module_list``) is entered; its children
    are described by position, and by node name in a graph. Inner blocks come first, so the
    innermost block that produced a bad value is the one named.
    """
    children = getattr(model, "module_list", None)
    if not isinstance(children, nn.ModuleList):
        return
    names = _node_names(model)
    for k, child in enumerate(children):
        path = f"{prefix}module_list.{k}"
        yield from _guarded_blocks(child, path + ".")
        node = names.get(id(child))
        kind = type(child).__name__
        yield (f"{node} ({kind}, {path})" if node else f"{path} ({kind})"), child


class FiniteGuard:
    """Forward hooks that check every block's outputs and log-det for NaN and inf.

    Created by :func:`check_finite`; use it as a context manager, or keep it and call
    :meth:`remove`. The first bad value raises :class:`NonFiniteError` naming the block, the
    direction, and which tensor (or, with ``raise_error=False``, is appended to
    :attr:`events`). A ``GraphINN`` wraps errors of its nodes in a ``RuntimeError``; inside the
    ``with`` block the guard re-raises the original :class:`NonFiniteError` instead.

    Attributes:
        events: the non-finite events seen so far (only the first of each call raises).
    """

    def __init__(self, model: nn.Module, raise_error: bool = True) -> None:
        self.model = model
        self.raise_error = raise_error
        self.events: List[NonFiniteEvent] = []
        self._handles: List[RemovableHandle] = []
        blocks = list(_guarded_blocks(model)) or [(type(model).__name__, model)]
        for label, block in blocks:
            self._handles.append(
                block.register_forward_hook(_OutputHook(self, label), with_kwargs=True)
            )
        root = f"the input of {type(model).__name__}"
        self._handles.append(
            model.register_forward_pre_hook(_InputHook(self, root), with_kwargs=True)
        )

    def report(self, event: Optional[NonFiniteEvent]) -> None:
        """Record ``event``; raise it unless ``raise_error`` is false."""
        if event is None:
            return
        self.events.append(event)
        if self.raise_error:
            raise NonFiniteError(event.message())

    def remove(self) -> None:
        """Remove every hook; the network runs unguarded again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> FiniteGuard:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.remove()
        cause = exc
        while cause is not None and not isinstance(cause, NonFiniteError):
            cause = cause.__cause__
        if cause is not None and cause is not exc:
            raise cause.with_traceback(cause.__traceback__) from None


class _OutputHook:
    """A picklable forward hook: checks ``(outputs, log_det)`` of one block."""

    def __init__(self, guard: FiniteGuard, label: str) -> None:
        self.guard, self.label = guard, label

    def __call__(
        self, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], result: Any
    ) -> None:
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            labelled = _tensors(result, "output")
        else:
            outputs, log_det = result
            labelled = chain(_tensors(outputs, "output"), _tensors(log_det, "log-det"))
        self.guard.report(_first_bad(self.label, _direction(args, kwargs), labelled))


class _InputHook:
    """A forward pre-hook on the whole network: its inputs and conditions must be finite."""

    def __init__(self, guard: FiniteGuard, label: str) -> None:
        self.guard, self.label = guard, label

    def __call__(self, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        x = args[0] if args else kwargs.get("x_or_z")
        c = args[1] if len(args) > 1 else kwargs.get("c")
        labelled = chain(_tensors(x, "input"), _tensors(c, "condition"))
        self.guard.report(_first_bad(self.label, _direction(args, kwargs), labelled))


def check_finite(model: nn.Module, raise_error: bool = True) -> FiniteGuard:
    """Guard ``model`` against NaN/inf: the first block whose output or log-det is not finite
    raises :class:`NonFiniteError` naming it (opt-in; each check synchronises with the device).

    Works for ``SequenceINN``, ``GraphINN`` (nested containers included; graph blocks are named
    by node) and single blocks, in both directions, through forward hooks: the containers are
    not modified. The network's own inputs and conditions are checked first, so bad data is
    not blamed on block 0.

    Example::

        with check_finite(inn):
            z, log_det = inn(x)          # NonFiniteError: ... at module_list.3 (AllInOneBlock)

        guard = check_finite(inn, raise_error=False)   # record only, e.g. during training
        ...
        print(guard.events); guard.remove()

    Args:
        model: the network or block to guard.
        raise_error: raise at the first bad value (default); ``False`` only records events.

    Returns:
        The :class:`FiniteGuard` (a context manager that removes its hooks on exit).
    """
    return FiniteGuard(model, raise_error)
