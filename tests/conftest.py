"""Test-session settings: one intra-op thread (tiny float64 tensors; threads only add overhead),
the hypothesis profiles ``ci`` (default, fast) and ``long`` (``HYPOTHESIS_PROFILE=long``), and
memory handed back after every test module, so the whole run stays as small as its largest file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from typing import Callable, Iterator

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


def _heap_trimmer() -> Callable[[int], int]:
    """glibc's ``malloc_trim``, which returns the C heap's free pages to the system; a no-op
    elsewhere.

    glibc keeps freed memory in the process: after one test module peaked at a few GB, the
    process would stay that large for the rest of the run although the tensors are gone.
    """
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return trim if trim is not None else _no_trim


def _no_trim(pad: int) -> int:
    return 0


_TRIM_HEAP = _heap_trimmer()


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_module() -> Iterator[None]:
    """After each test module: drop compiled graphs and their caches (only if some test compiled:
    ``torch.compiler.reset``), collect reference cycles, and trim the heap."""
    yield
    if "torch._dynamo" in sys.modules:
        torch.compiler.reset()
    gc.collect()
    _TRIM_HEAP(0)
