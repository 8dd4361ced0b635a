"""The timed operations (train step, scoring, inverse), the subnet floor, timing and memory.

An *implementation* maps the three operation names to zero-argument callables. The flows of a
workload give one; the bare subnets (the floor) give another: exactly the subnet calls the flow
makes, on tensors of the recorded shapes, with the recorded ``requires_grad`` flags, followed by
the same backward and Adam step, so ``flow / floor`` is the cost of everything around the subnets.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = [
    "OPS",
    "Call",
    "Stats",
    "floor_ops",
    "flow_ops",
    "peak_memory",
    "record_calls",
    "stats",
    "time_once",
]

OPS = ("train", "score", "inverse")
Op = Callable[[], object]
Data = Sequence[Tuple[Tensor, Optional[Tensor]]]
LR = 1e-5


def _run(flow: nn.Module, x: Tensor, c: Optional[Tensor], rev: bool = False,
         jac: bool = True) -> Tuple[Tensor, Tensor]:
    """Call a FrEIA-style flow; returns ``(output tensor, log_det)``."""
    if c is None:
        out, log_det = flow(x, rev=rev, jac=jac)
    else:
        out, log_det = flow(x, c=[c], rev=rev, jac=jac)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out, log_det


def nll(flows: Iterable[nn.Module], data: Data) -> Tensor:
    """Standard-normal negative log-likelihood per dimension, summed over the flows."""
    total = torch.zeros((), device=data[0][0].device)
    for flow, (x, c) in zip(flows, data):
        z, log_det = _run(flow, x, c)
        dims = z[0].numel()
        total = total + (0.5 * z.pow(2).flatten(1).sum(1) - log_det).mean() / dims
    return total


def _adam(module: nn.Module) -> torch.optim.Optimizer:
    """Adam over the trainable parameters (FrEIA's frozen Parameters get no state)."""
    return torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=LR)


def flow_ops(flows: nn.ModuleList, data: Data,
             compile_fn: Optional[Callable[..., Any]] = None) -> Dict[str, Op]:
    """The three operations on ``flows`` (optionally each flow wrapped by ``compile_fn``)."""
    runners = [compile_fn(f) if compile_fn is not None else f for f in flows]
    opt = _adam(flows)
    with torch.no_grad():
        zs = [_run(f, x, c)[0] for f, (x, c) in zip(runners, data)]

    def train() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = nll(runners, data)
        loss.backward()
        opt.step()
        return loss

    def score() -> List[Tensor]:
        with torch.no_grad():
            return [_run(f, x, c)[1] for f, (x, c) in zip(runners, data)]

    def inverse() -> List[Tensor]:
        with torch.no_grad():
            return [_run(f, z, c, rev=True, jac=False)[0]
                    for f, z, (_, c) in zip(runners, zs, data)]

    return {"train": train, "score": score, "inverse": inverse}


@dataclass(frozen=True)
class Call:
    """One subnet call: which subnet, its input shape and grad flag, its output shape."""

    index: int
    shape: Tuple[int, ...]
    requires_grad: bool
    out_shape: Tuple[int, ...]


def record_calls(flows: nn.ModuleList, subnets: Sequence[nn.Module], data: Data,
                 rev: bool) -> List[Call]:
    """The subnet calls of one forward (with grad) or one inverse (no grad) of ``flows``."""
    calls: List[Call] = []

    def hook(index: int) -> Callable:
        def record(_m: nn.Module, inputs: Tuple[Tensor, ...], out: Tensor) -> None:
            (x,) = inputs
            calls.append(Call(index, tuple(x.shape), x.requires_grad, tuple(out.shape)))
        return record

    with torch.no_grad():
        zs = [_run(flow, x, c)[0] for flow, (x, c) in zip(flows, data)]
    handles = [s.register_forward_hook(hook(i)) for i, s in enumerate(subnets)]
    try:
        if rev:
            with torch.no_grad():
                for flow, z, (_, c) in zip(flows, zs, data):
                    _run(flow, z, c, rev=True, jac=False)
        else:
            nll(flows, data)
    finally:
        for h in handles:
            h.remove()
    return calls


def floor_ops(subnets: Sequence[nn.Module], fwd: Sequence[Call], inv: Sequence[Call],
              device: torch.device) -> Dict[str, Op]:
    """The bare subnets doing exactly the flow's subnet calls (own copies of the weights)."""
    nets = nn.ModuleList(copy.deepcopy(list(subnets)))
    opt = _adam(nets)
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(c.shape, generator=gen).to(device).requires_grad_(c.requires_grad)
          for c in fwd]
    grads = [torch.randn(c.out_shape, generator=gen).to(device) for c in fwd]
    inv_xs = [torch.randn(c.shape, generator=gen).to(device) for c in inv]

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        for x in xs:
            x.grad = None
        outs = [nets[c.index](x) for c, x in zip(fwd, xs)]
        torch.autograd.backward(outs, grads)
        opt.step()

    def forward_only(calls: Sequence[Call], inputs: Sequence[Tensor]) -> Op:
        def run() -> None:
            with torch.no_grad():
                for c, x in zip(calls, inputs):
                    nets[c.index](x)  # outputs dropped at once, as a flow consumes them
        return run

    return {"train": train, "score": forward_only(fwd, [x.detach() for x in xs]),
            "inverse": forward_only(inv, inv_xs)}


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(op: Op, inner: int, device: torch.device) -> float:
    """Seconds per call of ``op``, averaged over ``inner`` back-to-back calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(inner):
        op()
    _sync(device)
    return (time.perf_counter() - start) / inner


@dataclass
class Stats:
    """Median and interquartile range of the per-call times (seconds)."""

    median: float
    iqr: float
    samples: List[float] = field(default_factory=list)
    inner: int = 1


def stats(samples: List[float], inner: int) -> Stats:
    """Summarise timing samples."""
    if len(samples) >= 2:
        q = statistics.quantiles(samples, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = 0.0
    return Stats(statistics.median(samples), iqr, list(samples), inner)


def peak_memory(op: Op, device: torch.device) -> int:
    """Peak tensor memory (bytes) that one call of ``op`` holds above what existed before it.

    CPU: the profiler's allocation events (``profile_memory``), whose running total counts every
    tensor allocation and free from the start of the profile; GPU: ``max_memory_allocated``.
    Allocator caches, fragmentation and non-tensor memory are not counted.
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        op()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        op()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.remove(path)
    mem = [e["args"] for e in events
           if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    if not mem:
        return 0
    # the running total carries over from earlier profiles: measure from just before the first
    base = mem[0]["Total Allocated"] - mem[0]["Bytes"]
    return int(max(0, *(m["Total Allocated"] - base for m in mem)))
