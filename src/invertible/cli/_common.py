"""Shared pieces of the command line: one-line errors and option parsers for argparse."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

import torch

__all__ = [
    "CLIError",
    "OneLineParser",
    "SubcommandParser",
    "UsageError",
    "json_object",
    "one_line",
    "positive_int",
    "resolve_device",
    "shape",
]


class CLIError(Exception):
    """A failure the user can fix; the CLI prints its message as one line and exits ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class UsageError(CLIError):
    """A bad command line (raised by `OneLineParser` instead of printing usage and exiting)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message, status=2)
        self.prog = prog


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise `UsageError` (one line) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise `UsageError` naming this (sub)command."""
        raise UsageError(self.prog, message)


class SubcommandParser(OneLineParser):
    """The parser of one subcommand: arguments it does not know are its error, not the top's.

    ``argparse`` hands a subcommand's unknown arguments back to the top-level parser, whose
    error would name ``invertible`` and point to ``invertible --help``; the subcommand's own
    help is the one that lists the options the user was after.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> Tuple[argparse.Namespace, List[str]]:
        """Parse ``args``; `UsageError` naming this subcommand if any is left over."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def one_line(error: object) -> str:
    """The text of ``error`` with all whitespace runs, newlines included, made single spaces."""
    return " ".join(str(error).split()) or type(error).__name__


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def shape(text: str) -> Tuple[int, ...]:
    """An argparse type: a shape without the batch axis, ``4`` or ``3,8,8`` (also ``3x8x8``)."""
    parts = text.strip().strip("()[]").replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected a shape of positive integers such as 4 or 3,8,8, got {text!r}"
        )
    return dims


def json_object(text: str) -> Dict[str, Any]:
    """An argparse type: a JSON object such as ``'{"clamp": 1.5}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, checked to exist on this machine; `CLIError` otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise CLIError(f"unknown device {name!r} (try cpu, cuda or cuda:0)", status=2) from None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as error:  # not compiled in, not present
        reason = one_line(error).split(". ")[0][:160]
        raise CLIError(f"device {name!r} is not available: {reason}", status=2) from None
    return device
