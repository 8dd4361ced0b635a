"""Command line: ``python -m invertible demo`` (also the ``invertible`` console script)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invertible", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a flow on a 2-D density made in code")
    demo.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    demo.add_argument("--blocks", type=int, default=8, help="AllInOneBlocks (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.steps < 1 or args.blocks < 1:
        print("invertible: error: --steps and --blocks must be positive", file=sys.stderr)
        return 2
    from .demo import run_toy2d

    print(f"Training a SequenceINN of {args.blocks} AllInOneBlocks on two moons (2-D) ...")
    result = run_toy2d(steps=args.steps, blocks=args.blocks, seed=args.seed)
    print(f"test NLL      {result.test_nll:.4f} nats/sample  (train {result.train_nll:.4f})")
    print(f"inverse error max|x - f^-1(f(x))| = {result.inverse_error:.2e}")
    print(f"wall time     {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
