"""Every Python code block of the README runs (in order, sharing one namespace)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from invertible.framework import SequenceINN
from invertible.modules import AllInOneBlock

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture
def no_real_freia(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide a real FrEIA imported by earlier tests: the README's alias block expects a fresh
    process, where ``freia_alias()`` refuses to shadow an already imported FrEIA."""
    for name in [n for n in sys.modules if n == "FrEIA" or n.startswith("FrEIA.")]:
        monkeypatch.delitem(sys.modules, name)


def linear(c_in: int, c_out: int) -> nn.Module:
    return nn.Linear(c_in, c_out)


def small_flow() -> SequenceINN:
    """A stand-in for the user's network of the README's 0.2-checkpoint snippet."""
    torch.manual_seed(0)
    flow = SequenceINN(2)
    for _ in range(2):
        flow.append(AllInOneBlock, subnet_constructor=linear)
    return flow


def test_readme_python_blocks_run(no_real_freia: None, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        if "import FrEIA.framework as Ff      # before" in block:  # the migration snippet
            block = "\n".join(line for line in block.splitlines() if "# before" not in line
                              and not line.startswith("import FrEIA.modules as Fm"))
        if "load_freia_02_checkpoint(model, " in block:  # the user's network and 0.2 file
            namespace["build_flow"] = small_flow
            torch.save(small_flow().state_dict(), tmp_path / "flow_freia02.pt")
        exec(compile(block, str(README), "exec"), namespace)
