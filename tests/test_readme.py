"""Every Python code block of the README runs (in order, sharing one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_blocks_run() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        if "import FrEIA" in block:  # the migration snippet shows both import styles
            block = "\n".join(line for line in block.splitlines() if "FrEIA" not in line)
        exec(compile(block, str(README), "exec"), namespace)
