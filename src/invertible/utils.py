"""Helpers around invertible modules: calling them, output shapes, per-sample reductions, device
moves, plots. Containers, blocks and the property checks all use it, so it imports none of them."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .debug import FiniteGuard, NonFiniteError, check_finite

__all__ = [
    "FiniteGuard",
    "NonFiniteError",
    "call_module",
    "check_finite",
    "f_except",
    "force_to",
    "normalise_log_det",
    "output_dims_compatible",
    "plot_graph",
    "run_module",
    "sum_except",
    "sum_except_batch",
    "tuple_free_batch_forward",
    "tuple_free_forward",
]


def call_module(
    module: nn.Module, x: Tuple[Tensor, ...], c: Optional[Sequence[Any]], rev: bool, jac: bool
) -> Any:
    """Call ``module`` the way FrEIA's containers do.

    Data go in positionally; ``rev``, ``jac`` and ``c`` by keyword; ``c`` only when it is not
    ``None``, because many user modules have no ``c`` parameter.
    """
    if c is None:
        return module(x, rev=rev, jac=jac)
    return module(x, c=c, rev=rev, jac=jac)


def run_module(module: nn.Module, xs: Sequence[Tensor], cs: Optional[Sequence[Any]] = None,
               rev: bool = False, jac: bool = True) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
    """Call ``module`` FrEIA's way (no or empty ``cs``: no conditions); return its outputs as a
    tuple (a bare tensor too) and its log-det as a ``(batch,)`` tensor or ``None``.

    Raises:
        ValueError: the module did not return a pair ``(outputs, log_det)``, naming it.
    """
    name = type(module).__name__
    result = call_module(module, tuple(xs), list(cs) if cs else None, rev, jac)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise ValueError(f"{name} must return (outputs, log_det), got {type(result).__name__}.")
    outputs, log_det = result
    outs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    return outs, normalise_log_det(log_det, outs[0], name, jac)


def normalise_log_det(log_det: object, like: Tensor, who: str, jac: bool) -> Optional[Tensor]:
    """Turn any log-det a module may return into a ``(batch,)`` tensor like ``like``.

    A ``(B,)`` tensor is kept; Python and numpy scalars, 0-dim tensors and tensors whose first
    dimension is not ``B`` are broadcast to every sample (anomalib's CS-Flow returns a summed
    scalar and relies on this); ``None`` stays ``None`` (no contribution), and so does a ``(B, K)``
    tensor when ``jac`` is False.

    Raises:
        ValueError: for anything else, e.g. a ``(B, K)`` tensor (one value per mixture component),
            which cannot be added up per sample, naming ``who``.
    """
    if log_det is None:
        return None
    batch = like.shape[0]
    if isinstance(log_det, Tensor):
        if torch.jit.is_tracing() or log_det.dim() == 0 or log_det.shape[0] != batch:
            return like.new_zeros(batch) + log_det  # (traced sizes are tensors: broadcast)
        if log_det.dim() == 1 or not jac:  # with jac=False nobody reads one that cannot add up
            return log_det if log_det.dim() == 1 else None
        raise ValueError(
            f"{who} returned a log-det of shape {tuple(log_det.shape)}, but a container adds up "
            f"one value per sample, shape ({batch},); call it with jac=False (a Gaussian mixture "
            f"with all components gives one log-det per component)."
        )
    if isinstance(log_det, (numbers.Real, np.number)) and not isinstance(log_det, bool):
        return like.new_zeros(batch) + float(log_det)
    kind = "Jacobian" if jac else "neither None nor a Jacobian"
    raise ValueError(
        f"{who} returned {'a non-tensor as ' + kind if jac else kind}: {type(log_det).__name__} "
        f"{log_det!r}; expected a (batch,) tensor or a scalar."
    )


def output_dims_compatible(module: nn.Module) -> List[Tuple[int, ...]]:
    """The output shape list of any invertible module, containers included.

    A ``SequenceINN`` gives ``[shapes[-1]]`` and a ``GraphINN`` its ``global_out_shapes``, whatever
    ``force_tuple_output`` is (FrEIA raised for single-output graphs, which made such graphs
    impossible to wrap); any other module gives ``module.output_dims(module.dims_in)``.
    """
    m = _any(module)  # duck-typed: the containers are not imported here
    if hasattr(module, "global_out_shapes"):
        return [tuple(s) for s in m.global_out_shapes]
    if hasattr(module, "shapes") and hasattr(module, "module_list"):
        return [tuple(m.shapes[-1])]
    if getattr(module, "force_tuple_output", True) is False:
        try:
            dims = m.output_dims(None)
        except TypeError:
            raise NotImplementedError(
                f"Can't determine output dimensions for {type(module).__name__}"
            ) from None
    else:
        dims = m.output_dims(m.dims_in)
    return [tuple(int(d) for d in shape) for shape in dims]


def _any(value: object) -> Any:
    """``value`` typed as ``Any``, for attributes read by duck typing."""
    return value


def f_except(f: Callable[..., Tensor], x: Tensor, *dim: int, **kwargs: Any) -> Tensor:
    """Apply the reduction ``f`` over every dimension of ``x`` except those in ``dim``."""
    kept = {d % x.dim() for d in dim}
    reduce = [d for d in range(x.dim()) if d not in kept]
    if not reduce:
        raise ValueError(
            f"f_except: no dimension left to reduce; x has shape {tuple(x.shape)} and dims "
            f"{sorted(kept)} are kept."
        )
    return f(x, dim=reduce, **kwargs)


def sum_except(x: Tensor, *dim: int) -> Tensor:
    """Sum over every dimension of ``x`` except those in ``dim``."""
    return f_except(torch.sum, x, *dim)


def sum_except_batch(x: Tensor) -> Tensor:
    """Per-sample sum: ``(B, ...) -> (B,)``; a 1-D tensor raises ``ValueError``."""
    return sum_except(x, 0)


def force_to(obj: Any, *args: Any, **kwargs: Any) -> Any:
    """Recursively call ``.to(*args, **kwargs)`` on every tensor inside ``obj``.

    Dicts and lists are updated in place, tuples rebuilt, objects with ``__dict__`` get their
    attributes updated. Returns the (possibly new) object.

    Raises:
        ValueError: on a self-referential structure.
    """
    return _force_to(obj, args, kwargs, set())


def _force_to(obj: Any, args: tuple, kwargs: dict, active: set) -> Any:
    """:func:`force_to` on ``obj``; ``active`` holds the ids of the containers being visited."""
    if isinstance(obj, Tensor):
        return obj.to(*args, **kwargs)
    if id(obj) in active:
        raise ValueError(f"Cannot call deep_to(...) on self-referential structure: {obj!r:.80}")
    if isinstance(obj, (dict, list, tuple)) or hasattr(obj, "__dict__"):
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                for key in obj:
                    obj[key] = _force_to(obj[key], args, kwargs, active)
            elif isinstance(obj, list):
                obj[:] = [_force_to(v, args, kwargs, active) for v in obj]
            elif isinstance(obj, tuple):
                items = [_force_to(v, args, kwargs, active) for v in obj]
                obj = type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
            else:
                for key, value in vars(obj).items():
                    setattr(obj, key, _force_to(value, args, kwargs, active))
        finally:
            active.discard(id(obj))
    return obj


def tuple_free_forward(
    module: nn.Module, data: Tensor, *args: Any, **kwargs: Any
) -> Tuple[Tensor, Optional[Tensor]]:
    """Call ``module`` on one tensor and return ``(out_tensor, log_det)``, unwrapping tuples."""
    if getattr(module, "force_tuple_output", True):
        outputs, log_det = module((data,), *args, **kwargs)
        if isinstance(outputs, Tensor) or len(outputs) != 1:
            n = "a bare tensor" if isinstance(outputs, Tensor) else f"{len(outputs)} outputs"
            raise ValueError(
                f"tuple_free_forward expects {type(module).__name__} to return exactly one "
                f"output tensor in a sequence, got {n}."
            )
        return outputs[0], log_det
    return module(data, *args, **kwargs)


def tuple_free_batch_forward(
    module: nn.Module,
    data: Tensor,
    batch_size: int,
    loader_kwargs: Optional[Dict[str, Any]] = None,
    device: Optional[torch.device] = None,
    **forward_kwargs: Any,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Run :func:`tuple_free_forward` in batches of ``batch_size``; results on ``data.device``.

    CPU data go through a ``DataLoader`` (``loader_kwargs`` passed on); other data are split
    with ``data.split(batch_size)`` and ``loader_kwargs`` must be ``None``. The log-dets are
    concatenated unless some batch returned ``None``.
    """
    if data.device.type == "cpu":
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(data), batch_size, **(loader_kwargs or {})
        )
        batches: Iterable[Tensor] = (b[0] for b in loader)
    elif loader_kwargs is not None:
        raise ValueError(
            f"tuple_free_batch_forward: loader_kwargs can only be used with CPU data, but the "
            f"data are on {data.device}."
        )
    else:
        batches = data.split(batch_size)
    outs: List[Tensor] = []
    log_dets: List[Optional[Tensor]] = []
    for batch in batches:
        if device is not None:
            batch = batch.to(device)
        out, log_det = tuple_free_forward(module, batch, **forward_kwargs)
        log_det = normalise_log_det(log_det, out, type(module).__name__, log_det is not None)
        outs.append(out.to(data.device))
        log_dets.append(None if log_det is None else log_det.to(data.device))
    if any(j is None for j in log_dets):
        return torch.cat(outs), None
    return torch.cat(outs), torch.cat(log_dets)  # type: ignore[arg-type]


def _plot_label(node: Any) -> str:
    """A node's label in :func:`plot_graph`: its module's class name, else the node type."""
    module = getattr(node, "module", None)
    return module._get_name() if module is not None else type(node).__name__


def plot_graph(nodes: Iterable[Any], path: str, filename: str) -> None:
    """Draw a graph of nodes with Graphviz: ``path/filename`` (DOT) and ``path/filename.pdf``.

    Edges carry the tensor shape; condition edges are drawn too, dashed (FrEIA crashed on them).
    Needs the ``graphviz`` Python package (imported here only) and the Graphviz executables.

    Raises:
        Exception: if ``path`` does not exist or the Graphviz executables are missing.
    """
    if not os.path.exists(path):
        raise Exception(f"Path {path} does not exist.")
    import graphviz

    nodes = list(nodes)
    graph = graphviz.Digraph()
    for node in nodes:
        graph.node(str(id(node)), _plot_label(node))
    for node in nodes:
        for k, (pred, _) in enumerate(node.inputs):
            label = "(" + ",".join(str(d) for d in node.input_dims[k]) + ")"
            graph.edge(str(id(pred)), str(id(node)), label=label)
        for cond, i in node.conditions:
            label = "(" + ",".join(str(d) for d in cond.output_dims[i]) + ")"
            graph.edge(str(id(cond)), str(id(node)), label=label, style="dashed")
    try:
        graph.render(os.path.abspath(os.path.join(path, filename)))
    except graphviz.ExecutableNotFound:
        raise Exception(
            "Skipped plotting graph since graphviz backend is not installed. "
            "Try installing it via 'sudo apt-get install graphviz'"
        ) from None
