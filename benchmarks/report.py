"""The machine record and the printed table of a benchmark run."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from typing import Any, Dict, List, Optional

import torch

__all__ = ["format_table", "machine_info", "notes", "ratio"]

LABELS = {"freia": "FrEIA", "invertible": "invertible", "floor": "floor"}


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(threads: int, device: torch.device) -> Dict[str, object]:
    """Where and when the numbers were taken."""
    info: Dict[str, object] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": threads,
        "torch": torch.__version__,
        "freia": _version("FrEIA"),
        "invertible": _version("invertible"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_",
                                                       "MALLOC_TRIM_THRESHOLD_")},
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """``a / b`` or None."""
    return None if a is None or b is None or b == 0 else a / b


def _cell(entry: Optional[Dict[str, object]]) -> str:
    """``median (IQR)`` in ms, or the error."""
    if entry is None:
        return "-"
    if "error" in entry:
        return "FAILED: " + str(entry["error"])[:28]
    return f"{entry['median_ms']:.2f} ({entry['iqr_ms']:.2f})"


def _num(value: Optional[float], fmt: str = "{:.2f}") -> str:
    """A number or a dash."""
    return "-" if value is None else fmt.format(value)


def _mem(entry: Optional[Dict[str, object]]) -> str:
    """Peak memory in MB or a dash."""
    if entry is None or entry.get("peak_mem_mb") is None:
        return "-"
    return f"{entry['peak_mem_mb']:.1f}"


def format_table(results: Dict[str, Dict[str, Any]], compiled: bool) -> str:
    """One row per workload and operation (and per compiled variant when asked)."""
    head = (f"{'work':<4} {'op':<14} {'FrEIA ms (IQR)':>17} {'invertible ms (IQR)':>20} "
            f"{'floor ms':>15} {'inv/FrEIA':>9} {'FrEIA/fl':>8} {'inv/fl':>7}  "
            f"{'peak MB F / inv / floor':>24}")
    lines = [head, "-" * len(head)]
    suffixes = ["", "+compile"] if compiled else [""]
    for name, res in results.items():
        impls: Dict[str, Dict[str, Dict[str, object]]] = res["impls"]
        for suffix in suffixes:
            for op, ratios in res["ratios"].items():
                f, i = impls.get("freia" + suffix, {}), impls.get("invertible" + suffix, {})
                fl = impls.get("floor", {})
                r = ratios if not suffix else res["ratios_compiled"].get(op, {})
                lines.append(
                    f"{name:<4} {op + suffix:<14} {_cell(f.get(op)):>17} {_cell(i.get(op)):>20} "
                    f"{_cell(fl.get(op)):>15} {_num(r.get('invertible/freia')):>9} "
                    f"{_num(r.get('freia/floor')):>8} {_num(r.get('invertible/floor')):>7}  "
                    f"{_mem(f.get(op)) + ' / ' + _mem(i.get(op)) + ' / ' + _mem(fl.get(op)):>24}"
                )
        for impl, msg in res.get("errors", {}).items():
            lines.append(f"{name:<4} {impl} failed: {msg}")
    return "\n".join(lines)


def notes(results: Dict[str, Dict[str, object]]) -> List[str]:
    """Per-workload notes (weights transferred or not, batch)."""
    out = []
    for name, res in results.items():
        out.append(f"{name}: {res['title']}, batch {res['batch']}, weights {res['weights']}")
    return out
