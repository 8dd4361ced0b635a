"""``python -m invertible.compat SCRIPT|-m MODULE [ARGS...]``: run FrEIA code with the alias.

The entry point lives in its own module, not under ``if __name__ == "__main__"`` in
:mod:`invertible.compat`: ``import invertible`` already imports that package, so ``runpy`` would
run a second copy of it as ``__main__`` (and warn about it) whose alias finder and switches would
not be the ones ``invertible.compat`` reports on. Here the one imported copy does the work.
"""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
