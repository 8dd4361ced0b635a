"""The scripts in examples/ run to the end in their ``--fast`` mode, print their key numbers and,
with ``--plot DIR``, write their figure as a PNG."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NUMBER = r"(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)"

#: script -> (needs scikit-learn, the PNG its --plot writes, labels of the numbers it must print)
SCRIPTS = {
    "density_estimation_2d": (False, "density_2d.png", [
        "test NLL flow (nats/sample)", "test NLL Gaussian fit (nats/sample)", "test bits/dim",
        "inverse error max|x - f^-1(f(x))|", "samples within 0.25 of a test point (%)",
    ]),
    "conditional_inn": (False, "conditional_samples.png", [
        "test NLL -log p(x|y) (nats/sample)", "test NLL -log p(x) (nats/sample)",
        "generative classifier accuracy (%)", "conditional samples in their class (%)",
    ]),
    "multiscale_image_flow": (True, "digits_samples.png", [
        "test bits/dim flow", "test bits/dim per-pixel histogram", "test bits/dim uniform",
        "inverse error max|x - f^-1(f(x))|", "sampled pixels in [0, 1) (%)",
    ]),
    "anomaly_detection": (True, "anomaly_scores.png", [
        "test bits/dim normal", "test bits/dim anomalous", "image AUROC", "worst per-digit AUROC",
        "anomalies detected (%)", "normal test images flagged (%)",
    ]),
    "glow_digits": (True, "glow_digits.png", [
        "test bits/dim Glow", "test bits/dim uniform", "inverse error max|x - f^-1(f(x))|",
        "sampled pixels in range at T=1 (%)",
    ]),
    "conditional_maf": (False, "conditional_maf.png", [
        "test NLL -log p(x|class) MAF (nats/sample)",
        "test NLL -log p(x|class) true density (nats/sample)",
        "generative classifier accuracy (%)", "Bayes classifier accuracy (%)",
        "inverse error max|x - f^-1(f(x))|",
    ]),
}


def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name>.py`` in a fresh interpreter; its stdout (fails on exit != 0)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=180, env=env, cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, f"{name} exited with {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def printed_number(out: str, label: str) -> float:
    """The number printed after ``label:``."""
    found = re.search(re.escape(label) + r":\s*" + NUMBER, out)
    assert found, f"{label!r} not printed in:\n{out}"
    return float(found.group(1))


def png_size(path: Path) -> Tuple[int, int]:
    """Width and height of a PNG file, read from its header (fails if it is not a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is no PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_runs_fast_and_prints_its_numbers(name: str, tmp_path: Path) -> None:
    needs_sklearn, png, labels = SCRIPTS[name]
    if needs_sklearn:
        pytest.importorskip("sklearn")
    plots = importlib.util.find_spec("matplotlib") is not None
    out = run_example(name, "--fast", *(["--plot", str(tmp_path)] if plots else []))
    values: List[float] = [printed_number(out, label) for label in labels]
    assert all(v == v and abs(v) < 1e6 for v in values), values  # finite
    for label, value in zip(labels, values):
        if "inverse error" in label:
            assert value < 1e-3
        if "AUROC" in label or "(%)" in label:
            assert 0.0 <= value <= (100.0 if "(%)" in label else 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ([png] if plots else [])
    if plots:
        assert f"plot: {tmp_path / png}" in out
        width, height = png_size(tmp_path / png)
        assert 400 <= width <= 2500 and 250 <= height <= 1500, (width, height)
        assert (tmp_path / png).stat().st_size > 10_000  # not a blank canvas


def test_example_plots_only_when_asked() -> None:
    assert "plot:" not in run_example("density_estimation_2d", "--fast", "--steps", "2")
