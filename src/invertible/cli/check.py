"""``invertible check MODULE:CLASS``: run the property checks on your own invertible module.

``MODULE`` is a dotted module name importable from the current folder (``my_pkg.blocks``) or a
path to a Python file (``blocks.py``, ``src/blocks.py``). ``CLASS`` is an ``InvertibleModule``
subclass, built as ``CLASS([dims...], dims_c=[cond_dims...], **kwargs)`` (``dims_c`` only when
``--cond-dims`` is given), or a factory function: called the same way when ``--dims`` is given,
else as ``FACTORY(**kwargs)``; it must return the module. A subnet constructor cannot be written
in JSON: use ``--subnet dense|conv|conv1x1`` (adds ``subnet_constructor=``) or a factory.

The module is built twice under fixed seeds (the second build feeds the ``state_dict`` check),
converted to float64 and checked by `invertible.testing.check_module`. Exit status: 0 when every
check passes, 1 when one fails or the module cannot be built, 2 for bad options or targets.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .._check_module import CHECKS, check_module
from ._common import CLIError, json_object, one_line, positive_int, shape
from ._subnets import SUBNETS

__all__ = ["add_parser", "build", "load_target", "run"]

EXAMPLES = """examples:
  invertible check invertible.modules:GLOWCouplingBlock --dims 4 --subnet dense
  invertible check invertible.modules:AllInOneBlock --dims 4,8,8 --cond-dims 2,8,8 --subnet conv
  invertible check my_blocks.py:MyCoupling --dims 6 --kwargs '{"clamp": 1.5}'
  invertible check my_blocks.py:make_flow          (a factory that returns the module)"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "check",
        help="run the property checks (inverse, log-det, shapes, state) on your module",
        description=__doc__.split("\n\n")[1].replace("``", ""),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="MODULE:CLASS",
                        help="e.g. invertible.modules:GLOWCouplingBlock or my_blocks.py:MyBlock")
    parser.add_argument("--dims", type=shape, nargs="+", metavar="SHAPE",
                        help="input shape(s) without the batch axis: 4 or 3,8,8 (one per input)")
    parser.add_argument("--cond-dims", type=shape, nargs="+", metavar="SHAPE",
                        help="condition shape(s), passed as dims_c")
    parser.add_argument("--batch", type=positive_int, default=3, help="batch size (default 3)")
    parser.add_argument("--kwargs", type=json_object, default={}, metavar="JSON",
                        help="constructor keyword arguments as a JSON object")
    parser.add_argument("--subnet", choices=tuple(SUBNETS),
                        help="pass subnet_constructor= a small random MLP or CNN")
    parser.add_argument("--seed", type=int, default=0, help="seed of the builds and inputs")
    parser.add_argument("--atol", type=float, default=1e-9,
                        help="round-trip tolerance (default 1e-9, float64)")
    parser.add_argument("--log-det-atol", type=float, default=1e-6,
                        help="log-det vs autograd tolerance (default 1e-6)")
    parser.add_argument("--skip", action="append", default=[], metavar="CHECK",
                        choices=[name for name, _, _ in CHECKS],
                        help="a check not to run (repeatable): " +
                             ", ".join(name for name, _, _ in CHECKS))
    parser.add_argument("--exempt", action="append", default=[], metavar="PARAM",
                        help="a parameter name allowed to get no gradient (repeatable)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the target, build it twice, print the check table; 0 if all checks pass."""
    target = load_target(args.target)
    kwargs: Dict[str, Any] = dict(args.kwargs)
    if args.subnet:
        kwargs["subnet_constructor"] = SUBNETS[args.subnet]
    module = build(target, args.target, args.dims, args.cond_dims, kwargs, args.seed)
    fresh = build(target, args.target, args.dims, args.cond_dims, kwargs, args.seed + 1)
    report = check_module(
        module, args.dims, args.cond_dims, args.batch, fresh=fresh, atol=args.atol,
        log_det_atol=args.log_det_atol, exempt=args.exempt, skip=args.skip, seed=args.seed,
    )
    print(f"invertible check {args.target}")
    print(report)
    return 0 if report.passed else 1


def load_target(spec: str) -> Any:
    """The class or factory named by ``MODULE:NAME`` (``NAME`` may be dotted)."""
    module_name, sep, attribute = spec.rpartition(":")
    if not (sep and module_name and attribute):
        raise CLIError(
            f"expected MODULE:CLASS (e.g. invertible.modules:GLOWCouplingBlock or "
            f"my_blocks.py:MyBlock), got {spec!r}", status=2,
        )
    target: Any = _import(module_name)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise CLIError(f"{module_name!r} has no attribute {attribute!r}", status=2)
        target = getattr(target, part)
    if not callable(target):
        kind = type(target).__name__
        raise CLIError(f"{spec} is not a class or factory: got {kind!r}", status=2)
    return target


def build(
    target: Any,
    spec: str,
    dims: Optional[Sequence[Tuple[int, ...]]],
    cond_dims: Optional[Sequence[Tuple[int, ...]]],
    kwargs: Dict[str, Any],
    seed: int,
) -> nn.Module:
    """Call ``target`` as the module docstring says, under seeded (then restored) global RNGs."""
    if dims is None and isinstance(target, type):
        raise CLIError(f"--dims is needed to build the class {spec} (e.g. --dims 4 or "
                       "--dims 3,8,8)", status=2)
    call_args = () if dims is None else ([tuple(d) for d in dims],)
    call_kwargs = dict(kwargs)
    if cond_dims:
        call_kwargs["dims_c"] = [tuple(d) for d in cond_dims]
    with _seeded(seed):
        try:
            module = target(*call_args, **call_kwargs)
        except Exception as error:
            raise CLIError(
                f"building {spec} failed: {type(error).__name__}: {one_line(error)}"
            ) from None
    if not isinstance(module, nn.Module):
        raise CLIError(f"{spec} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's (CPU) and numpy's global generators; restore both afterwards."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


def _import(name: str) -> ModuleType:
    """Import a dotted module name (from the current folder too) or a ``.py`` file."""
    if name.endswith(".py") or "/" in name or os.sep in name:
        return _import_file(Path(name))
    with _on_path(os.getcwd()):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and (name == error.name or name.startswith(error.name + ".")):
                raise CLIError(
                    f"no module named {error.name!r} (run from the folder that holds it, or "
                    f"give a file path such as {name.replace('.', '/')}.py:CLASS)", status=2,
                ) from None
            raise CLIError(f"importing {name!r} failed: {one_line(error)}", status=2) from None
        except Exception as error:
            raise CLIError(
                f"importing {name!r} failed: {type(error).__name__}: {one_line(error)}", status=2
            ) from None


def _import_file(path: Path) -> ModuleType:
    """Execute a Python file as a module registered in ``sys.modules`` (so it pickles)."""
    if not path.exists():
        raise CLIError(f"no such file: {str(path)!r}", status=2)
    if not path.is_file():
        raise CLIError(f"not a file: {str(path)!r}", status=2)
    if not os.access(path, os.R_OK):
        raise CLIError(f"cannot read {str(path)!r}: permission denied", status=2)
    resolved = path.resolve()
    name = path.stem if path.stem.isidentifier() else "_invertible_check_module"
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == resolved:
            return existing
        name = f"_invertible_check_{abs(hash(str(resolved)))}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {str(path)!r} as a Python module", status=2)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with _on_path(str(resolved.parent)):
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise CLIError(
                f"importing {str(path)!r} failed: {type(error).__name__}: {one_line(error)}",
                status=2,
            ) from None
    return module


@contextmanager
def _on_path(folder: str) -> Iterator[None]:
    """Put ``folder`` first on ``sys.path`` for the duration (imports of siblings work)."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
