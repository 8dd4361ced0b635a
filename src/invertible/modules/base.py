"""The `InvertibleModule` contract every block, container and user module follows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, List, Optional, Tuple

from torch import Tensor, nn

__all__ = ["InvertibleModule", "list_of_int_tuples"]

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
                int(entry)
                hint = (
                    f" Hint: even a single input has to be wrapped in a list, "
                    f"e.g. [({int(entry)},)] instead of [{int(entry)}]."
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
    """

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
