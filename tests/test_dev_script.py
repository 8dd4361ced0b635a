"""The ``./dev`` script: its help, unknown commands, and the extra each command installs.

The installing commands run against a stand-in venv whose ``python`` only records its arguments,
so these tests take a second and install nothing. ``./dev dist`` (a release check that builds,
installs torch into a new venv and trains) is run by hand, never from here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

DEV = Path(__file__).resolve().parents[1] / "dev"
RECORDING_PYTHON = '#!/bin/sh\necho "$*" >> "$DEV_TEST_LOG"\n'

pytestmark = pytest.mark.skipif(
    not DEV.is_file() or shutil.which("bash") is None, reason="needs the checkout's ./dev and bash"
)


def run_dev(*argv: str, env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEV), *argv], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


@pytest.mark.parametrize(("argv", "status"), [([], 2), (["help"], 0), (["--help"], 0)])
def test_help_lists_the_commands_and_no_shell_code(argv: List[str], status: int) -> None:
    result = run_dev(*argv)
    assert result.returncode == status
    assert result.stdout.startswith("usage: ./dev COMMAND")
    for name in ("demo", "test", "docs", "dist", "help"):
        assert re.search(rf"^  {name}\b", result.stdout, re.MULTILINE), name
    assert "set -" not in result.stdout and "#" not in result.stdout


def test_an_unknown_command_says_so_on_stderr() -> None:
    result = run_dev("bogus")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("./dev: unknown command 'bogus'\nusage: ./dev COMMAND")


def test_each_command_installs_its_own_extra_again_after_pyproject_changes(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(RECORDING_PYTHON)
    python.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "INVERTIBLE_VENV": str(venv), "DEV_TEST_LOG": str(log)}

    def calls(*argv: str) -> List[str]:
        log.write_text("")
        assert run_dev(*argv, env=env).returncode == 0
        return log.read_text().splitlines()

    torch_check = "-c import torch"
    assert calls("demo", "--epochs", "1") == [
        torch_check, "-m pip install -q -e .[demo]", "-m invertible demo --epochs 1"]
    assert calls("demo") == [torch_check, "-m invertible demo"]  # installed already
    assert calls("test", "tests/test_cli.py") == [
        torch_check, "-m pip install -q -e .[test]", "-m mypy",
        "-m pytest -m slow or not slow -q tests/test_cli.py"]
    assert calls("docs") == [
        torch_check, "-m pip install -q -e .[docs]",
        "-m sphinx -W --keep-going -b html docs docs/_build/html"]
    (venv / ".invertible-installed-demo").write_text("checksum of an older pyproject.toml\n")
    assert calls("demo")[1] == "-m pip install -q -e .[demo]"
    assert calls("test")[1] == "-m mypy"  # the test extra's stamp is still current
