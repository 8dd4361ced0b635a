"""The command line: both demos end to end (fast), `check` and `check_module`, `bench` writing
nothing into the checkout, one-line errors that point to the right help."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import invertible.cli.check as check_cli
from cli_blocks import LearnedScale, Scale2, WrongLogDet
from invertible.__main__ import main
from invertible._check_module import CHECKS, check_module
from invertible.cli import SUBCOMMANDS, bench, build_parser
from invertible.demo._metrics import auroc
from invertible.demo._progress import ProgressBar
from invertible.demo.digits import ALPHA, LEVELS, dequantise, digits_bits_per_dim
from invertible.modules.coupling_layers import GLOWCouplingBlock
from subnets import dense_subnet

BLOCKS_FILE = str(Path(__file__).with_name("cli_blocks.py"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def value(pattern: str, text: str) -> float:
    """The number after ``pattern`` in ``text``."""
    match = re.search(pattern + r"\s+(-?[0-9.]+(?:e[-+]?\d+)?)", text)
    assert match, f"{pattern!r} not found in:\n{text}"
    return float(match.group(1))


def assert_pngs(folder: Path, names: List[str]) -> None:
    for name in names:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name


# --- demo ------------------------------------------------------------------------------------


def test_demo_digits_fast_mode_reports_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "digits"
    assert main(["demo", "--epochs", "3", "--blocks", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert 0.0 <= value("image-level AUROC", text) <= 1.0
    assert 0.0 < value("test NLL, normal", text) < 20.0  # bits/dim of 17-level pixels
    assert "bits/dim" in text and "AUROC per digit" in text
    assert value(r"inverse error\s+max\|x - f\^-1\(f\(x\)\)\| =", text) < 1e-3
    assert "wall time" in text and f"plots written to {out.resolve()}" in text
    assert "loss" in captured.err and "100%" in captured.err  # the progress bar
    assert "3 epochs" in text and "epoch 3/3" in captured.err  # header and bar agree
    assert_pngs(out, ["samples.png", "scores.png", "loss.png"])


def test_demo_moons_fast_mode_reports_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "moons"
    argv = ["demo", "--data", "moons", "--epochs", "1", "--blocks", "2", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert 0.0 <= value("AUROC", captured.out) <= 1.0
    assert "bits/dim" in captured.out and "nats" in captured.out
    assert value(r"inverse error\s+max\|x - f\^-1\(f\(x\)\)\| =", captured.out) < 1e-3
    assert captured.err == ""  # --no-progress
    assert_pngs(out, ["density.png", "samples.png", "scores.png", "loss.png"])


class _Identity(nn.Module):
    """A "flow" z = y with log-det 0, so the bits/dim are those of the logit map alone."""

    def forward(self, y: Tensor) -> tuple:
        return y.reshape(len(y), -1), torch.zeros(len(y))


def test_bits_per_dim_includes_dequantisation_and_logit_jacobian() -> None:
    levels = torch.randint(0, LEVELS, (5, 1, 8, 8)).float()
    bpd = digits_bits_per_dim(_Identity(), levels, torch.Generator().manual_seed(3))
    x = dequantise(levels, torch.Generator().manual_seed(3)).requires_grad_(True)
    y = torch.logit(ALPHA + (1 - 2 * ALPHA) * x)
    (dy_dx,) = torch.autograd.grad(y.sum(), x)  # elementwise map: the diagonal Jacobian
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(y).sum((1, 2, 3))
    log_p = log_p + dy_dx.log().sum((1, 2, 3)) - 64 * math.log(LEVELS)  # cell volume 17^-64
    torch.testing.assert_close(bpd, (-log_p / (64 * math.log(2))).detach())


def test_auroc_matches_the_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    normal, anomalous = rng.integers(0, 5, 40), rng.integers(2, 8, 30)  # many ties
    pairs = (anomalous[None, :] > normal[:, None]) + 0.5 * (anomalous[None, :] == normal[:, None])
    assert auroc(normal, anomalous) == pytest.approx(pairs.mean())
    assert auroc(np.zeros(3), np.ones(2)) == 1.0


def test_progress_bar_writes_about_ten_lines_when_not_a_terminal(
    capsys: pytest.CaptureFixture,
) -> None:
    bar = ProgressBar(400, "train", "bits/dim", stream=sys.stderr)
    for k in range(400):
        bar.update(3.0 - k / 400)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert 10 <= len(lines) <= 12
    assert "100%" in lines[-1] and "step 400/400" in lines[-1] and "bits/dim" in lines[-1]
    assert "epoch" not in lines[-1]  # steps alone unless the epochs are given


def test_progress_bar_counts_epochs_when_given() -> None:
    bar = ProgressBar(400, stream=None, epochs=200)
    assert "epoch 0/200  step 0/400" in bar.line()
    for k, epoch in ((1, 1), (1, 1), (1, 2), (397, 200)):
        for _ in range(k):
            bar.update(1.0)
        assert f"epoch {epoch}/200  step {bar.count}/400" in bar.line()


# --- check -----------------------------------------------------------------------------------


def test_check_passes_on_a_built_in_block(capsys: pytest.CaptureFixture) -> None:
    argv = ["check", "invertible.modules:GLOWCouplingBlock", "--dims", "4", "--subnet", "dense"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "12 passed, 0 failed, 1 skipped" in out
    assert re.search(r"log_det_forward\s+.*\s+PASS", out)


def test_check_with_conditions_and_images(capsys: pytest.CaptureFixture) -> None:
    argv = ["check", "invertible.modules:AllInOneBlock", "--dims", "4,4,4", "--cond-dims",
            "2,4,4", "--subnet", "conv", "--kwargs", '{"affine_clamping": 1.5}', "--batch", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "13 passed, 0 failed, 0 skipped" in out and "dims_c=[(2, 4, 4)]" in out


def test_check_fails_on_a_broken_user_block_from_a_file(capsys: pytest.CaptureFixture) -> None:
    assert main(["check", f"{BLOCKS_FILE}:WrongLogDet", "--dims", "4"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"log_det_forward\s+.*\s+FAIL", out)
    assert re.search(r"log_det_reverse\s+.*\s+FAIL", out)
    assert re.search(r"inverse_x\s+.*\s+PASS", out)
    assert "2 failed" in out and "differs from autograd slogdet" in out


def test_check_accepts_a_factory_and_a_user_block_with_a_float_log_det(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["check", "cli_blocks:make_scale_flow"]) == 0
    assert main(["check", f"{BLOCKS_FILE}:Scale2", "--dims", "2,3", "--skip", "pickle"]) == 0
    out = capsys.readouterr().out
    assert "SequenceINN  dims_in=[(3,)]" in out and "skipped on request" in out


def test_check_module_api_report() -> None:
    good = check_module(GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet))
    assert good.passed and not good.failures and good["conditions"].passed is None
    assert [r.name for r in good.results] == [name for name, _, _ in CHECKS]
    bad = check_module(WrongLogDet([(3,)]), fresh=WrongLogDet([(3,)]))
    assert not bad.passed and bad["log_det_forward"].passed is False
    assert {r.name for r in bad.failures} == {"log_det_forward", "log_det_reverse"}
    assert "FAIL" in str(bad) and "WrongLogDet" in str(bad)
    with pytest.raises(AssertionError, match="log_det_forward"):
        bad.raise_if_failed()
    with pytest.raises(ValueError, match="unknown check"):
        check_module(Scale2([(2,)]), skip=["nope"])
    module = LearnedScale([(2,)])
    assert check_module(module).passed and module.s.dtype == torch.float64  # converted in place


class _InPlace(Scale2):
    """Broken: scales the caller's input tensor in place after computing its output."""

    def forward(self, x, rev=False, jac=True):  # type: ignore[no-untyped-def]
        outputs, log_det = super().forward(x, rev=rev, jac=jac)
        x[0].mul_(1.5)
        return outputs, log_det


class _Crashes(Scale2):
    """Broken: the reverse direction raises."""

    def forward(self, x, rev=False, jac=True):  # type: ignore[no-untyped-def]
        if rev:
            raise IndexError("no reverse here")
        return super().forward(x, rev=rev, jac=jac)


def test_check_module_turns_crashes_and_mutations_into_failures() -> None:
    report = check_module(_InPlace([(3,)]))
    assert report["inputs_unchanged"].passed is False
    crashed = check_module(_Crashes([(3,)]))
    assert crashed["inverse_z"].passed is False and crashed["output_dims"].passed
    assert crashed["inverse_z"].message == "IndexError: no reverse here"
    assert check_module(Scale2([(3,)]), dims_in=[(3,)], batch=1).passed



class _NoLogDet(Scale2):
    """Broken: returns no log-det, even with jac=True."""

    def forward(self, x, rev=False, jac=True):  # type: ignore[no-untyped-def]
        return super().forward(x, rev=rev, jac=jac)[0], None


def test_check_module_failure_messages_are_short_and_name_the_block() -> None:
    """Log-det mismatches print a few values to 6 digits; a missing log-det is named, not a
    bare assertion."""
    bad = check_module(WrongLogDet([(3,)]), batch=9)
    message = bad["log_det_forward"].message
    assert message.startswith("WrongLogDet (forward): log-det [")
    lists = re.findall(r"\[([^\]]*)\]", message)
    assert len(lists) == 2 and all(part.endswith(", ...") for part in lists)  # 6 of 9 shown
    values = [v for part in lists for v in part.split(", ")[:-1]]
    assert len(values) == 12  # 6 significant digits each, not repr's 17:
    assert all(len(v.lstrip("-").replace(".", "").lstrip("0")) <= 6 for v in values)
    none = check_module(_NoLogDet([(3,)]))
    assert none["log_det_forward"].message == (
        "_NoLogDet: returned no log-det (None) with jac=True, rev=False")


# --- errors: one line, non-zero, no traceback -----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "status", "fragment"),
    [
        ([], 2, "required: COMMAND"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["demo", "--epochs", "0"], 2, "expected a positive integer"),
        (["demo", "--data", "mnist"], 2, "invalid choice: 'mnist'"),
        (["demo", "--normal-class", "12"], 2, "invalid choice: 12"),
        (["demo", "--device", "nope"], 2, "unknown device 'nope'"),
        (["demo", "--data", "moons", "--normal-class", "3"], 2, "--data digits only"),
        (["demo", "--out", BLOCKS_FILE], 1, "cannot create the output folder"),
        (["check", "no_colon"], 2, "expected MODULE:CLASS"),
        (["check", "no_such_module_xyz:Block", "--dims", "4"], 2, "no module named"),
        (["check", "invertible.modules:Nope", "--dims", "4"], 2, "has no attribute 'Nope'"),
        (["check", "/no/such/file.py:Block"], 2, "no such file"),
        (["check", f"{Path(BLOCKS_FILE).parent}/:Block"], 2, "not a file"),
        (["check", "invertible.modules:GLOWCouplingBlock"], 2, "--dims is needed"),
        (["check", "invertible.modules:GLOWCouplingBlock", "--dims", "4"], 1,
         "building invertible.modules:GLOWCouplingBlock failed: TypeError"),
        (["check", "invertible.modules:GLOWCouplingBlock", "--dims", "a,b"], 2, "--dims"),
        (["check", "invertible.modules:Split", "--dims", "4", "--kwargs", "{bad"], 2,
         "not valid JSON"),
        (["check", "invertible.modules:Split", "--dims", "4", "--skip", "x"], 2, "--skip"),
        (["check", "invertible:__version__"], 2, "not a class or factory"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(
    argv: List[str], status: int, fragment: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == status
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err and "Traceback" not in err
    assert err.startswith("invertible")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_an_unknown_option_points_to_the_subcommands_help(
    name: str, capsys: pytest.CaptureFixture
) -> None:
    argv = [name, "x:y"] if name == "check" else [name]  # check needs its target first
    assert main([*argv, "--bogus"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"invertible {name}: error: unrecognized arguments: --bogus "
        f"(see: invertible {name} --help)"
    )
    assert main(["--bogus", *argv]) == 2  # before the subcommand: the top-level option list
    assert capsys.readouterr().err.strip().endswith("(see: invertible --help)")


def test_a_user_file_that_raises_on_import(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "broken_blocks.py"
    bad.write_text("raise RuntimeError('boom\\nsecond line')\n")
    assert main(["check", f"{bad}:Block", "--dims", "4"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"invertible check: error: importing '{bad}' failed: RuntimeError: boom second line"
    )


def test_unexpected_errors_are_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def crash(args: object) -> int:
        raise RuntimeError("internal\nproblem")

    monkeypatch.setattr(check_cli, "run", crash)
    monkeypatch.delenv("INVERTIBLE_DEBUG", raising=False)
    assert main(["check", "x:y"]) == 1
    err = capsys.readouterr().err
    assert err.strip().startswith("invertible check: error: RuntimeError: internal problem")
    monkeypatch.setenv("INVERTIBLE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="internal"):
        main(["check", "x:y"])


def test_demo_names_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name)
    )
    assert main(["demo"]) == 1
    assert "needs scikit-learn: pip install 'invertible[demo]'" in capsys.readouterr().err


def test_every_subcommand_module_has_the_protocol() -> None:
    parser, runners = build_parser()
    assert set(runners) == set(SUBCOMMANDS)
    for module in runners.values():
        assert callable(module.add_parser) and callable(module.run)
    assert main(["--version"]) == 0


def test_python_dash_m_entry_point_in_a_fresh_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invertible", "check", "invertible.modules:Nope", "--dims", "4"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "invertible check: error: 'invertible.modules' has no attribute 'Nope'"
    ]


# --- bench -----------------------------------------------------------------------------------


def test_bench_quick_writes_only_to_the_user_cache_and_prints_no_profiler_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    suite = bench.find_suite()
    if suite is None:
        pytest.skip("needs the repository's benchmarks/ folder (an installed wheel has none)")
    in_checkout = suite.parent / "results" / "quick.json"
    before = in_checkout.stat().st_mtime_ns if in_checkout.exists() else None
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCH_CPP_LOG_LEVEL", raising=False)
    monkeypatch.delenv("INVERTIBLE_BENCH_REEXEC", raising=False)
    quick = ["bench", "--quick", "--workloads", "W1", "--repeats", "1", "--threads", "1"]
    assert main(quick) == 0
    out, err = capfd.readouterr()
    cached = tmp_path / "cache" / "invertible" / "bench" / "quick.json"
    assert f"JSON written to {cached}" in out and cached.is_file()
    assert "Memory block" not in err and "CPUAllocator" not in err, err
    after = in_checkout.stat().st_mtime_ns if in_checkout.exists() else None
    assert after == before and os.listdir(work) == []
    assert main([*quick, "--builtin"]) == 0  # the subset writes nothing without --json
    assert os.listdir(work) == [] and "W1" in capfd.readouterr().out
