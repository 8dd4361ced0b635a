"""invertible-benchmark-suite: time invertible against FrEIA 0.2 and the bare-subnet floor.

    python benchmarks/run.py [--quick] [--workloads W1,W3] [--repeats N] [--json PATH]
                             [--threads N] [--compile] [--profile] [--device cpu|cuda]

Prints a table (median ms and IQR per call, ratios, peak memory) and writes JSON with the machine
it ran on. Implementations are alternated within each repeat; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
MARKER = "invertible-benchmark-suite"
QUICK_WORKLOADS = ("W1", "W3")
Result = Dict[str, Any]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny batches, 1 warm-up, 1 call per sample, 2 repeats (smoke test)")
    p.add_argument("--workloads", default=None,
                   help="comma-separated names (W1,W2,W3,W4,FF,CF); default all (quick: W1,W3)")
    p.add_argument("--repeats", type=int, default=None, help="timed samples per op (default 7)")
    p.add_argument("--json", default=None, help="output path (default benchmarks/results/"
                                                "latest.json, quick: quick.json)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd flows")
    p.add_argument("--profile", action="store_true",
                   help="write torch.profiler summaries of one training step per impl")
    p.add_argument("--profile-dir", default=None,
                   help="where profiles go (default: the JSON file's folder)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    return p.parse_args(list(argv))


def describe(exc: BaseException) -> str:
    """A one-line description of an exception."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


def load_packages() -> Tuple[Dict[str, Tuple[ModuleType, ModuleType]], Dict[str, str]]:
    """The FrEIA-style ``(framework, modules)`` pairs that import, and why others did not."""
    pkgs: Dict[str, Tuple[ModuleType, ModuleType]] = {}
    errors: Dict[str, str] = {}
    for name, root in (("freia", "FrEIA"), ("invertible", "invertible")):
        try:
            import importlib

            pkgs[name] = (importlib.import_module(f"{root}.framework"),
                          importlib.import_module(f"{root}.modules"))
        except Exception as exc:  # a package mid-refactor must not stop the others
            errors[name] = describe(exc)
    return pkgs, errors


def transfer(source: Any, target: Any) -> str:
    """Load FrEIA's weights into invertible's flows; says how far that worked."""
    try:
        target.load_state_dict(source.state_dict())
        return "loaded from FrEIA"
    except Exception:
        pass
    try:
        res = target.load_state_dict(source.state_dict(), strict=False)
        return f"partly loaded ({len(res.missing_keys)} missing keys), rest from the same seeds"
    except Exception as exc:
        return f"same seeds only ({describe(exc)})"


#: Dynamo's per-function recompile limit while benchmarking. Every flow of a workload and every
#: op (grad / no_grad / rev) is a separate compiled variant of the same ``forward``; with torch's
#: default (8) FastFlow's 3 flows x 3 ops silently fall back to eager after the eighth.
RECOMPILE_LIMIT = 64


def prepare_dynamo(torch: ModuleType) -> None:
    """Forget earlier workloads' compiled code and lift the recompile limit (see above)."""
    torch._dynamo.reset()
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))


def build_impls(wl: Any, pkgs: Dict[str, Tuple[ModuleType, ModuleType]], data: Any, device: Any,
                use_compile: bool) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, str], str]:
    """The operations of each implementation, build errors, and how weights were shared."""
    import torch
    from measure import floor_ops, flow_ops, record_calls
    from workloads import build_flows

    impls: Dict[str, Dict[str, Any]] = {}
    errors: Dict[str, str] = {}
    built: Dict[str, Any] = {}
    weights = "own seeds"
    for name, (Ff, Fm) in pkgs.items():
        try:
            flows, subnets = build_flows(wl, Ff, Fm)
            if name == "invertible" and "freia" in built:
                weights = transfer(built["freia"][0], flows)
            flows.to(device)
            impls[name] = flow_ops(flows, data)
            built[name] = (flows, subnets)
        except Exception as exc:
            errors[name] = describe(exc)
    ref = built.get("invertible") or built.get("freia")
    if ref is not None:
        fwd = record_calls(ref[0], ref[1], data, rev=False)
        inv = record_calls(ref[0], ref[1], data, rev=True)
        impls["floor"] = floor_ops(ref[1], fwd, inv, device)
    if use_compile:
        prepare_dynamo(torch)
    for name in list(built) if use_compile else []:
        try:
            impls[name + "+compile"] = flow_ops(copy.deepcopy(built[name][0]), data,
                                                compile_fn=torch.compile)
        except Exception as exc:
            errors[name + "+compile"] = describe(exc)
    return impls, errors, weights


def _faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_impls(impls: Dict[str, Dict[str, Any]], device: Any, repeats: int, warmup: int,
               target_s: float, quick: bool) -> Dict[str, Dict[str, Result]]:
    """Warm up, calibrate calls per sample, then time all (impl, op) pairs alternately."""
    from measure import OPS, stats, time_once

    out: Dict[str, Dict[str, Result]] = {impl: {} for impl in impls}
    live: Dict[Tuple[str, str], Tuple[Any, int]] = {}
    for impl, ops in impls.items():
        for op, fn in ops.items():
            try:
                for _ in range(warmup):
                    fn()
                once = time_once(fn, 1, device)
                inner = 1 if quick else max(1, min(200, round(target_s / max(once, 1e-9))))
                live[(impl, op)] = (fn, inner)
            except Exception as exc:
                out[impl][op] = {"error": describe(exc)}
    samples: Dict[Tuple[str, str], List[float]] = {k: [] for k in live}
    faults: Dict[Tuple[str, str], int] = dict.fromkeys(live, 0)
    names = list(impls)
    for r in range(repeats):
        for op in OPS:
            for impl in names if r % 2 == 0 else names[::-1]:
                if (impl, op) in live:
                    fn, inner = live[(impl, op)]
                    before = _faults()
                    samples[(impl, op)].append(time_once(fn, inner, device))
                    faults[(impl, op)] += _faults() - before
    for (impl, op), s in samples.items():
        st, inner = stats(s, live[(impl, op)][1]), live[(impl, op)][1]
        out[impl][op] = {"median_ms": st.median * 1e3, "iqr_ms": st.iqr * 1e3, "inner": inner,
                         "samples_ms": [v * 1e3 for v in s],
                         "minor_faults_per_call": faults[(impl, op)] / (inner * len(s))}
    return out


def add_memory(impls: Dict[str, Dict[str, Any]], timed: Dict[str, Dict[str, Result]],
               device: Any) -> None:
    """Peak tensor memory of one call of every op that timed without error."""
    from measure import peak_memory

    for impl, ops in impls.items():
        for op, fn in ops.items():
            entry = timed[impl].get(op)
            if entry is None or "error" in entry:
                continue
            try:
                entry["peak_mem_mb"] = peak_memory(fn, device) / 2**20
            except Exception as exc:
                entry["peak_mem_error"] = describe(exc)


def ratios(timed: Dict[str, Dict[str, Result]], suffix: str = "") -> Dict[str, Dict[str, Any]]:
    """invertible/FrEIA and both over the floor, per op; compiled over eager for ``suffix``."""
    from measure import OPS
    from report import ratio

    def med(impl: str, op: str) -> Optional[float]:
        return timed.get(impl, {}).get(op, {}).get("median_ms")

    out: Dict[str, Dict[str, Any]] = {}
    for op in OPS:
        f, i, fl = med("freia" + suffix, op), med("invertible" + suffix, op), med("floor", op)
        out[op] = {"invertible/freia": ratio(i, f), "freia/floor": ratio(f, fl),
                   "invertible/floor": ratio(i, fl)}
        if suffix:
            out[op]["freia_compile_speedup"] = ratio(med("freia", op), f)
            out[op]["invertible_compile_speedup"] = ratio(med("invertible", op), i)
    return out


def write_profiles(name: str, impls: Dict[str, Dict[str, Any]], folder: Path,
                   quick: bool) -> Dict[str, Any]:
    """Profile one training step per implementation (a few, averaged); write text files."""
    from profiles import profile_step, summarise

    folder.mkdir(parents=True, exist_ok=True)
    summaries: Dict[str, Any] = {}
    steps = 1 if quick else 5
    for impl in ("freia", "invertible", "floor"):
        if impl not in impls:
            continue
        prof = profile_step(impls[impl]["train"], steps=steps, warmup=1 if quick else 3)
        text, summary = summarise(prof, f"{name} training step, {impl}", steps)
        path = folder / f"profile_{name}_{impl}.txt"
        path.write_text(text + "\n")
        summary["file"] = str(path)
        summaries[impl] = summary
    return summaries


def run_workload(name: str, args: argparse.Namespace, pkgs: Dict[str, Any], device: Any,
                 results_dir: Path) -> Result:
    """Build, time, measure memory (and profile) one workload."""
    from workloads import WORKLOADS, make_data

    wl = WORKLOADS[name]
    batch = max(1, wl.batch // 16) if args.quick else wl.batch
    data = make_data(wl, batch, device)
    impls, errors, weights = build_impls(wl, pkgs, data, device, args.compile)
    timed = time_impls(impls, device, args.repeats, 1 if args.quick else 3, 0.1, args.quick)
    add_memory(impls, timed, device)
    res: Result = {"title": wl.title, "batch": batch, "weights": weights, "errors": errors,
                   "flows": [{"dims": s.dims, "cond": s.cond} for s in wl.flows],
                   "impls": timed, "ratios": ratios(timed)}
    if args.compile:
        res["ratios_compiled"] = ratios(timed, "+compile")
    if args.profile:
        res["profiles"] = write_profiles(name, impls, results_dir, args.quick)
    return res


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the suite; returns the exit status (0 when anything was measured)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # the profiler's start/stop chatter
    import torch
    from report import format_table, machine_info, notes
    from workloads import WORKLOADS

    names = (args.workloads.split(",") if args.workloads
             else list(QUICK_WORKLOADS if args.quick else WORKLOADS))
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or (args.repeats is not None and args.repeats < 1):
        print(f"run.py: error: unknown workloads {unknown} (known: {', '.join(WORKLOADS)}) "
              f"or --repeats < 1", file=sys.stderr)
        return 2
    args.repeats = args.repeats or (2 if args.quick else 7)
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    json_path = Path(args.json or HERE / "results" / ("quick.json" if args.quick
                                                      else "latest.json"))
    pkgs, import_errors = load_packages()
    machine = machine_info(threads, device)
    print(f"{machine['cpu']} | {threads} threads | torch {machine['torch']} | "
          f"FrEIA {machine['freia']} | {machine['date']}")
    for pkg, msg in import_errors.items():
        print(f"{pkg} not benchmarked: {msg}")
    results: Dict[str, Result] = {}
    for name in names:
        try:
            results[name] = run_workload(name, args, pkgs, device,
                                         Path(args.profile_dir or json_path.parent))
        except Exception as exc:
            traceback.print_exc()
            print(f"{name} failed: {describe(exc)}")
    machine["load_average_end"] = list(os.getloadavg())
    settings = {k: v for k, v in vars(args).items()}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"suite": MARKER, "machine": machine, "settings": settings,
               "import_errors": import_errors, "workloads": results}
    json_path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(format_table(results, args.compile))
    print("\n".join(notes(results)))
    print(f"JSON written to {json_path}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from malloc_env import ensure_malloc_env

    ensure_malloc_env(__file__, sys.argv[1:])
    sys.exit(main())
