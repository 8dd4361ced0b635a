"""Core-speed measurements: invertible's blocks against FrEIA, the subnet floor and a baseline.

    python benchmarks/profile_core.py [--workloads W1,W3] [--repeats 31] [--threads 1]
                                      [--baseline DIR] [--profile] [--ops train,score,inverse]
                                      [--compile]

Built for comparing *variants* of the coupling kernels on a noisy shared machine: all
implementations live in ONE process and are timed alternately (the order reversed on every other
repeat), each sample is a short burst of calls, and the report gives medians and ratios
(invertible/FrEIA, invertible/floor, invertible/baseline) rather than absolute times. By default
the clock is the thread's CPU time (``--clock cpu``, with one torch thread all work runs on the
calling thread), which does not count the time the process waits while other processes run;
``--clock wall`` uses ``perf_counter`` (forced with ``--threads`` > 1).

``--baseline DIR`` imports an older copy of the package as a second implementation: ``DIR`` must
hold a copy of ``src/invertible`` renamed to ``invertible_base`` (e.g.
``mkdir /tmp/base && cp -r src/invertible /tmp/base/invertible_base`` before editing).
``--profile`` prints the top ops of a training step per implementation (torch.profiler, CPU).
Set ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` to 4 GiB (the script re-executes
itself with them otherwise), as ``benchmarks/run.py`` does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
Impls = Dict[str, Dict[str, Any]]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default="W1,W3")
    p.add_argument("--ops", default="train,score,inverse")
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--target", type=float, default=0.05, help="seconds per sample")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--baseline", default=None, help="folder holding invertible_base/")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--no-freia", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="time torch.compile'd flows (default options) instead of eager ones")
    return p.parse_args(list(argv))


def packages(args: argparse.Namespace) -> Dict[str, Tuple[Any, Any]]:
    """``name -> (framework, modules)`` of FrEIA, invertible and the optional baseline."""
    roots = [("invertible", "invertible")]
    if not args.no_freia:
        roots.insert(0, ("freia", "FrEIA"))
    if args.baseline:
        sys.path.insert(0, args.baseline)
        roots.append(("baseline", "invertible_base"))
    return {name: (importlib.import_module(f"{root}.framework"),
                   importlib.import_module(f"{root}.modules")) for name, root in roots}


def build(name: str, pkgs: Dict[str, Tuple[Any, Any]], batch: Optional[int],
          use_compile: bool = False) -> Impls:
    """Every implementation's ops for one workload, FrEIA's weights loaded into the others;
    with ``use_compile`` each flow is wrapped in ``torch.compile`` (the floor stays eager)."""
    import torch
    from measure import floor_ops, flow_ops, record_calls
    from run import prepare_dynamo
    from workloads import WORKLOADS, build_flows, make_data

    wl = WORKLOADS[name]
    data = make_data(wl, batch or wl.batch, torch.device("cpu"))
    impls: Impls = {}
    built: Dict[str, Any] = {}
    if use_compile:
        prepare_dynamo(torch)
    for pkg, (Ff, Fm) in pkgs.items():
        flows, subnets = build_flows(wl, Ff, Fm)
        if "freia" in built:
            flows.load_state_dict(built["freia"][0].state_dict())
        built[pkg] = (flows, subnets)
        impls[pkg] = flow_ops(flows, data, compile_fn=torch.compile if use_compile else None)
    flows, subnets = built["invertible"]
    fwd = record_calls(flows, subnets, data, rev=False)
    inv = record_calls(flows, subnets, data, rev=True)
    impls["floor"] = floor_ops(subnets, fwd, inv, torch.device("cpu"))
    return impls


def time_once(op: Any, inner: int, clock: str) -> float:
    """Seconds per call of ``op`` over ``inner`` calls, by thread CPU time or wall time."""
    now = time.thread_time if clock == "cpu" else time.perf_counter
    start = now()
    for _ in range(inner):
        op()
    return (now() - start) / inner


def time_all(impls: Impls, ops: Sequence[str], repeats: int, target: float, clock: str
             ) -> Dict[Tuple[str, str], List[float]]:
    """Alternating samples (seconds per call) of every (implementation, op)."""
    inner: Dict[Tuple[str, str], int] = {}
    for impl, table in impls.items():
        for op in ops:
            for _ in range(3):
                table[op]()
            once = time_once(table[op], 2, clock)
            inner[(impl, op)] = max(1, round(target / max(once, 1e-9)))
    samples: Dict[Tuple[str, str], List[float]] = {k: [] for k in inner}
    names = list(impls)
    for r in range(repeats):
        for op in ops:
            for impl in names if r % 2 == 0 else names[::-1]:
                key = (impl, op)
                samples[key].append(time_once(impls[impl][op], inner[key], clock))
    return samples


def paired(samples: Dict[Tuple[str, str], List[float]], op: str, a: str, b: str) -> float:
    """Median over repeats of ``a / b`` from the same repeat (robust to slow drifts)."""
    return statistics.median(x / y for x, y in zip(samples[(a, op)], samples[(b, op)]))


def report(name: str, samples: Dict[Tuple[str, str], List[float]], ops: Sequence[str]) -> None:
    """Medians (ms), relative IQRs and the ratios that matter (medians of per-repeat ratios),
    one line per op."""
    med = {k: statistics.median(v) for k, v in samples.items()}
    impls = sorted({k[0] for k in samples}, key=["freia", "baseline", "invertible",
                                                   "floor"].index)
    print(f"\n{name}: median ms per call (relative IQR)")
    for op in ops:
        cells = []
        for impl in impls:
            q = statistics.quantiles(samples[(impl, op)], n=4)
            cells.append(f"{impl} {med[(impl, op)] * 1e3:7.2f} ({(q[2] - q[0]) / q[1]:4.0%})")
        ratios = []
        for ref in ("floor", "freia", "baseline"):
            if (ref, op) in med:
                ratios.append(f"inv/{ref} {paired(samples, op, 'invertible', ref):.3f}")
        for impl in ("freia", "baseline"):
            if (impl, op) in med:
                ratios.append(f"{impl}/floor {paired(samples, op, impl, 'floor'):.3f}")
        print(f"  {op:<8} " + " | ".join(cells))
        print(f"  {'':<8} " + " | ".join(ratios))


def profile(name: str, impls: Impls) -> None:
    """Top ops of a training step (self CPU time per step) for each implementation."""
    from profiles import profile_step, summarise

    for impl, table in impls.items():
        prof = profile_step(table["train"], steps=5, warmup=3)
        text, _ = summarise(prof, f"{name} training step, {impl}", 5, top=22)
        print("\n" + text.split("\n\ntorch.profiler table")[0])


def main() -> None:
    """Build, time and report each workload."""
    args = parse_args(sys.argv[1:])
    sys.path.insert(0, str(HERE))
    import torch

    torch.set_num_threads(args.threads)
    if args.threads > 1 and args.clock == "cpu":
        args.clock = "wall"  # the thread CPU clock would miss the intra-op worker threads
    pkgs = packages(args)
    ops = args.ops.split(",")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, "
          f"load {os.getloadavg()}")
    for name in args.workloads.split(","):
        impls = build(name, pkgs, None, args.compile)
        report(name, time_all(impls, ops, args.repeats, args.target, args.clock), ops)
        if args.profile:
            profile(name, impls)
    print(f"\nload at end {os.getloadavg()}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from malloc_env import ensure_malloc_env

    ensure_malloc_env(__file__, sys.argv[1:])
    main()
