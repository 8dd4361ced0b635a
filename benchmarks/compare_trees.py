"""Before/after: the run.py workloads on two source trees of invertible, paired and alternated.

    python benchmarks/compare_trees.py --before ../baseline --after . [--workloads W1,W3]
        [--ops train,score,inverse] [--repeats 21] [--target 0.1] [--clock cpu|wall]
        [--threads 1] [--quick] [--json PATH]

Each tree runs in its own worker process, kept alive for the whole run, with ``PYTHONPATH`` set
to ``<tree>/src`` (ahead of any installed copy), so both trees' ``invertible`` can be timed
without renaming either. Both workers use THIS folder's workloads.py and measure.py, so the
networks, data and operations are the same and only the package differs. For every workload
the "before" worker builds the flows first and saves their ``state_dict``; the "after" worker
builds its own and loads those weights (strictly if it can; the JSON says what happened).

Pairing: within each repeat and operation one sample is taken from each worker in turn (the
order reversed on every other repeat); the idle worker waits on its pipe and uses no CPU. Both
get the same number of calls per sample. Reported: median ms per call and IQR for each tree,
and after/before as the median and IQR of the per-repeat ratios, which a slow drift of the
machine moves less than a ratio of medians. The default clock is the worker thread's CPU time
(one torch thread); ``--clock wall`` uses ``perf_counter`` (forced with ``--threads`` > 1).
glibc's ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` are 4 GiB in both workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["Worker", "main"]

HERE = Path(__file__).resolve().parent
SIDES = ("before", "after")
OPS = ("train", "score", "inverse")
Message = Dict[str, Any]


# ---------------------------------------------------------------------------- worker side

class Session:
    """The worker's state: the current workload's operations."""

    def __init__(self, threads: int, clock: str) -> None:
        import torch

        torch.set_num_threads(threads)
        self.clock = time.thread_time if clock == "cpu" else time.perf_counter
        self.ops: Dict[str, Any] = {}

    def build(self, msg: Message) -> Message:
        """Build ``msg['workload']`` at ``msg['batch']``; save or load weights as asked."""
        import torch
        from measure import flow_ops
        from workloads import WORKLOADS, build_flows, make_data

        self.ops = {}
        wl = WORKLOADS[msg["workload"]]
        flows, _ = build_flows(wl, *_namespaces())
        weights = "own seeds"
        if msg.get("load"):
            state = torch.load(msg["load"])
            try:
                flows.load_state_dict(state)
                weights = "loaded from before"
            except RuntimeError:
                res = flows.load_state_dict(state, strict=False)
                weights = f"partly loaded ({len(res.missing_keys)} missing keys)"
        if msg.get("save"):
            torch.save(flows.state_dict(), msg["save"])
        self.ops = flow_ops(flows, make_data(wl, msg["batch"], torch.device("cpu")))
        return {"weights": weights}

    def time(self, op: str, inner: int, warmup: int = 0) -> Message:
        """Seconds per call of ``op`` over ``inner`` calls, after ``warmup`` untimed calls."""
        fn = self.ops[op]
        for _ in range(warmup):
            fn()
        start = self.clock()
        for _ in range(inner):
            fn()
        return {"seconds": (self.clock() - start) / inner}


def _namespaces() -> Tuple[Any, Any]:
    """``invertible.framework`` and ``invertible.modules`` of the tree on ``PYTHONPATH``."""
    import importlib

    return (importlib.import_module("invertible.framework"),
            importlib.import_module("invertible.modules"))


def serve(threads: int, clock: str) -> None:
    """Answer JSON requests on stdin, one per line; protocol lines only on the real stdout."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed (warnings, libraries) goes to stderr
    sys.path.insert(0, str(HERE))
    import invertible

    session = Session(threads, clock)
    _send(proto, {"ready": invertible.__file__})
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "build":
                reply = session.build(msg)
            elif msg["cmd"] == "time":
                reply = session.time(msg["op"], msg["inner"], msg.get("warmup", 0))
            else:
                return
        except Exception as exc:  # reported to the parent, which skips the workload
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        _send(proto, reply)


def _send(stream: IO[str], msg: Message) -> None:
    """One JSON line."""
    stream.write(json.dumps(msg) + "\n")
    stream.flush()


# ---------------------------------------------------------------------------- parent side

class Worker:
    """A worker process importing ``invertible`` from ``tree``/src."""

    def __init__(self, tree: Path, threads: int, clock: str) -> None:
        from malloc_env import malloc_environ

        env = {**malloc_environ(), "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads",
             str(threads), "--clock", clock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(HERE))
        self.imported = self._read()["ready"]

    def ask(self, **msg: Any) -> Message:
        """Send one request, return the reply (raises on a worker error)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def _read(self) -> Message:
        """The next reply line (the worker died if there is none)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        """Ask the worker to exit and wait for it."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def describe_tree(tree: Path) -> Dict[str, Any]:
    """The tree's path, git commit and whether it has uncommitted changes."""
    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                             check=False)
        return res.stdout.strip()

    return {"path": str(tree), "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--", "src"))}


def quartiles(values: Sequence[float]) -> Tuple[float, float]:
    """Median and interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return statistics.median(values), 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q[2] - q[0]


def compare_workload(workers: Dict[str, Worker], name: str, args: argparse.Namespace,
                     tmp: Path) -> Dict[str, Any]:
    """Build one workload in both trees, time its ops paired, summarise."""
    from workloads import WORKLOADS

    batch = max(1, WORKLOADS[name].batch // 16) if args.quick else WORKLOADS[name].batch
    path = str(tmp / f"{name}.pt")
    workers["before"].ask(cmd="build", workload=name, batch=batch, save=path)
    weights = workers["after"].ask(cmd="build", workload=name, batch=batch, load=path)["weights"]
    warmup = 1 if args.quick else 3
    inner = {}
    for op in args.ops:
        once = max(workers[s].ask(cmd="time", op=op, inner=1, warmup=warmup)["seconds"]
                   for s in SIDES)
        inner[op] = 1 if args.quick else max(1, min(200, round(args.target / max(once, 1e-9))))
    samples: Dict[Tuple[str, str], List[float]] = {(s, op): [] for s in SIDES for op in args.ops}
    for r in range(args.repeats):
        for op in args.ops:
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                reply = workers[side].ask(cmd="time", op=op, inner=inner[op])
                samples[(side, op)].append(reply["seconds"] * 1e3)
    result: Dict[str, Any] = {"batch": batch, "weights": weights, "ops": {}}
    for op in args.ops:
        before, after = samples[("before", op)], samples[("after", op)]
        entry: Dict[str, Any] = {"inner": inner[op], "samples_ms": {"before": before,
                                                                     "after": after}}
        for side, values in (("before", before), ("after", after)):
            entry[f"{side}_ms"], entry[f"{side}_iqr_ms"] = quartiles(values)
        entry["after/before"], entry["after/before_iqr"] = quartiles(
            [a / b for a, b in zip(after, before)])
        result["ops"][op] = entry
    return result


def format_table(results: Dict[str, Any]) -> str:
    """One row per (workload, op): both medians (IQR) and the paired ratio (IQR)."""
    rows = [f"{'work':<5}{'op':<9}{'before ms (IQR)':>20}{'after ms (IQR)':>20}"
            f"{'after/before (IQR)':>22}", "-" * 76]
    for name, res in results.items():
        if "error" in res:
            rows.append(f"{name:<5}FAILED: {res['error']}")
            continue
        for op, e in res["ops"].items():
            rows.append(f"{name:<5}{op:<9}{e['before_ms']:>12.2f} ({e['before_iqr_ms']:5.2f})"
                        f"{e['after_ms']:>12.2f} ({e['after_iqr_ms']:5.2f})"
                        f"{e['after/before']:>14.3f} ({e['after/before_iqr']:.3f})")
    return "\n".join(rows)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, help="source tree before the change (has src/)")
    p.add_argument("--after", type=Path, default=HERE.parent, help="tree after (default: this)")
    p.add_argument("--workloads", default="W1,W2,W3,W4,FF,CF")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--repeats", type=int, default=None, help="default 21 (quick: 2)")
    p.add_argument("--target", type=float, default=0.1, help="seconds per sample")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="batches / 16, 1 call per sample")
    p.add_argument("--json", default=str(HERE / "results" / "compare.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(list(argv))
    args.ops = args.ops.split(",")
    args.repeats = args.repeats or (2 if args.quick else 21)
    if args.threads > 1:
        args.clock = "wall"  # the thread CPU clock would miss the intra-op worker threads
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run both workers through every workload; exit status 0 when every workload compared."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        serve(args.threads, args.clock)
        return 0
    sys.path.insert(0, str(HERE))
    from workloads import WORKLOADS

    names = args.workloads.split(",")
    bad = [n for n in names if n not in WORKLOADS] + [o for o in args.ops if o not in OPS]
    if args.before is None or bad or not all((t / "src").is_dir()
                                             for t in (args.before, args.after)):
        print(f"compare_trees.py: error: need --before/--after trees with src/ and known "
              f"workloads/ops (unknown: {bad})", file=sys.stderr)
        return 2
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    workers = {side: Worker(trees[side], args.threads, args.clock) for side in SIDES}
    results: Dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                try:
                    results[name] = compare_workload(workers, name, args, Path(tmp))
                except RuntimeError as exc:
                    results[name] = {"error": str(exc)}
    finally:
        for worker in workers.values():
            worker.close()
    payload = {"suite": "invertible-compare-trees", "settings": {**vars(args), "trees": {
        side: {**describe_tree(trees[side]), "imported": workers[side].imported}
        for side in SIDES}}, "load_average_end": list(os.getloadavg()), "workloads": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=1, default=str) + "\n")
    for side in SIDES:
        print(f"{side}: {workers[side].imported}")
    print(format_table(results))
    print(f"JSON written to {args.json}")
    return 0 if results and not any("error" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from malloc_env import ensure_malloc_env

    if "--worker" not in sys.argv:  # workers get the settings from the parent's environment
        ensure_malloc_env(__file__, sys.argv[1:])
    sys.exit(main())
