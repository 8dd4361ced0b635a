"""glibc allocator settings for timing runs, shared by every script of the suite.

Without them glibc hands large freed blocks back to the kernel at once, so every training step
pays fresh page faults for its activations, and how many depends on the allocation pattern of
the library under test: noise that is not the library's speed. With both thresholds at 4 GiB a
freed 100 MB block stays in the process and is reused. glibc reads the variables at start-up
only, so a script that finds them unset re-executes itself with them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Sequence

__all__ = ["MALLOC_ENV", "REEXEC_FLAG", "ensure_malloc_env", "malloc_environ"]

FOUR_GIB = str(4 << 30)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": FOUR_GIB, "MALLOC_TRIM_THRESHOLD_": FOUR_GIB}
#: Set on the re-executed process, so a platform that drops the variables cannot loop.
REEXEC_FLAG = "INVERTIBLE_BENCH_REEXEC"


def malloc_environ() -> Dict[str, str]:
    """This process's environment plus the allocator settings (and the profiler kept quiet)."""
    return {"KINETO_LOG_LEVEL": "6", **os.environ, **MALLOC_ENV}


def ensure_malloc_env(script: str, argv: Sequence[str]) -> None:
    """Re-execute ``script`` with ``argv`` under :data:`MALLOC_ENV` unless it is in force."""
    if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()) or os.environ.get(REEXEC_FLAG):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, str(Path(script).resolve()), *argv],
              {**malloc_environ(), REEXEC_FLAG: "1"})
