"""The `InvertibleModule` contract every block, container and user module follows, and the one
place where the built-in blocks validate their calls."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any, List, Optional, Tuple, Type

import torch
from torch import Tensor, nn

__all__ = [
    "InvertibleModule",
    "autocast_on",
    "check_tensors",
    "is_compiling",
    "list_of_int_tuples",
    "module_reference",
    "parameters_text",
]

Shape = Tuple[int, ...]
ShapeList = List[Shape]


def list_of_int_tuples(dims: Iterable[Iterable[Any]], name: str = "dims") -> ShapeList:
    """Normalise a shape list such as ``[(3, 32, 32)]`` or ``[torch.Size([5])]`` to int tuples.

    Raises:
        TypeError: if ``dims`` or one of its entries is not iterable (with a hint when an entry is
            a bare int: even a single input must be wrapped in a list), or if an element cannot be
            cast to ``int``. ``int('a')`` raises ``ValueError``, which passes through unchanged.
    """
    try:
        entries = list(dims)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of shapes (one tuple of ints per tensor, batch dimension "
            f"excluded), e.g. [(3, 32, 32)]; got {dims!r}, which is not iterable."
        ) from None
    result: ShapeList = []
    for entry in entries:
        try:
            items = list(entry)
        except TypeError:
            hint = ""
            try:
                int(entry)  # type: ignore[call-overload]
                hint = (
                    f" Hint: even a single input has to be wrapped in a list, "
                    f"e.g. [({int(entry)},)] instead of [{int(entry)}]."  # type: ignore[call-overload]
                )
            except (TypeError, ValueError):
                pass
            raise TypeError(
                f"Each entry of {name} must be a shape (an iterable of ints); got {entry!r} "
                f"in {dims!r}.{hint}"
            ) from None
        try:
            result.append(tuple(int(d) for d in items))
        except TypeError:
            raise TypeError(
                f"Shape {entry!r} in {name} {dims!r} holds an element that cannot be cast to int."
            ) from None
    return result


# --- call-time validation: Python ints only, so tracing and compiling see no data branch -------


def module_reference(module: nn.Module) -> Optional[Tensor]:
    """The tensor whose device (and dtype, if floating) a block's inputs must match.

    The first floating-point parameter of ``module`` (depth first), else its first floating
    buffer, else its first tensor of any dtype (e.g. an int64 permutation), else ``None`` for
    parameter-free blocks, which accept any device and dtype. It runs on every call, so it walks
    the module's dictionaries directly instead of building ``parameters()`` lists.
    """
    for floating in (True, False):
        for table in ("_parameters", "_buffers"):
            found = _first_tensor(module, table, floating)
            if found is not None:
                return found
    return None


def _first_tensor(module: nn.Module, table: str, floating: bool) -> Optional[Tensor]:
    """The first tensor of ``module``'s ``table`` (``"_parameters"`` or ``"_buffers"``), its own
    then its children's depth first, that is floating point if ``floating``."""
    for t in getattr(module, table).values():
        if t is not None and (t.is_floating_point() or not floating):
            return t
    for child in module._modules.values():
        found = None if child is None else _first_tensor(child, table, floating)
        if found is not None:
            return found
    return None


def autocast_on(device_type: str) -> bool:
    """Whether ``torch.autocast`` is active for ``device_type`` (False for types it does not
    know, e.g. "meta")."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4 takes no device type
        return bool(torch.is_autocast_cpu_enabled() if device_type == "cpu"
                    else torch.is_autocast_enabled())
    except RuntimeError:  # no autocast dispatch key for this device type
        return False


def is_compiling() -> bool:
    """Whether dynamo (``torch.compile``, ``torch.export``) is tracing this call.

    Asked at call time: decorating with ``torch.compiler.disable`` would import the whole
    compiler stack (about a second) when the package is imported.
    """
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(check()) if check is not None else False


def _shape_text(shape: Sequence[Any]) -> str:
    """``(B, 3, 8, 8)``: a tensor shape with the batch written as B (``*`` for free extents)."""
    return "(" + ", ".join(["B", *(str(d) for d in shape)]) + ")"


def _expected_text(shape: Shape, fixed: bool) -> str:
    """The shape a tensor must have: exact, or its channel count and rank with free extents."""
    if fixed or len(shape) < 2:
        return _shape_text(shape)
    return _shape_text([shape[0], *["*"] * (len(shape) - 1)])


def check_tensors(
    owner: str,
    what: str,
    tensors: Any,
    shapes: Sequence[Shape],
    fixed: bool = False,
    like: Optional[Tensor] = None,
    floating: bool = True,
    error: Type[Exception] = ValueError,
    reference: str = "the block's parameters are",
) -> List[Tensor]:
    """Validate a call's data tensors against declared shapes; return them as a list.

    Each tensor must be a ``torch.Tensor`` of shape ``(B, *shape)`` with one batch size ``B``
    for all of them. A declared shape ``(C, *S)`` of rank 2 or more fixes the channel count
    ``C`` and the rank; the extents ``S`` are free (a fully convolutional flow runs at any image
    size) unless ``fixed``, but tensors of equal rank must share them within one call. Vectors
    ``(d,)`` are always checked exactly.

    Args:
        owner: the public class or graph node, for messages.
        what: what the tensors are, e.g. ``"input"`` or ``"reverse input"``.
        tensors: what the caller passed: a list or tuple of tensors.
        shapes: the declared shape (batch excluded) of each tensor.
        fixed: the owner's parameters fix every extent, so shapes are compared exactly.
        like: a tensor whose device, and dtype if floating, the tensors must share (dtypes are
            not compared under ``torch.autocast``); ``None`` accepts any.
        floating: require floating-point tensors.
        error: the exception class for a wrong rank or size (``ValueError`` or a subclass).
        reference: how messages name ``like``, with its verb.

    Raises:
        TypeError: not a list or tuple of tensors, a non-floating tensor, or a dtype other than
            ``like``'s.
        ValueError: a bare tensor, the wrong number of tensors, a wrong rank, channel count,
            extent or batch size, another device than ``like``'s.
    """
    if isinstance(tensors, Tensor):
        raise ValueError(
            f"{owner} takes a list or tuple of {len(shapes)} {what} tensor(s), e.g. [x]; got a "
            f"bare tensor."
        )
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(
            f"{owner} takes a list or tuple of {len(shapes)} {what} tensor(s), e.g. [x]; got "
            f"{type(tensors).__name__}."
        )
    if len(tensors) != len(shapes):
        expected = ", ".join(_expected_text(s, fixed) for s in shapes) or "none"
        raise ValueError(
            f"{owner} takes {len(shapes)} {what} tensor(s) ({expected}), got {len(tensors)}."
        )
    tracing = torch.jit.is_tracing()  # sizes are then traced values, not ints
    batch: Optional[int] = None
    extents: dict = {}  # rank -> extents after the channel axis, shared within the call
    for k, (t, shape) in enumerate(zip(tensors, shapes)):
        name = what if len(shapes) == 1 else f"{what} {k}"
        if not isinstance(t, Tensor):
            raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}.")
        if floating and not t.is_floating_point():
            raise TypeError(f"{owner}: {name} must be a floating-point tensor, got {t.dtype}.")
        if not tracing:
            got = tuple(t.shape)
            exact = fixed or len(shape) < 2
            if len(got) != len(shape) + 1 or (got[1:] if exact else got[1:2]) != (
                shape if exact else shape[:1]
            ):
                raise error(
                    f"{owner}: {name} must have shape {_expected_text(shape, fixed)}, got shape "
                    f"{got}."
                )
            batch = got[0] if batch is None else batch
            if got[0] != batch:
                raise ValueError(
                    f"{owner}: {name} has batch size {got[0]}, but the first tensor of the call "
                    f"has {batch}."
                )
            if not exact:
                seen = extents.setdefault(len(shape), got[2:])
                if got[2:] != seen:
                    raise error(
                        f"{owner}: {name} has extents {got[2:]} after the channel axis, but the "
                        f"other {what} tensors of this call have {seen}."
                    )
        _check_like(owner, name, t, like, reference)
    return list(tensors)


def _check_like(owner: str, name: str, t: Tensor, like: Optional[Tensor], reference: str) -> None:
    """``t`` must be on ``like``'s device and, when ``like`` is floating, of its dtype."""
    if like is None:
        return
    if t.device != like.device:
        raise ValueError(
            f"{owner}: {name} is on device {t.device}, but {reference} on {like.device}; move the "
            f"data or the block with .to(...)."
        )
    if like.is_floating_point() and t.dtype != like.dtype and not autocast_on(t.device.type):
        raise TypeError(
            f"{owner}: {name} has dtype {t.dtype}, but {reference} {like.dtype}; convert the data "
            f"or the block (e.g. .to({like.dtype}))."
        )


def _condition_list(owner: str, c: Any, dims_c: ShapeList) -> List[Tensor]:
    """The conditions as a list (``None``/``()`` mean none, a bare tensor means ``[c]``)."""
    if c is None:
        return []
    if not isinstance(c, (list, tuple, Tensor)):
        raise TypeError(
            f"{owner} takes its conditions as a list or tuple of tensors, got "
            f"{type(c).__name__}."
        )
    c = [c] if isinstance(c, Tensor) else c
    if c and not dims_c:
        raise ValueError(
            f"{owner} takes no conditions (dims_c=[]), but {len(c)} condition tensor(s) were "
            f"given."
        )
    return list(c)


class InvertibleModule(nn.Module):
    r"""Base class of every invertible block and container (FrEIA's contract).

    A module represents a bijection :math:`f`. Called with ``rev=False`` it maps inputs ``x`` to
    outputs ``z = f(x)`` and returns :math:`\log|\det \partial f/\partial x|` per sample; called
    with ``rev=True`` it maps ``z`` back to ``x = f^{-1}(z)`` and returns
    :math:`\log|\det \partial f^{-1}/\partial z| = -\log|\det \partial f/\partial x|`.

    Example::

        z, log_det = module([x], c=[cond])
        x_rev, log_det_rev = module(z, c=[cond], rev=True)
        # x_rev ~ x and log_det_rev ~ -log_det

    Args:
        dims_in: one shape per input tensor, batch dimension excluded, e.g. ``[(3, 32, 32)]``.
        dims_c: one shape per condition tensor; ``None`` means no conditions.

    Capabilities, class attributes a block may override (containers read them, never the
    block's class):

    * ``exact_inverse``: ``rev=True`` is the exact inverse and runs deterministically, so a
      container may recompute a block's input from its output (memory-efficient training).
    * ``fixed_size``: the block's parameters fix the extents after the channel axis (a flatten,
      a reshape, a full-size scale map), so inputs must have exactly the declared shape. When
      ``False``, only their rank and channel count are checked and the block runs at any
      image size.
    * ``shape_error``: the exception class of a wrong input shape (FrEIA raised
      ``RuntimeError`` in some blocks; a ``ValueError`` subclass keeps both catchable).
    """

    exact_inverse: bool = True
    fixed_size: bool = False
    shape_error: Type[Exception] = ValueError

    def __new__(cls, *args: Any, **kwargs: Any) -> InvertibleModule:
        """Check the constructor arguments against ``__init__`` and name the public class.

        Python's own error names the class that defines ``__init__``, often a private base.
        """
        if args or kwargs:
            try:
                inspect.signature(cls.__init__).bind(None, *args, **kwargs)
            except TypeError as problem:
                raise TypeError(f"{cls.__name__}: {problem}; it takes "
                                f"{cls.__name__}({parameters_text(cls.__init__)}).") from None
        return super().__new__(cls)

    def __init__(
        self,
        dims_in: Iterable[Iterable[int]],
        dims_c: Optional[Iterable[Iterable[int]]] = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.dims_in = list_of_int_tuples(dims_in, f"{name} dims_in")
        self.dims_c = [] if dims_c is None else list_of_int_tuples(dims_c, f"{name} dims_c")

    def forward(
        self,
        x_or_z: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = None,
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Sequence[Tensor], Optional[Tensor]]:
        """Run the map forwards (``rev=False``) or its inverse (``rev=True``).

        Args:
            x_or_z: one tensor per input (forward) or per output (reverse), batch first.
            c: one tensor per condition, or ``None``/empty.
            rev: run the inverse map.
            jac: whether the caller needs the log-determinant.

        Returns:
            ``(outputs, log_det)``: a sequence of tensors and the per-sample log-det of the
            direction that was run.
        """
        raise NotImplementedError(f"{self.__class__.__name__} does not provide forward(...) method")

    def log_jacobian(self, *args: Any, **kwargs: Any) -> None:
        """Deprecated: ``forward(..., jac=True)`` returns ``(outputs, log_det)``."""
        raise DeprecationWarning(
            "module.log_jacobian(...) is deprecated. module.forward(..., jac=True) returns a "
            "tuple (out, jacobian) now."
        )

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """Infer the output shapes (batch excluded) from ``input_dims`` at build time."""
        raise NotImplementedError(f"{self.__class__.__name__} does not provide output_dims(...)")

    def _checked(
        self, x: Any, c: Any, rev: bool, floating: Optional[bool] = None
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """The built-in blocks' one validation of a call: ``(inputs, conditions)`` as lists.

        Inputs are checked against ``dims_in`` (reverse: ``output_dims(dims_in)``, computed once
        and cached) and conditions against ``dims_c`` with :func:`check_tensors`: channel count
        and rank, exact extents only for ``fixed_size`` blocks. A condition of the input's rank
        must share the input's extents at call time; one of another rank (e.g. a vector given to
        an image block) is checked exactly. Everything must sit on the device, and outside
        autocast have the dtype, of the block's first floating parameter
        (:func:`module_reference`); ``floating`` (default: whether the block has a floating
        tensor) requires floating-point inputs.
        """
        owner = type(self).__name__
        if rev:
            shapes = self.__dict__.get("_dims_out")
            if shapes is None:
                shapes = self.__dict__["_dims_out"] = list_of_int_tuples(
                    self.output_dims(self.dims_in), f"{owner} output_dims")
        else:
            shapes = self.dims_in
        like = module_reference(self)
        if floating is None:
            floating = like is not None and like.is_floating_point()
        xs = check_tensors(owner, "reverse input" if rev else "input", x, shapes, self.fixed_size,
                           like, floating, self.shape_error)
        cs = _condition_list(owner, c, self.dims_c)
        if not self.dims_c:
            return xs, cs
        if len(cs) != len(self.dims_c):
            raise ValueError(
                f"{owner} takes {len(self.dims_c)} condition(s) of shapes {self.dims_c}, got "
                f"{len(cs)}."
            )
        if like is not None and like.is_floating_point():
            check_tensors(owner, "condition", cs, self.dims_c, self.fixed_size, like, True)
        else:  # without floating parameters, conditions follow the input's dtype and device
            check_tensors(owner, "condition", cs, self.dims_c, self.fixed_size, xs[0], True,
                          reference="the input is")
        if not torch.jit.is_tracing():
            _check_conditions_match(owner, xs[0], cs, self.dims_c, self.fixed_size)
        return xs, cs


def _check_conditions_match(
    owner: str, x: Tensor, cs: List[Tensor], dims_c: ShapeList, fixed: bool
) -> None:
    """Conditions share the input's batch size and, at the input's rank, its extents; one of
    another rank has exactly its declared shape."""
    for k, (t, shape) in enumerate(zip(cs, dims_c)):
        if t.shape[0] != x.shape[0]:
            raise ValueError(
                f"{owner}: condition {k} has batch size {t.shape[0]}, but the input has "
                f"{x.shape[0]} (condition shape {tuple(t.shape)}, input shape {tuple(x.shape)})."
            )
        if t.dim() != x.dim() and tuple(t.shape[1:]) != shape:
            raise ValueError(
                f"{owner}: condition {k} must have shape {_shape_text(shape)}, got shape "
                f"{tuple(t.shape)}."
            )
        if not fixed and t.dim() == x.dim() > 2 and t.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"{owner}: condition {k} of shape {tuple(t.shape)} must have the input's extents "
                f"{tuple(x.shape[2:])} after the channel axis (input shape {tuple(x.shape)})."
            )


def parameters_text(function: Any, skip: Sequence[str] = ("self",)) -> str:
    """``function``'s parameters without those in ``skip`` and without annotations, for
    messages such as ``dims_in, dims_c=None, clamp=2.0``."""
    parameters = inspect.signature(function).parameters.values()
    return ", ".join(str(p.replace(annotation=inspect.Parameter.empty))
                     for p in parameters if p.name not in skip)
