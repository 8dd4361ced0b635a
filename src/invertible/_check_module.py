"""`check_module`: run every property check on one module and get a report.

For users' own test suites (``assert check_module(MyBlock([(4,)])).passed``) and for the
``invertible check`` command, which prints the report's table.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, cast

import torch
from torch import Tensor, nn

from . import _properties as checks
from .utils import output_dims_compatible

__all__ = ["CHECKS", "CheckReport", "CheckResult", "check_module"]

Shape = Tuple[int, ...]
Tensors = List[Tensor]


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``passed`` is ``None`` when the check was skipped."""

    name: str
    description: str
    passed: Optional[bool]
    message: str = ""
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """``PASS``, ``FAIL`` or ``skip``."""
        return "skip" if self.passed is None else ("PASS" if self.passed else "FAIL")


@dataclass
class CheckReport:
    """All check results for one module; ``str(report)`` is a pass/fail table."""

    module: str
    dims_in: List[Shape]
    dims_c: List[Shape]
    batch: int
    dtype: str
    results: List[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped checks do not count)."""
        return not self.failures

    @property
    def failures(self) -> List[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.passed is False]

    def __getitem__(self, name: str) -> CheckResult:
        """The result of the check called ``name``."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no check called {name!r}; checks: {[r.name for r in self.results]}")

    def raise_if_failed(self) -> None:
        """Raise ``AssertionError`` carrying the table when any check failed."""
        if not self.passed:
            raise AssertionError(str(self))

    def __str__(self) -> str:
        """A table: one row per check, then the full messages of the failures."""
        dims = f"dims_in={self.dims_in}" + (f" dims_c={self.dims_c}" if self.dims_c else "")
        lines = [f"{self.module}  {dims}  batch={self.batch}  {self.dtype}", ""]
        name_width = max(len(r.name) for r in self.results) if self.results else 5
        width = max([len(r.description) for r in self.results] + [8])
        lines.append(f"  {'check':<{name_width}}  {'property':<{width}}  result  note")
        lines.append(f"  {'-' * name_width}  {'-' * width}  ------  ----")
        for r in self.results:
            note = r.message if len(r.message) <= 50 else "see below"
            row = f"  {r.name:<{name_width}}  {r.description:<{width}}  {r.status:<6}  {note}"
            lines.append(row.rstrip())
        counts = [sum(r.passed is v for r in self.results) for v in (True, False, None)]
        lines += ["", "{} passed, {} failed, {} skipped".format(*counts)]
        for r in self.failures:
            lines.append(f"FAIL {r.name}: {r.message}")
        return "\n".join(lines)


@dataclass
class _Context:
    """What every check needs: the module, valid inputs, conditions and latents."""

    module: nn.Module
    fresh: Optional[nn.Module]
    xs: Tensors
    cs: Optional[Tensors]
    zs: Tensors
    expected: Optional[List[Shape]]
    expected_error: str
    atol: float
    log_det_atol: float
    exempt: Tuple[str, ...]


def _output_dims(ctx: _Context) -> Optional[str]:
    if ctx.expected is None:
        raise AssertionError(f"output_dims raised {ctx.expected_error}")
    outs, _ = checks.run(ctx.module, ctx.xs, ctx.cs)
    got = [tuple(o.shape[1:]) for o in outs]
    if got != ctx.expected:
        raise AssertionError(f"outputs have shapes {got}, output_dims says {ctx.expected}")
    return None


def _log_det_shape(ctx: _Context) -> Optional[str]:
    outs, _ = checks.run(ctx.module, ctx.xs, ctx.cs)
    checks.check_output_shapes(ctx.module, ctx.xs, ctx.cs, [tuple(o.shape[1:]) for o in outs])
    return None


def _state_dict(ctx: _Context) -> Optional[str]:
    if ctx.fresh is not None:
        checks.check_state_dict_round_trip(ctx.module, ctx.fresh, ctx.xs, ctx.cs)
        return None
    fresh = copy.deepcopy(ctx.module)
    with torch.no_grad():  # make the copy differ, so loading has something to restore
        for tensor in list(fresh.parameters()) + list(fresh.buffers()):
            if tensor.is_floating_point():
                tensor.add_(0.1)
    checks.check_state_dict_round_trip(ctx.module, fresh, ctx.xs, ctx.cs)
    return "against a perturbed deep copy"


def _conditions(ctx: _Context) -> Optional[str]:
    if not ctx.cs:
        return "skip: no conditions"
    checks.check_conditions_used(ctx.module, ctx.xs, ctx.cs)
    return None


def _reverse_points(ctx: _Context) -> Tensors:
    return [z.detach() for z in checks.run(ctx.module, ctx.xs, ctx.cs)[0]]


Check = Callable[[_Context], Optional[str]]

#: The checks that `check_module` runs, in this order, as ``(name, description, check)``
#: triples; a check raises on failure, returns an optional note, and a note starting with
#: ``skip:`` marks the check as skipped.
CHECKS: Tuple[Tuple[str, str, Check], ...] = (
    ("output_dims", "outputs match output_dims", _output_dims),
    ("log_det_shape", "log-det is (batch,), output dtype", _log_det_shape),
    ("inverse_x", "inverse: x -> z -> x, log-dets cancel",
     lambda c: checks.check_round_trip(c.module, c.xs, c.cs, atol=c.atol)),
    ("inverse_z", "inverse: z -> x -> z",
     lambda c: checks.check_reverse_round_trip(c.module, c.zs, c.cs, atol=c.atol)),
    ("log_det_forward", "log-det = autograd slogdet (forward)",
     lambda c: checks.check_log_det_autograd(c.module, c.xs, c.cs, atol=c.log_det_atol)),
    ("log_det_reverse", "log-det = autograd slogdet (reverse)",
     lambda c: checks.check_log_det_autograd(
         c.module, _reverse_points(c), c.cs, atol=c.log_det_atol, rev=True)),
    ("jac_false", "jac=False gives the same outputs",
     lambda c: checks.check_jac_false(c.module, c.xs, c.cs)),
    ("gradients", "gradients reach every parameter",
     lambda c: checks.check_gradients(c.module, c.xs, c.cs, c.exempt)),
    ("conditions", "every condition changes the output", _conditions),
    ("batch_independence", "samples independent (eval mode)",
     lambda c: checks.check_batch_independence(c.module, c.xs, c.cs)),
    ("state_dict", "state_dict round trip", _state_dict),
    ("pickle", "torch.save / deepcopy round trip",
     lambda c: checks.check_pickle_round_trip(c.module, c.xs, c.cs)),
    ("inputs_unchanged", "inputs not modified in place",
     lambda c: checks.check_inputs_unchanged(c.module, c.xs, c.cs)),
)


def check_module(
    module: nn.Module,
    dims_in: Optional[Sequence[Sequence[int]]] = None,
    dims_c: Optional[Sequence[Sequence[int]]] = None,
    batch: int = 3,
    *,
    fresh: Optional[nn.Module] = None,
    inputs: Optional[Sequence[Tensor]] = None,
    conditions: Optional[Sequence[Tensor]] = None,
    latents: Optional[Sequence[Tensor]] = None,
    dtype: Optional[torch.dtype] = torch.float64,
    atol: float = 1e-9,
    log_det_atol: float = 1e-6,
    exempt: Iterable[str] = (),
    skip: Iterable[str] = (),
    seed: int = 0,
) -> CheckReport:
    """Run every check of `CHECKS` on ``module``; a failing check never stops the others.

    The checks are the project's property suite: outputs match ``output_dims``, a ``(batch,)``
    log-det, inverse both ways, log-det against ``slogdet`` of the autograd Jacobian in both
    directions, ``jac=False``, gradients to every parameter, conditions used, eval-mode batch
    independence, ``state_dict`` and ``torch.save`` round trips, inputs not modified.

    Args:
        module: an invertible module (FrEIA calling convention); converted **in place** to
            ``dtype`` (float64 makes the tolerances meaningful).
        dims_in: input shapes without the batch axis (default ``module.dims_in``).
        dims_c: condition shapes (default ``module.dims_c``).
        batch: batch size of the random inputs.
        fresh: a second build of the same configuration, for the ``state_dict`` check
            (default: a deep copy with perturbed parameters and buffers).
        inputs: valid inputs, if standard normal ones are outside the module's domain.
        conditions: condition tensors (default standard normal for ``dims_c``).
        latents: valid inputs of the reverse direction (default standard normal).
        dtype: the dtype to run in; ``None`` keeps the module's (loosen the tolerances then).
        atol: tolerance of the round trips.
        log_det_atol: tolerance of the log-det against the autograd Jacobian.
        exempt: parameter names allowed to get no gradient.
        skip: names of checks not to run (see `CHECKS`).
        seed: seed of the local generator for the random tensors (global RNG is not touched).

    Returns:
        a `CheckReport`: ``.passed``, ``.failures``, ``report["gradients"]``, ``str(report)``.
    """
    skip = set(skip)
    unknown = skip - {name for name, _, _ in CHECKS}
    if unknown:
        raise ValueError(
            f"check_module: unknown check(s) {sorted(unknown)}; known: {[n for n, _, _ in CHECKS]}"
        )
    ctx, dims_in, dims_c, run_dtype = _context(
        module, dims_in, dims_c, batch, fresh, inputs, conditions, latents, dtype, seed
    )
    ctx.atol, ctx.log_det_atol, ctx.exempt = atol, log_det_atol, tuple(exempt)
    report = CheckReport(type(module).__name__, dims_in, dims_c, batch, str(run_dtype)[6:])
    for name, description, check in CHECKS:
        report.results.append(_run_one(name, description, check, ctx, name in skip))
    return report


def _run_one(
    name: str, description: str, check: Check, ctx: _Context, skipped: bool
) -> CheckResult:
    """Run one check, turning its exception into a failed result."""
    if skipped:
        return CheckResult(name, description, None, "skipped on request")
    start = time.perf_counter()
    try:
        note = check(ctx) or ""
    except AssertionError as error:
        return CheckResult(name, description, False, str(error), time.perf_counter() - start)
    except Exception as error:  # the module crashed: a failure of this check, not of the run
        message = f"{type(error).__name__}: {error}"
        return CheckResult(name, description, False, message, time.perf_counter() - start)
    if note.startswith("skip:"):
        return CheckResult(name, description, None, note[5:].strip())
    return CheckResult(name, description, True, note, time.perf_counter() - start)


def _shape_list(shapes: Sequence[Sequence[int]]) -> List[Shape]:
    return [tuple(int(d) for d in shape) for shape in shapes]


def _context(
    module: nn.Module,
    dims_in: Optional[Sequence[Sequence[int]]],
    dims_c: Optional[Sequence[Sequence[int]]],
    batch: int,
    fresh: Optional[nn.Module],
    inputs: Optional[Sequence[Tensor]],
    conditions: Optional[Sequence[Tensor]],
    latents: Optional[Sequence[Tensor]],
    dtype: Optional[torch.dtype],
    seed: int,
) -> Tuple[_Context, List[Shape], List[Shape], torch.dtype]:
    """Convert the module, resolve the shapes and draw the random tensors."""
    if dims_in is None and not hasattr(module, "dims_in"):
        raise TypeError(
            f"check_module: {type(module).__name__} has no dims_in attribute; pass dims_in"
        )
    given_dims = dims_in is not None
    dims_in = _shape_list(cast(Any, module).dims_in if dims_in is None else dims_in)
    dims_c = _shape_list(getattr(module, "dims_c", []) if dims_c is None else dims_c)
    for m in (module, fresh):
        if m is not None and dtype is not None:
            m.to(dtype)
    tensor = next(iter(list(module.parameters()) + list(module.buffers())), None)
    run_dtype = dtype or (tensor.dtype if tensor is not None else torch.get_default_dtype())
    device = tensor.device if tensor is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)

    def normal(shapes: Sequence[Shape]) -> Tensors:
        return [torch.randn(batch, *s, generator=gen, dtype=run_dtype).to(device) for s in shapes]

    xs = list(inputs) if inputs is not None else normal(dims_in)
    cs = list(conditions) if conditions is not None else (normal(dims_c) if dims_c else None)
    expected, error = _expected_output_dims(module, dims_in, given_dims)
    zs = list(latents) if latents is not None else normal(expected or dims_in)
    ctx = _Context(module, fresh, xs, cs, zs, expected, error, 0.0, 0.0, ())
    return ctx, dims_in, dims_c, run_dtype


def _expected_output_dims(
    module: nn.Module, dims_in: List[Shape], given: bool
) -> Tuple[Optional[List[Shape]], str]:
    """``output_dims`` of the module (containers included), or ``None`` and the error."""
    try:
        if given and _shape_list(getattr(module, "dims_in", [])) != dims_in:
            return _shape_list(cast(Any, module).output_dims(dims_in)), ""
        return _shape_list(output_dims_compatible(module)), ""
    except Exception as error:  # reported by the output_dims check
        return None, f"{type(error).__name__}: {error}"
