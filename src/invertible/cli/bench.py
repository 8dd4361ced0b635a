"""``invertible bench``: the repository's benchmark suite, or a quick built-in subset of it.

Neither writes into the working directory or the checkout: the suite records its JSON (and
``--profile`` summaries) under the user's cache folder unless ``--json PATH`` names a file, and
the built-in subset writes only to ``--json PATH``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["add_parser", "find_suite", "main", "results_folder", "run", "run_builtin"]

#: A line of benchmarks/run.py that tells this suite from other folders called benchmarks/.
MARKER = "invertible-benchmark-suite"
BUILTIN = ("W1", "W3")
BATCH, DIM, HIDDEN, BLOCKS = 1024, 64, 256, 8
#: Set for the suite's process unless the user set it. Its CPU peak-memory measure profiles one
#: call of each operation, and a training step frees the previous step's gradients, allocated
#: before that profile began; c10's allocator logs a warning for such a free. The measure counts
#: only what the call itself allocates, by design, so the warning says nothing about the
#: results. The level applies to C++ log lines only; Python warnings still show.
QUIET_CPP_LOG = {"TORCH_CPP_LOG_LEVEL": "ERROR"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an ``add_subparsers()`` object; dispatch to :func:`run`."""
    p = subparsers.add_parser(
        "bench", help="time invertible against FrEIA on standard flows",
        description="Runs benchmarks/run.py when the repository's benchmarks/ folder is found "
                    "(in the working directory or next to the package source); otherwise a quick "
                    "built-in subset (W1, W3): invertible vs FrEIA if installed, else alone.")
    p.add_argument("--quick", action="store_true", help="small and short (a smoke test)")
    p.add_argument("--workloads", default=None, help="comma-separated, e.g. W1,W3")
    p.add_argument("--repeats", type=int, default=None, help="timed samples per operation")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the results to this JSON file (suite default: quick.json or "
                        "latest.json in ~/.cache/invertible/bench; the built-in subset writes "
                        "nothing without it)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (suite only)")
    p.add_argument("--profile", action="store_true",
                   help="write profiles next to the JSON file (suite only)")
    p.add_argument("--device", default=None, help="cpu or cuda (suite only)")
    p.add_argument("--builtin", action="store_true", help="use the built-in subset even if the "
                                                          "suite is found")
    p.set_defaults(func=run)
    return p


def find_suite(cwd: Optional[Path] = None) -> Optional[Path]:
    """``benchmarks/run.py`` of this repository, from ``cwd`` or from the package source."""
    here = Path(__file__).resolve()  # <repo>/src/invertible/cli/bench.py in a checkout
    for root in (cwd or Path.cwd(), here.parents[3] if len(here.parents) > 3 else None):
        if root is None:
            continue
        script = root / "benchmarks" / "run.py"
        try:
            if script.is_file() and MARKER in script.read_text(encoding="utf-8")[:2000]:
                return script
        except OSError:
            continue
    return None


def results_folder() -> Path:
    """Where the suite's JSON goes without ``--json``: ``$XDG_CACHE_HOME`` (default
    ``~/.cache``) ``/invertible/bench``, outside any checkout."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "invertible" / "bench"


def _forwarded(args: argparse.Namespace) -> List[str]:
    """The options of ``args`` as benchmarks/run.py takes them (always with ``--json``)."""
    argv = ["--quick"] if args.quick else []
    for flag in ("workloads", "repeats", "threads", "device"):
        if getattr(args, flag, None) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    default = results_folder() / ("quick.json" if args.quick else "latest.json")
    argv += ["--json", str(args.json or default)]
    return argv + [f"--{f}" for f in ("compile", "profile") if getattr(args, f, False)]


def run(args: argparse.Namespace) -> int:
    """Run the suite in a subprocess if found, else the built-in subset; the exit status."""
    suite = None if getattr(args, "builtin", False) else find_suite()
    if suite is not None:
        print(f"Running {suite}", flush=True)
        env = {**QUIET_CPP_LOG, **os.environ}
        return subprocess.call([sys.executable, str(suite), *_forwarded(args)], env=env)
    return run_builtin(args)


# ------------------------------------------------------------------------- built-in subset


class _Dense:
    """``Linear(c_in, 256) - ReLU - Linear(256, c_out)`` subnets (picklable, no closure)."""

    def __call__(self, c_in: int, c_out: int) -> Any:
        """Build one subnet."""
        from torch import nn

        return nn.Sequential(nn.Linear(c_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, c_out))


def _build(name: str, Ff: ModuleType, Fm: ModuleType) -> Any:
    """W1 (8 AllInOneBlocks) or W3 (8 GLOW + PermuteRandom), d=64, seeded."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    inn = Ff.SequenceINN(DIM)
    for k in range(BLOCKS):
        if name == "W1":
            inn.append(Fm.AllInOneBlock, subnet_constructor=_Dense())
        else:
            inn.append(Fm.GLOWCouplingBlock, subnet_constructor=_Dense(), clamp=2.0)
            inn.append(Fm.PermuteRandom, seed=k)
    return inn


def _ops(inn: Any, x: Any) -> Dict[str, Callable[[], object]]:
    """Training step (NLL, backward, Adam), scoring forward and inverse, all on ``x``."""
    import torch

    opt = torch.optim.Adam([p for p in inn.parameters() if p.requires_grad], lr=1e-5)
    with torch.no_grad():
        z = inn(x)[0]

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        out, log_det = inn(x)
        ((0.5 * out.pow(2).sum(1) - log_det).mean() / DIM).backward()
        opt.step()

    def score() -> None:
        with torch.no_grad():
            inn(x)

    def inverse() -> None:
        with torch.no_grad():
            inn(z, rev=True, jac=False)

    return {"train": train, "score": score, "inverse": inverse}


def _packages() -> Dict[str, Tuple[ModuleType, ModuleType]]:
    """FrEIA (when installed) and invertible as ``(framework, modules)`` pairs."""
    pkgs: Dict[str, Tuple[ModuleType, ModuleType]] = {}
    for label, root in (("FrEIA", "FrEIA"), ("invertible", "invertible")):
        try:
            pkgs[label] = (importlib.import_module(f"{root}.framework"),
                           importlib.import_module(f"{root}.modules"))
        except ImportError:
            continue
    return pkgs


def _time(fn: Callable[[], object], inner: int) -> float:
    """Milliseconds per call over ``inner`` calls."""
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) * 1e3 / inner


def _measure(impls: Dict[str, Dict[str, Callable[[], object]]], repeats: int,
             quick: bool) -> Dict[str, Dict[str, float]]:
    """Median ms per call of every (implementation, op), implementations alternated."""
    inner: Dict[Tuple[str, str], int] = {}
    for impl, ops in impls.items():
        for op, fn in ops.items():
            fn()
            inner[(impl, op)] = 1 if quick else max(1, min(100, round(50 / _time(fn, 1))))
    samples: Dict[Tuple[str, str], List[float]] = {k: [] for k in inner}
    names = list(impls)
    for r in range(repeats):
        for op in ("train", "score", "inverse"):
            for impl in names if r % 2 == 0 else names[::-1]:
                samples[(impl, op)].append(_time(impls[impl][op], inner[(impl, op)]))
    out: Dict[str, Dict[str, float]] = {impl: {} for impl in names}
    for (impl, op), s in samples.items():
        out[impl][op] = statistics.median(s)
    return out


def run_builtin(args: argparse.Namespace) -> int:
    """Time W1 and W3 (invertible, and FrEIA when installed); print a table, maybe JSON."""
    import torch

    names = args.workloads.split(",") if getattr(args, "workloads", None) else list(BUILTIN)
    if any(n not in BUILTIN for n in names):
        print(f"invertible bench: error: the built-in subset has only {', '.join(BUILTIN)} "
              f"(run from a checkout for the full suite)", file=sys.stderr)
        return 2
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    quick = bool(getattr(args, "quick", False))
    repeats = getattr(args, "repeats", None) or (2 if quick else 5)
    pkgs = _packages()
    x = torch.randn(64 if quick else BATCH, DIM, generator=torch.Generator().manual_seed(1))
    print(f"built-in subset (W1, W3), torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, batch {x.shape[0]}; FrEIA {'found' if 'FrEIA' in pkgs else 'not installed'}")
    print(f"{'work':<5}{'op':<9}" + "".join(f"{k + ' ms':>15}" for k in pkgs)
          + ("  inv/FrEIA" if len(pkgs) == 2 else ""))
    results: Dict[str, Any] = {}
    for name in names:
        impls = {label: _ops(_build(name, Ff, Fm), x) for label, (Ff, Fm) in pkgs.items()}
        res = results[name] = _measure(impls, repeats, quick)
        for op in ("train", "score", "inverse"):
            cells = "".join(f"{res[k][op]:>15.2f}" for k in pkgs)
            ratio = (f"{res['invertible'][op] / res['FrEIA'][op]:>11.2f}"
                     if len(pkgs) == 2 else "")
            print(f"{name:<5}{op:<9}{cells}{ratio}")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps({"builtin": True, "median_ms": results}, indent=1))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry: ``python -m invertible.cli.bench [options]``."""
    parser = add_parser(argparse.ArgumentParser(prog="invertible").add_subparsers())
    return run(parser.parse_args(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
