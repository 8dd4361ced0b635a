"""The ``invertible`` command line: one module per subcommand, registered in `SUBCOMMANDS`.

Each module ``invertible.cli.<name>`` exposes ``add_parser(subparsers)`` (adds its subparser to
the ``argparse`` sub-parser action) and ``run(args) -> int`` (runs it, returns the exit status).
Adding a subcommand is one entry in `SUBCOMMANDS`.

Every failure the user can cause (a bad option, a missing module, an unwritable folder) ends in
one line on stderr and a non-zero exit status, never a traceback: option errors exit with 2,
failures of the command itself with 1. Set ``INVERTIBLE_DEBUG=1`` to see the traceback of an
unexpected error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import Dict, List, Optional, Sequence, Tuple

from .. import __version__
from ._common import CLIError, OneLineParser, SubcommandParser, UsageError, one_line

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: Subcommand modules under ``invertible.cli``, in the order ``--help`` lists them.
SUBCOMMANDS: Tuple[str, ...] = ("demo", "check", "bench")

DESCRIPTION = "Invertible neural networks for PyTorch: demos and checks."


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, ModuleType]]:
    """The top-level parser and, per command name, the module that runs it."""
    parser = OneLineParser(prog="invertible", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"invertible {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=SubcommandParser)
    runners: Dict[str, ModuleType] = {}
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        runners.update(dict.fromkeys(set(subparsers.choices) - before, module))
    return parser, runners


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit status."""
    parser, runners = build_parser()
    args_list: List[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(args_list)
    except UsageError as error:
        print(f"{error.prog}: error: {one_line(error)} (see: {error.prog} --help)", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    prog = f"invertible {args.command}"
    try:
        return int(runners[args.command].run(args))
    except CLIError as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users; the traceback on request
        if os.environ.get("INVERTIBLE_DEBUG"):
            raise
        print(
            f"{prog}: error: {type(error).__name__}: {one_line(error)} "
            "(set INVERTIBLE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
