"""torch.profiler (CPU) summaries of training steps: where the time goes, as text.

Subnet calls are labelled while profiling: every module tagged by the workloads' subnet recorder
(attribute ``SUBNET_TAG``) runs inside ``record_function("subnet")``. A forward op under that label
is *subnet* work; a backward op is subnet work when its autograd node was created by such an op
(matched by the autograd sequence number). Everything else is the flow's own work: coupling
arithmetic, copies, concatenations, permutations, the loss, autograd bookkeeping.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

__all__ = ["SUBNET_KERNELS", "SUBNET_LABEL", "SUBNET_TAG", "phases", "profile_step", "summarise"]

SUBNET_LABEL = "subnet"
#: Attribute set on every subnet the workloads build (see ``workloads.SubnetRecorder``).
SUBNET_TAG = "_is_bench_subnet"
#: Fallback when no subnet label was recorded: ops that do the subnets' arithmetic by name.
SUBNET_KERNELS = (
    "aten::addmm", "aten::mm", "aten::mkldnn_convolution", "aten::convolution_backward",
    "aten::threshold_backward", "aten::clamp_min",
)
PHASES = ("forward", "backward", "optimizer")


@contextmanager
def _labelled_subnets() -> Iterator[None]:
    """Run every tagged subnet inside ``record_function(SUBNET_LABEL)`` (global module hooks)."""
    stack: List[Any] = []

    def enter(module: nn.Module, _inputs: Any) -> None:
        if getattr(module, SUBNET_TAG, False):
            stack.append(record_function(SUBNET_LABEL).__enter__())

    def leave(module: nn.Module, _inputs: Any, _out: Any) -> None:
        if getattr(module, SUBNET_TAG, False) and stack:
            stack.pop().__exit__(None, None, None)

    handles = [nn.modules.module.register_module_forward_pre_hook(enter),
               nn.modules.module.register_module_forward_hook(leave)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def profile_step(step: Callable[[], object], steps: int = 5, warmup: int = 3) -> object:
    """Profile ``steps`` calls of ``step`` after ``warmup`` unprofiled ones."""
    for _ in range(warmup):
        step()
    with _labelled_subnets(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return prof


def _root_and_labelled(event: Any) -> Tuple[Any, bool]:
    """The outermost ancestor of ``event`` and whether the chain has the subnet label."""
    labelled, node = event.name == SUBNET_LABEL, event
    while node.cpu_parent is not None:
        node = node.cpu_parent
        labelled = labelled or node.name == SUBNET_LABEL
    return node, labelled


def phases(prof: Any) -> Dict[str, Dict[str, float]]:
    """Self CPU microseconds per phase (forward incl. loss, backward, optimizer), split into
    subnet work and the rest."""
    events = list(prof.events())
    classified = [(e, *_root_and_labelled(e)) for e in events]
    subnet_seq: Set[int] = {e.sequence_nr for e, _, lab in classified
                            if lab and e.sequence_nr >= 0}
    by_label = any(lab for _, _, lab in classified)
    out = {ph: {"subnet": 0.0, "other": 0.0} for ph in PHASES}
    for e, root, lab in classified:
        if root.name.startswith("Optimizer."):
            phase, sub = "optimizer", False
        elif root.name.startswith("autograd::engine"):
            phase = "backward"
            sub = root.sequence_nr in subnet_seq if by_label else e.name in SUBNET_KERNELS
        else:
            phase, sub = "forward", lab if by_label else e.name in SUBNET_KERNELS
        out[phase]["subnet" if sub else "other"] += float(e.self_cpu_time_total)
    return out


def _rows(prof: Any) -> Tuple[float, List[Tuple[str, float, int]]]:
    """Total self CPU time (us) and ``(name, self_us, calls)`` per op, largest first."""
    rows = [(e.key, float(e.self_cpu_time_total), int(e.count)) for e in prof.key_averages()]
    rows.sort(key=lambda r: -r[1])
    return sum(r[1] for r in rows), rows


def summarise(prof: Any, title: str, steps: int, top: int = 25) -> Tuple[str, Dict[str, Any]]:
    """A text report (header, phase split, top ops, torch's table) and its numbers as a dict."""
    total, rows = _rows(prof)
    split = phases(prof)
    ms = {ph: {k: v / 1e3 / steps for k, v in d.items()} for ph, d in split.items()}
    subnet = sum(d["subnet"] for d in ms.values())
    per_step = total / 1e3 / steps
    lines = [title, f"{steps} steps profiled; total self CPU {per_step:.2f} ms/step",
             f"inside the subnets: {subnet:.2f} ms/step ({100 * subnet / per_step:.1f} %); "
             f"outside (flow arithmetic, loss, autograd bookkeeping, optimizer): "
             f"{per_step - subnet:.2f} ms/step", "",
             f"{'phase':<10} {'subnet ms':>10} {'other ms':>10}"]
    lines += [f"{ph:<10} {d['subnet']:>10.3f} {d['other']:>10.3f}" for ph, d in ms.items()]
    lines += ["", f"{'op':<48} {'self ms/step':>12} {'share':>7} {'calls/step':>10}"]
    top_rows = []
    for name, us, calls in rows[:top]:
        lines.append(f"{name[:48]:<48} {us / 1e3 / steps:>12.3f} {100 * us / total:>6.1f}%"
                     f" {calls / steps:>10.1f}")
        top_rows.append({"op": name, "self_ms_per_step": us / 1e3 / steps,
                         "share": us / total, "calls_per_step": calls / steps})
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    text = "\n".join(lines) + "\n\ntorch.profiler table (totals over all steps):\n" + table
    summary = {"ms_per_step": per_step, "subnet_share": subnet / per_step,
               "phases_ms_per_step": ms, "top": top_rows}
    return text, summary
