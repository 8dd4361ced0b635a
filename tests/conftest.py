"""Test-session settings: one intra-op thread (tiny float64 tensors; threads only add overhead),
the hypothesis profiles ``ci`` (default, fast) and ``long`` (``HYPOTHESIS_PROFILE=long``), the
quick subset, and memory handed back after every test module, so the whole run stays as small as
its largest file.

The quick subset for the inner loop is plain ``pytest`` (``-m 'not slow'`` from pyproject.toml):
every test but those marked ``slow``, which are integration runs (compiling, exporting,
subprocesses, several processes, long numeric scenarios) and repetitions of the property suite.
``./dev test`` (``-m "slow or not slow"``) runs everything, as CI does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from typing import Iterator, List

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile(
    "ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: Test modules that are integration runs, not the inner loop: all their tests are ``slow``.
SLOW_MODULES = {
    "test_compile.py": "torch.compile of a container around every public block",
    "test_export.py": "ONNX export of each network, run in onnxruntime",
    "test_memory_efficient.py": "gradients of every container case twice, memory in subprocesses",
    "test_examples.py": "every example script in a subprocess",
    "test_readme.py": "the README's code blocks, which train",
    "test_cli.py": "both demos end to end",
    "test_ddp.py": "two-process DDP groups",
    "test_benchmarks.py": "the benchmark suite and `invertible bench`",
}


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Mark every test of the :data:`SLOW_MODULES` ``slow``."""
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


#: glibc's ``malloc_trim`` (``None`` elsewhere): it returns the C heap's free pages to the
#: system. glibc keeps freed memory in the process, so after one module peaked at a few GB the
#: run would stay that large to its end although the tensors are gone.
_LIBC = ctypes.util.find_library("c")
MALLOC_TRIM = getattr(ctypes.CDLL(_LIBC), "malloc_trim", None) if _LIBC else None

#: Growth of the resident memory during a module above which its cycles are collected (a full
#: collection costs about 0.1 s, too much to pay after each of the many small modules).
COLLECT_ABOVE = 64 * 2**20


def _resident_bytes() -> int:
    """The process's resident memory (Linux); -1 where unknown."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return -1


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_module() -> Iterator[None]:
    """After each test module: drop compiled graphs and their caches (only if Dynamo was loaded:
    ``torch.compiler.reset``), collect reference cycles if the module grew the process (or its
    size is unknown), and trim the heap."""
    start = _resident_bytes()
    yield
    if "torch._dynamo" in sys.modules:
        torch.compiler.reset()
    if start < 0 or _resident_bytes() - start > COLLECT_ABOVE:
        gc.collect()
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
