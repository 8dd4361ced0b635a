"""Deprecated `ReversibleGraphNet`: FrEIA's old name of `GraphINN`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Optional, Tuple

from .graph_inn.graph_inn import GraphINN
from .graph_inn.nodes import AbstractNode

__all__ = ["ReversibleGraphNet"]


class ReversibleGraphNet(GraphINN):
    """Deprecated alias of :class:`GraphINN` (note ``verbose=True`` by default: it prints).

    Args:
        node_list: every node of the graph.
        ind_in: removed; must be ``None`` (use InputNodes).
        ind_out: removed; must be ``None`` (use OutputNodes).
        verbose: print the network after building it.
        force_tuple_output: return a tuple also for a single output.
    """

    def __init__(self, node_list: Sequence[AbstractNode], ind_in: Optional[Any] = None,
                 ind_out: Optional[Any] = None, verbose: bool = True,
                 force_tuple_output: bool = False) -> None:
        warnings.warn("ReversibleGraphNet is deprecated in favour of GraphINN. It will be removed "
                      "in the future.", DeprecationWarning)
        if ind_in is not None or ind_out is not None:
            raise ValueError(f"ReversibleGraphNet no longer accepts ind_in/ind_out (got ind_in="
                             f"{ind_in!r}, ind_out={ind_out!r}): mark inputs and outputs with "
                             f"InputNode and OutputNode.")
        super().__init__(node_list, force_tuple_output=force_tuple_output, verbose=verbose)

    def forward(self, *args: Any, **kwargs: Any) -> Tuple[Any, Any]:
        """``GraphINN.forward`` after a warning that it returns ``(output, jacobian)`` now."""
        warnings.warn("ReversibleGraphNet's forward() now returns a tuple (output, jacobian). It "
                      "will be removed in the future.", DeprecationWarning)
        return super().forward(*args, **kwargs)
