"""The command line: the demo runs end to end (short) and bad options exit non-zero."""

from __future__ import annotations

import pytest

from invertible.__main__ import main


def test_demo_runs_and_reports(capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--steps", "30", "--blocks", "2"]) == 0
    out = capsys.readouterr().out
    assert "test NLL" in out and "inverse error" in out


def test_bad_options_exit_nonzero(capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--steps", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
