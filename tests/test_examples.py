"""The scripts in examples/ run to the end in their ``--fast`` mode and print their key numbers."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NUMBER = r"(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)"

#: script -> (needs scikit-learn, labels of the numbers it must print)
SCRIPTS = {
    "density_estimation_2d": (False, [
        "test NLL flow (nats/sample)", "test NLL Gaussian fit (nats/sample)", "test bits/dim",
        "inverse error max|x - f^-1(f(x))|", "samples within 0.25 of a test point (%)",
    ]),
    "conditional_inn": (False, [
        "test NLL -log p(x|y) (nats/sample)", "test NLL -log p(x) (nats/sample)",
        "generative classifier accuracy (%)", "conditional samples in their class (%)",
    ]),
    "multiscale_image_flow": (True, [
        "test bits/dim flow", "test bits/dim per-pixel histogram", "test bits/dim uniform",
        "inverse error max|x - f^-1(f(x))|", "sampled pixels in [0, 1) (%)",
    ]),
    "anomaly_detection": (True, [
        "test bits/dim normal", "test bits/dim anomalous", "image AUROC", "worst per-digit AUROC",
        "anomalies detected (%)", "normal test images flagged (%)",
    ]),
    "glow_digits": (True, [
        "test bits/dim Glow", "test bits/dim uniform", "inverse error max|x - f^-1(f(x))|",
        "sampled pixels in range at T=1 (%)",
    ]),
    "conditional_maf": (False, [
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


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_runs_fast_and_prints_its_numbers(name: str, tmp_path: Path) -> None:
    needs_sklearn, labels = SCRIPTS[name]
    if needs_sklearn:
        pytest.importorskip("sklearn")
    plots = name == "conditional_inn" and importlib.util.find_spec("matplotlib") is not None
    out = run_example(name, "--fast", *(["--plot", str(tmp_path)] if plots else []))
    values: List[float] = [printed_number(out, label) for label in labels]
    assert all(v == v and abs(v) < 1e6 for v in values), values  # finite
    for label, value in zip(labels, values):
        if "inverse error" in label:
            assert value < 1e-3
        if "AUROC" in label or "(%)" in label:
            assert 0.0 <= value <= (100.0 if "(%)" in label else 1.0)
    # plots are written only when asked for
    assert ("plot:" in out) == plots
    assert [p.name for p in tmp_path.iterdir()] == (["conditional_samples.png"] if plots else [])
