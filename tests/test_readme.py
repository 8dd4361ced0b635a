"""Every Python code block of the README runs (in order, sharing one namespace)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture
def no_real_freia(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide a real FrEIA imported by earlier tests: the README's alias block expects a fresh
    process, where ``freia_alias()`` refuses to shadow an already imported FrEIA."""
    for name in [n for n in sys.modules if n == "FrEIA" or n.startswith("FrEIA.")]:
        monkeypatch.delitem(sys.modules, name)


def test_readme_python_blocks_run(no_real_freia: None) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        if "import FrEIA.framework as Ff      # before" in block:  # the migration snippet
            block = "\n".join(line for line in block.splitlines() if "# before" not in line
                              and not line.startswith("import FrEIA.modules as Fm"))
        exec(compile(block, str(README), "exec"), namespace)
