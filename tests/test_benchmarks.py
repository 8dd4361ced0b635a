"""Smoke tests of the benchmark suite and ``invertible bench``: they run and write valid JSON.

Timings are never asserted (they depend on the machine); only structure and exit codes are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invertible.cli import bench

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
OPS = ("train", "score", "inverse")


def bench_args(**kwargs: object) -> argparse.Namespace:
    """The namespace the ``bench`` parser gives for ``kwargs`` (the rest at defaults)."""
    parser = bench.add_parser(argparse.ArgumentParser().add_subparsers())
    argv = []
    for key, value in kwargs.items():
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return parser.parse_args(argv)


@pytest.mark.skipif(not RUN.is_file(), reason="needs the repository's benchmarks/ folder")
def test_quick_suite_writes_json(tmp_path: Path) -> None:
    """One tiny W1 run (1 repeat): exit 0, a table, JSON with times, ratios, memory, machine."""
    out = tmp_path / "quick.json"
    env = {k: v for k, v in os.environ.items() if k != "INVERTIBLE_BENCH_REEXEC"}
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--workloads", "W1", "--repeats", "1",
         "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "inv/FrEIA" in proc.stdout and "W1" in proc.stdout
    data = json.loads(out.read_text())
    assert data["suite"] == bench.MARKER
    machine = data["machine"]
    assert machine["torch_threads"] == 1 and machine["cpu"] and machine["torch"]
    assert machine["malloc_env"]["MALLOC_MMAP_THRESHOLD_"] == str(4 << 30)  # re-exec worked
    w1 = data["workloads"]["W1"]
    assert "invertible" in w1["impls"] and "floor" in w1["impls"]
    for op in OPS:
        entry = w1["impls"]["invertible"][op]
        assert entry["median_ms"] > 0 and len(entry["samples_ms"]) == 1
        assert entry["peak_mem_mb"] >= 0
        assert w1["ratios"][op]["invertible/floor"] > 0


def test_bench_subcommand_parses_and_forwards() -> None:
    """``add_parser`` registers ``bench`` with :func:`bench.run`; options reach run.py as given."""
    args = bench_args(quick=True, workloads="W1", repeats=1, threads=1, compile=True)
    assert args.func is bench.run
    argv = bench._forwarded(args)
    assert argv[0] == "--quick" and "--compile" in argv
    assert argv[argv.index("--workloads") + 1] == "W1"


def test_find_suite_needs_the_marker(tmp_path: Path) -> None:
    """A foreign benchmarks/run.py in the working directory is not run; ours is found."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "run.py").write_text("print('not ours')\n")
    found = bench.find_suite(tmp_path)
    assert found is None or found.resolve() == RUN.resolve()
    if RUN.is_file():
        assert bench.find_suite(ROOT) == RUN


def test_builtin_subset_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The built-in fallback (no suite needed) times W1 for one repeat and writes JSON."""
    out = tmp_path / "builtin.json"
    args = bench_args(builtin=True, quick=True, workloads="W1", repeats=1, json=out)
    assert bench.run(args) == 0
    assert "W1" in capsys.readouterr().out
    medians = json.loads(out.read_text())["median_ms"]["W1"]
    assert set(medians["invertible"]) == set(OPS)


def test_builtin_rejects_other_workloads(capsys: pytest.CaptureFixture) -> None:
    """The built-in subset has only W1 and W3, and says so."""
    assert bench.run(bench_args(builtin=True, workloads="W2")) == 2
    assert "W1, W3" in capsys.readouterr().err
