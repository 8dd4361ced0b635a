"""ONNX export of invertible networks in either direction, with the log-det as an output.

:func:`to_onnx` writes one direction of a ``SequenceINN``, ``GraphINN`` or any
``InvertibleModule`` to an ONNX file of plain, named tensors::

    from invertible.export import to_onnx

    to_onnx(inn, "flow.onnx")                           # x -> (z, log_det)
    to_onnx(inn, "flow_inv.onnx", direction="inverse")  # z -> (x, log_det)

Names: forward graphs read ``x`` (several inputs: ``x0``, ``x1``, ...) and the conditions ``c0``,
``c1``, ... and return ``z`` (``z0``, ...) and ``log_det`` of shape ``(batch,)``; inverse graphs
read ``z``/``z0``... and return ``x``/``x0``... and ``log_det`` (that of the inverse map, minus
the forward one). Axis 0 of every input and output is the dynamic axis ``batch``.

Exporter: ``torch.export``-based (``dynamo=True``, torch's default since 2.9). It traces
symbolically, so a block that bakes the batch size into the graph fails at export instead of
giving a silently wrong graph, and :data:`ONNX_DECOMPOSITIONS` rewrites the ATen ops that have
no ONNX counterpart (``searchsorted`` of the splines, the triangular solves of
``GaussianMixtureModel``'s and ``Learned1x1Conv``'s inverses, ``slogdet`` and ``inv`` of
``Learned1x1Conv(lu=False)``: Gaussian elimination unrolled over the static matrix size) before
conversion; eager PyTorch keeps its own kernels. ``exporter="torchscript"`` selects the legacy
exporter (deprecated in torch 2.9; ~10x faster, needs no ``onnxscript``, but cannot export the
spline blocks, ``GaussianMixtureModel``'s inverse or ``Learned1x1Conv``). ``IResNetLayer``'s
log-det is a stochastic autograd estimate and exports with neither: export it with ``jac=False``.

The plain ``torch.onnx.export`` path: :class:`ExportAdapter` takes the inputs, then the
conditions as positional tensors and returns the outputs, then the log-det::

    import torch
    from invertible.export import ExportAdapter

    adapter = ExportAdapter(inn, direction="inverse").eval()
    z, c0 = torch.randn(2, 8), torch.randn(2, 3)  # a batch of at least 2, see below
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        adapter, (z, c0), "flow_inv.onnx", dynamo=True,
        input_names=["z", "c0"], output_names=["x", "log_det"],
        dynamic_shapes=(({0: batch}, {0: batch}),),  # one tuple: forward(*tensors)
    )

Trace with a batch of at least 2: ``torch.export`` specialises axes of size 1. Needs the
``export`` extra (``onnx``, ``onnxscript``; ``onnxruntime`` to run the graphs).

:func:`to_openvino` writes the same graph as an OpenVINO IR (``.xml`` + ``.bin``) that OpenVINO's
CPU runtime runs in float32 with its default settings (it would run in bf16 on CPUs with bf16
units otherwise); it needs the ``openvino`` extra as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ._export_inputs import (
    MIN_EXAMPLE_BATCH,
    Tensors,
    batched,
    check_initialised,
    data_shapes,
    example_tensors,
)
from ._onnx_ops import ONNX_DECOMPOSITIONS
from ._openvino import ir_from_onnx
from .distributions._flow_calls import run_inn

__all__ = ["ExportAdapter", "OnnxExport", "OpenVinoExport", "io_names", "to_onnx", "to_openvino"]

#: ``direction`` -> the ``rev`` flag passed to the network.
DIRECTIONS: Dict[str, bool] = {"forward": False, "inverse": True}
#: Exporter name -> the ``dynamo`` flag of ``torch.onnx.export``.
EXPORTERS: Dict[str, bool] = {"dynamo": True, "torchscript": False}


class OnnxExport(NamedTuple):
    """What :func:`to_onnx` wrote: the file and the graph's input and output names."""

    path: Path
    input_names: List[str]
    output_names: List[str]


class OpenVinoExport(NamedTuple):
    """What :func:`to_openvino` wrote: the IR's two files and its input and output names."""

    path: Path
    bin_path: Path
    input_names: List[str]
    output_names: List[str]


def _rev(direction: str) -> bool:
    """``rev`` for ``direction``; ``ValueError`` naming the allowed values otherwise."""
    if not isinstance(direction, str) or direction not in DIRECTIONS:
        raise ValueError(f'direction must be "forward" or "inverse", got {direction!r}.')
    return DIRECTIONS[direction]


def _numbered(stem: str, count: int) -> List[str]:
    """``[stem]`` for one tensor, else ``[stem0, stem1, ...]``."""
    return [stem] if count == 1 else [f"{stem}{k}" for k in range(count)]


def io_names(
    n_inputs: int, n_outputs: int, n_conditions: int = 0, direction: str = "forward",
    jac: bool = True,
) -> Tuple[List[str], List[str]]:
    """The ONNX ``(input_names, output_names)`` :func:`to_onnx` gives a graph.

    Forward: ``x``/``x0..``, then ``c0..`` -> ``z``/``z0..``, then ``log_det`` (if ``jac``);
    the inverse swaps ``x`` and ``z``. One data tensor is not numbered; conditions always are.
    """
    src, dst = ("z", "x") if _rev(direction) else ("x", "z")
    inputs = _numbered(src, n_inputs) + [f"c{k}" for k in range(n_conditions)]
    return inputs, _numbered(dst, n_outputs) + (["log_det"] if jac else [])


class ExportAdapter(nn.Module):
    """One direction of an INN as a module of flat tensors: ``(*x, *c) -> (*z, log_det)``.

    The first ``n_inputs`` positional tensors are the data, the rest the conditions; the
    network is called with FrEIA's tuple convention (``c`` only when there are conditions). The
    log-det is returned as a ``(batch,)`` tensor, zeros if the network returned ``None``. The
    network is the child ``inn`` (state_dict keys ``inn.*``).

    Args:
        inn: any invertible module or container.
        direction: ``"forward"`` (``x -> z``) or ``"inverse"`` (``z -> x``).
        n_inputs: number of data tensors (default: read off the network, else 1).
        jac: also return the log-det; ``False`` returns the outputs only (``jac=False``).
    """

    def __init__(
        self, inn: nn.Module, direction: str = "forward", n_inputs: Optional[int] = None,
        jac: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(inn, nn.Module):
            raise TypeError(f"ExportAdapter needs a torch.nn.Module, got {type(inn).__name__}.")
        self.inn = inn
        self.direction = direction
        self.rev = _rev(direction)
        self.jac = bool(jac)
        if n_inputs is None:
            n_inputs = len(data_shapes(inn, self.rev) or [()])
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
            raise ValueError(f"ExportAdapter: n_inputs must be an int >= 1, got {n_inputs!r}.")
        self.n_inputs = n_inputs

    def forward(self, *tensors: Tensor) -> Tuple[Tensor, ...]:
        """Run the network on ``(*inputs, *conditions)``; return ``(*outputs, log_det)``."""
        cs = list(tensors[self.n_inputs :])
        outs, log_det = run_inn(self.inn, tensors[: self.n_inputs], cs or None, self.rev, self.jac)
        if not self.jac:
            return outs
        return (*outs, outs[0].new_zeros(outs[0].shape[0]) if log_det is None else log_det)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for the block and restore every submodule's flag after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in flags:
            submodule.training = training


#: Messages of warnings the exporters raise about themselves, not about the user's network.
_EXPORTER_NOISE = (
    r".*legacy TorchScript-based ONNX export.*",
    r".*feature will be removed.*",
    r".*LeafSpec.*",
    r".*The axis name: .* will not be used",
)


@contextlib.contextmanager
def _quiet_exporter(verbose: bool) -> Iterator[None]:
    """Silence the exporter's progress logging (torch.onnx and the onnxscript optimiser it
    runs, which log each pass at INFO: a program that logs at INFO would print hundreds of
    lines per export) and its warnings about itself unless verbose."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        if not verbose:
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            for message in _EXPORTER_NOISE:
                warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _exported_program(
    adapter: ExportAdapter, args: Tuple[Tensor, ...], shapes: Optional[tuple]
) -> torch.export.ExportedProgram:
    """``torch.export`` the adapter and rewrite the ops ONNX lacks (:data:`ONNX_DECOMPOSITIONS`)."""
    program = torch.export.export(adapter, args, dynamic_shapes=shapes, strict=False)
    used = {node.target for node in program.graph.nodes}
    table = {op: fn for op, fn in ONNX_DECOMPOSITIONS.items() if op in used}
    return program.run_decompositions(table) if table else program


def exporter_failure(error: BaseException) -> str:
    """The gist of an exporter's error: the dynamo exporter's exception summary, else the
    first line (the TorchScript exporter appends its whole IR graph)."""
    text = str(error)
    start = text.find("## Exception summary")
    if start >= 0:
        text = text[start + len("## Exception summary") :].split("(Refer to")[0]
        lines = [line.strip() for line in text.splitlines() if line.strip() not in ("", "⬆️")]
        return " <- ".join(lines)[:1500]
    return f"{type(error).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"[:1500]


class _Options(NamedTuple):
    """How :func:`to_onnx` calls ``torch.onnx.export``."""

    dynamo: bool
    dynamic: bool
    opset: Optional[int]
    verbose: bool
    external_data: bool


def _export(adapter: ExportAdapter, args: Tuple[Tensor, ...], path: Path,
            names: Tuple[List[str], List[str]], options: _Options) -> None:
    """Export with ``torch.onnx.export``, the batch axis dynamic in either exporter's terms."""
    inputs, outputs = names
    if options.dynamo:
        batch = torch.export.Dim("batch")
        shapes = (tuple({0: batch} for _ in args),) if options.dynamic else None  # one *tensors
        program = _exported_program(adapter, args, shapes)
        torch.onnx.export(
            program, args, str(path), input_names=inputs, output_names=outputs,
            opset_version=options.opset, verbose=options.verbose, dynamo=True,
            dynamic_shapes=shapes, external_data=options.external_data,
        )
        return
    axes = {name: {0: "batch"} for name in inputs + outputs} if options.dynamic else None
    torch.onnx.export(
        adapter, args, str(path), input_names=inputs, output_names=outputs,
        opset_version=options.opset, verbose=options.verbose, dynamo=False, dynamic_axes=axes,
    )


def to_onnx(
    inn: nn.Module,
    path: Union[str, os.PathLike],
    direction: str = "forward",
    example_inputs: Optional[Tensors] = None,
    conditions: Optional[Tensors] = None,
    dynamic_batch: bool = True,
    opset: Optional[int] = None,
    *,
    jac: bool = True,
    exporter: str = "dynamo",
    external_data: Optional[bool] = None,
    verbose: bool = False,
) -> OnnxExport:
    """Export one direction of ``inn`` to the ONNX file ``path`` (see the module docstring).

    The network is traced in eval mode (every submodule's flag is restored afterwards); the
    graph returns the outputs and then the ``(batch,)`` log-det.

    Args:
        inn: a ``SequenceINN``, ``GraphINN`` or any ``InvertibleModule`` (or an ``nn.Module``
            called as ``inn(xs, c=cs, rev=..., jac=...)``, given ``example_inputs``).
        path: the ``.onnx`` file to write (parent folders are created).
        direction: ``"forward"`` (``x -> z``) or ``"inverse"`` (``z -> x``).
        example_inputs: tensor(s) ``(batch, *shape)`` to trace with: ``x`` for the forward,
            ``z`` for the inverse direction. Default: standard normal of the declared shapes;
            values do not matter, shapes and dtype do.
        conditions: condition tensor(s), as for ``inn(..., c=...)``. Default: standard normal
            of the declared condition shapes (a ``SequenceINN``'s read off its blocks).
        dynamic_batch: make axis 0 of every input and output the dynamic axis ``batch``
            (example batches of size 1 are repeated to 2 for tracing).
        opset: the ONNX opset (default: the exporter's recommended one).
        jac: export the log-det output; ``False`` calls the network with ``jac=False``.
        exporter: ``"dynamo"`` (default) or ``"torchscript"``.
        external_data: weights in a separate ``<path>.data`` file (default: above 1 GiB only).
        verbose: let the exporter print its progress and its own warnings.

    Returns:
        ``OnnxExport(path, input_names, output_names)``.

    Raises:
        ValueError: a bad ``direction``/``exporter``, missing or malformed examples, or an
            ActNorm that is not initialised yet.
        TypeError: ``inn`` is not a module, or examples are not tensors.
        RuntimeError: the exporter failed; the message has the gist, ``__cause__`` the rest.
    """
    if not isinstance(inn, nn.Module):
        raise TypeError(f"to_onnx needs a torch.nn.Module, got {type(inn).__name__}.")
    rev = _rev(direction)
    if exporter not in EXPORTERS:
        raise ValueError(f'to_onnx: exporter must be "dynamo" or "torchscript", got {exporter!r}.')
    check_initialised(inn)
    xs, cs = example_tensors(inn, rev, example_inputs, conditions)
    if dynamic_batch:
        xs, cs = batched(xs, MIN_EXAMPLE_BATCH), batched(cs, MIN_EXAMPLE_BATCH)
    adapter = ExportAdapter(inn, direction, n_inputs=len(xs), jac=jac)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    big = sum(t.numel() * t.element_size() for t in [*inn.parameters(), *inn.buffers()]) > 2**30
    options = _Options(EXPORTERS[exporter], dynamic_batch, opset, verbose,
                       big if external_data is None else bool(external_data))
    with eval_mode(adapter), torch.no_grad():
        n_outputs = len(adapter(*xs, *cs)) - int(bool(jac))
        names = io_names(len(xs), n_outputs, len(cs), direction, jac)
        try:
            with _quiet_exporter(verbose):
                _export(adapter, xs + cs, path, names, options)
        except Exception as error:
            raise RuntimeError(
                f"to_onnx: the {exporter} exporter failed on {type(inn).__name__} "
                f"({direction}): {exporter_failure(error)}"
            ) from error
    return OnnxExport(path, names[0], names[1])


def to_openvino(
    inn: nn.Module,
    path: Union[str, os.PathLike],
    direction: str = "forward",
    example_inputs: Optional[Tensors] = None,
    conditions: Optional[Tensors] = None,
    *,
    jac: bool = True,
    dynamic_batch: bool = True,
    exporter: str = "dynamo",
    verbose: bool = False,
) -> OpenVinoExport:
    """Export one direction of ``inn`` to the OpenVINO IR ``path`` (``.xml``, weights in the
    ``.bin`` beside it), run in float32 by OpenVINO's CPU runtime with its default settings.

    The network goes through :func:`to_onnx` (same arguments, names, dynamic batch axis and
    rewrites of the ops ONNX lacks) into a temporary file, which ``openvino.convert_model``
    turns into the IR, weights stored in f32. OpenVINO's CPU plugin would run an f32 model in
    bf16 on CPUs with bf16 units (about 1e-3 error in ``z`` and more in the log-det of a
    FastFlow-style flow) and the IR cannot carry an ``INFERENCE_PRECISION_HINT`` the plugins
    read, so every node of the IR is marked precise, which keeps it out of the lowering to
    bf16/f16, and the graph is written in the forms the plugin would rewrite it into (constant
    scales and biases folded into ``nn.Linear`` weights, subtractions and divisions lowered),
    since the new nodes of its rewrites would lose the mark (details in
    ``invertible._openvino``). Then::

        import openvino
        compiled = openvino.Core().compile_model("flow.xml", "CPU")  # runs in f32
        z, log_det = compiled(x.numpy()).values()

    Converting the module directly (``openvino.convert_model(adapter)``, OpenVINO's PyTorch
    front end) was measured and rejected: on a FastFlow-style flow it erred by 1e-2 in ``z`` and
    ~1 in the log-det, even compiled for f32 and at the traced batch size.

    Args:
        inn, direction, example_inputs, conditions, jac, dynamic_batch, exporter, verbose: as
            for :func:`to_onnx`.
        path: the ``.xml`` file to write (parent folders are created).

    Returns:
        ``OpenVinoExport(path, bin_path, input_names, output_names)``.

    Raises:
        ValueError, TypeError, RuntimeError: as :func:`to_onnx`, naming ``to_openvino``; also
            ``ValueError`` for a ``path`` that does not end in ``.xml``.
        ImportError: ``openvino`` is not installed.
    """
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"to_openvino: path must end in .xml, got {str(path)!r}.")
    try:  # fail before the export when it is missing
        import openvino  # noqa: F401
    except ImportError as error:
        message = "to_openvino needs OpenVINO: pip install 'invertible[openvino]'."
        raise ImportError(message) from error

    with tempfile.TemporaryDirectory() as folder:
        try:
            onnx = to_onnx(inn, Path(folder) / "model.onnx", direction, example_inputs,
                           conditions, dynamic_batch, jac=jac, exporter=exporter,
                           verbose=verbose)
        except (TypeError, ValueError, RuntimeError) as error:  # the same errors, renamed
            text = str(error).removeprefix("to_onnx").removeprefix(":").strip()
            raise type(error)(f"to_openvino: {text}") from error
        path.parent.mkdir(parents=True, exist_ok=True)
        ir_from_onnx(onnx.path, path)
    return OpenVinoExport(path, path.with_suffix(".bin"), onnx.input_names, onnx.output_names)
