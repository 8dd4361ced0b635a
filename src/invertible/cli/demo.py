"""``invertible demo``: train an INN on real data that ships with scikit-learn, report, plot.

``--data digits`` (default) does one-class anomaly detection on scikit-learn's bundled 8x8
digits (see `invertible.demo.digits`): train a multi-scale convolutional INN on one digit,
score every test image by its NLL in bits/dim, report the image-level AUROC of "other digit"
anomalies. ``--data moons`` fits a 2-D two-moons density made in code (`invertible.demo.toy2d`).
Both print the test NLL, the AUROC, the inverse error ``max|x - f^-1(f(x))|`` and the wall
time, show a progress bar with the running loss on stderr, and write PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, Tuple

import torch

from ._common import CLIError, positive_int, resolve_device

__all__ = ["add_parser", "run"]

DEFAULTS: Dict[str, Dict[str, int]] = {
    "digits": {"epochs": 200, "blocks": 4},
    "moons": {"epochs": 12, "blocks": 16},
}
NEEDS = {"digits": ("sklearn", "matplotlib"), "moons": ("matplotlib",)}
PIP_NAMES = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "demo",
        help="train an INN on real data (sklearn's digits) or two moons, report and plot",
        description=__doc__.split("\n\n")[1].replace("``", ""),
    )
    parser.add_argument("--data", choices=tuple(DEFAULTS), default="digits",
                        help="digits (default): anomaly detection on 8x8 digits; moons: 2-D")
    parser.add_argument("--epochs", type=positive_int,
                        help="passes over the training set (default: digits 200, moons 12)")
    parser.add_argument("--blocks", type=positive_int,
                        help="AllInOneBlocks per scale (digits, default 4) or in all (moons, 16)")
    parser.add_argument("--normal-class", type=int, choices=range(10), metavar="{0..9}",
                        help="the digit trained on; the others are anomalies (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for the PNG plots (default ./invertible-demo-<data>)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads for torch (default 1: the convolutions are tiny)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the options, train, print the report and write the plots; returns 0."""
    if args.normal_class is not None and args.data != "digits":
        raise CLIError("--normal-class applies to --data digits only", status=2)
    missing = [m for m in NEEDS[args.data] if importlib.util.find_spec(m) is None]
    if missing:
        names = " and ".join(PIP_NAMES[m] for m in missing)
        raise CLIError(f"--data {args.data} needs {names}: pip install 'invertible[demo]'")
    options = dict(DEFAULTS[args.data])
    options.update({k: getattr(args, k) for k in options if getattr(args, k) is not None})
    device = resolve_device(args.device)
    out = make_output_folder(args.out or Path(f"invertible-demo-{args.data}"))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        start = time.perf_counter()
        runner = _run_digits if args.data == "digits" else _run_moons
        paths = runner(args, options, device, out)
        print(f"  {'wall time':<26}{time.perf_counter() - start:.1f} s")
    finally:
        torch.set_num_threads(threads)
    print(f"plots written to {out.resolve()}{os.sep}: {', '.join(p.name for p in paths)}")
    return 0


def make_output_folder(path: Path) -> Path:
    """Create ``path`` (and parents) if needed; `CLIError` if it cannot hold files."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CLIError(f"cannot create the output folder {str(path)!r}: {reason}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write into the output folder {str(path)!r}: permission denied")
    return path


def _stream(args: argparse.Namespace) -> Optional[TextIO]:
    """Where the progress bar goes: stderr, or nowhere with ``--no-progress``."""
    return None if args.no_progress else sys.stderr


def _run_digits(
    args: argparse.Namespace, options: Dict[str, int], device: torch.device, out: Path
) -> List[Path]:
    """Train and evaluate on the digits, print the results, write the plots."""
    from ..demo.digits import BATCH_SIZE, run_digits
    from ..demo.plots import plot_digits

    normal = 0 if args.normal_class is None else args.normal_class
    others = ",".join(str(d) for d in range(10) if d != normal)
    print("invertible demo: one-class anomaly detection on scikit-learn's 8x8 digits")
    print(f"  train a 2-scale convolutional INN ({options['blocks']} AllInOneBlocks per scale) "
          f"on digit {normal} only, {options['epochs']} epochs (mini-batches of {BATCH_SIZE}) "
          f"on {device}; digits {others} are the anomalies, scored by NLL", flush=True)
    result = run_digits(options["epochs"], options["blocks"], normal, args.seed, device,
                        _stream(args))
    rows = [
        ("training set", f"{result.n_train} images of digit {normal}, "
                         f"{result.n_parameters:,} parameters"),
        ("test NLL, normal", f"{result.test_bpd:.3f} bits/dim  (train {result.train_bpd:.3f}; "
                             "a uniform guess scores 4.087)"),
        ("test NLL, anomalous", f"{result.anomaly_bpd:.3f} bits/dim"),
        ("image-level AUROC", f"{result.auroc:.4f}  (digit {normal} vs the rest)"),
        ("AUROC per digit", " ".join(f"{d}:{a:.3f}" for d, a in
                                      result.auroc_per_digit.items())),
        ("inverse error", f"max|x - f^-1(f(x))| = {result.inverse_error:.2e}"),
        ("train + evaluate", f"{result.seconds:.1f} s"),
    ]
    _print_rows(rows)
    return plot_digits(result, out)


def _run_moons(
    args: argparse.Namespace, options: Dict[str, int], device: torch.device, out: Path
) -> List[Path]:
    """Train and evaluate on two moons, print the results, write the plots."""
    from ..demo.plots import plot_moons
    from ..demo.toy2d import run_moons

    print("invertible demo: density estimation on two moons (2-D, made in code)")
    print(f"  a SequenceINN of {options['blocks']} AllInOneBlocks, {options['epochs']} epochs "
          f"of 20,000 points on {device}; uniform points in the box are the anomalies",
          flush=True)
    result = run_moons(options["epochs"], options["blocks"], args.seed, device, _stream(args))
    rows = [
        ("parameters", f"{result.n_parameters:,}"),
        ("test NLL", f"{result.test_nll:.4f} nats/sample = {result.test_bpd:.4f} bits/dim  "
                     f"(train {result.train_nll:.4f} nats)"),
        ("AUROC", f"{result.auroc:.4f}  (test moons vs uniform outliers)"),
        ("inverse error", f"max|x - f^-1(f(x))| = {result.inverse_error:.2e}"),
        ("train + evaluate", f"{result.seconds:.1f} s"),
    ]
    _print_rows(rows)
    return plot_moons(result, out)


def _print_rows(rows: List[Tuple[str, str]]) -> None:
    """The results block: one aligned ``name  value`` line per row."""
    print("results")
    for name, value in rows:
        print(f"  {name:<26}{value}")
