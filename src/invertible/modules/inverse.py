"""`Inverse`: run any invertible module in the opposite direction."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..utils import output_dims_compatible
from .base import InvertibleModule

__all__ = ["Inverse"]


class Inverse(InvertibleModule):
    r"""The inverse :math:`f^{-1}` of a module :math:`f` as a module of its own.

    ``Inverse(m)(z)`` is ``m(z, rev=True)`` and ``Inverse(m)(x, rev=True)`` is ``m(x)``; the
    log-det sign follows automatically. Its inputs are ``m``'s outputs, its outputs ``m``'s inputs.

    Args:
        module: the module to invert; registered as the child ``module`` (state_dict ``module.*``).
    """

    def __init__(self, module: InvertibleModule) -> None:
        super().__init__(output_dims_compatible(module), module.dims_c)
        self.module = module

    def forward(self, *args: Any, rev: bool = False, **kwargs: Any) -> Any:
        """Call the wrapped module with ``rev`` flipped."""
        return self.module(*args, rev=not rev, **kwargs)

    def output_dims(
        self, input_dims: Optional[List[Tuple[int, ...]]] = None
    ) -> List[Tuple[int, ...]]:
        """The wrapped module's input shapes."""
        return list(self.module.dims_in)

    @property
    def force_tuple_output(self) -> bool:
        """Whether the wrapped module returns a tuple (containers may return a bare tensor)."""
        return bool(getattr(self.module, "force_tuple_output", True))
