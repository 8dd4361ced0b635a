"""Smoke tests of the benchmark suite and ``invertible bench``: they run and write valid JSON.

Timings are never asserted (they depend on the machine); only structure and exit codes are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invertible.cli import bench

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
PEERS = ROOT / "benchmarks" / "peers.py"
COMPARE = ROOT / "benchmarks" / "compare_trees.py"
OPS = ("train", "score", "inverse")


def bench_args(**kwargs: object) -> argparse.Namespace:
    """The namespace the ``bench`` parser gives for ``kwargs`` (the rest at defaults)."""
    parser = bench.add_parser(argparse.ArgumentParser().add_subparsers())
    argv = []
    for key, value in kwargs.items():
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return parser.parse_args(argv)


def run_script(script: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run a benchmark script as a user would (it re-executes itself with the malloc settings)."""
    env = {k: v for k, v in os.environ.items() if k != "INVERTIBLE_BENCH_REEXEC"}
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True,
                          timeout=300, env=env, check=False)


@pytest.mark.skipif(not RUN.is_file(), reason="needs the repository's benchmarks/ folder")
def test_quick_suite_writes_json(tmp_path: Path) -> None:
    """One tiny W1 run (1 repeat): exit 0, a table, JSON with times, ratios, memory, machine."""
    out = tmp_path / "quick.json"
    proc = run_script(RUN, "--quick", "--workloads", "W1", "--repeats", "1", "--threads", "1",
                      "--json", str(out))
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


@pytest.fixture(scope="module")
def peers_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny peers.py run (d=8, 2 blocks, batch 32) over every library that is installed."""
    if not PEERS.is_file():
        pytest.skip("needs the repository's benchmarks/ folder")
    out = tmp_path_factory.mktemp("peers") / "peers.json"
    proc = run_script(PEERS, "--dim", "8", "--hidden", "16", "--blocks", "2", "--batch", "32",
                      "--repeats", "2", "--target", "0.001", "--unclamped", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "inv/fastest" in proc.stdout
    return json.loads(out.read_text())


@pytest.mark.slow
def test_peers_times_invertible(peers_run: dict) -> None:
    """invertible's flows pass the round-trip and log-det checks and are timed per op, paired
    with the bare-subnet floor."""
    assert peers_run["machine"]["malloc_env"]["MALLOC_MMAP_THRESHOLD_"] == str(4 << 30)
    for arch in ("affine", "glow"):
        res = peers_run["results"][arch]
        assert res["checks"]["invertible"]["log_det_rel_error"] < 1e-3
        for op in OPS:
            assert res["summary"][op]["ms"]["invertible"]["median"] > 0
            assert res["summary"][op]["invertible/floor"]["median"] > 0
            assert len(res["samples_ms"][f"invertible/{op}"]) == 2


@pytest.mark.slow
def test_peers_unclamped_row_is_checked_and_never_a_peer(peers_run: dict) -> None:
    """``--unclamped`` times invertible without the soft clamp: a correct flow (the checks
    pass), compared with the fastest peer, never taken for one."""
    for arch in ("affine", "glow"):
        res = peers_run["results"][arch]
        assert res["checks"]["invertible-unclamped"]["log_det_rel_error"] < 1e-3
        for op in OPS:
            summary = res["summary"][op]
            assert summary["ms"]["invertible-unclamped"]["median"] > 0
            assert summary.get("fastest_peer") != "invertible-unclamped"
            if "fastest_peer" in summary:
                assert summary["invertible-unclamped/fastest"]["median"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("peer", ["zuko", "nflows", "normflows"])
def test_peer_is_checked_and_compared(peers_run: dict, peer: str) -> None:
    """Each installed peer builds both architectures, passes the checks, gets a paired ratio."""
    if importlib.util.find_spec(peer) is None:
        pytest.skip(f"{peer} is not installed (an optional benchmark dependency: .[bench])")
    assert peers_run["machine"][peer]
    for arch in ("affine", "glow"):
        res = peers_run["results"][arch]
        assert res["checks"][peer]["round_trip_max_abs"] < 1e-3
        for op in OPS:
            summary = res["summary"][op]
            assert summary[f"invertible/{peer}"]["median"] > 0
            assert summary["fastest_peer"] in summary["ms"]


@pytest.mark.slow
@pytest.mark.skipif(not COMPARE.is_file(), reason="needs the repository's benchmarks/ folder")
def test_compare_trees_pairs_two_workers(tmp_path: Path) -> None:
    """This tree against itself on quick W1: both workers import it, weights are shared, every
    op gets paired samples and an after/before ratio."""
    out = tmp_path / "compare.json"
    proc = run_script(COMPARE, "--before", str(ROOT), "--after", str(ROOT), "--workloads", "W1",
                      "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "after/before" in proc.stdout
    data = json.loads(out.read_text())
    for side in ("before", "after"):
        assert data["settings"]["trees"][side]["imported"].startswith(str(ROOT / "src"))
    w1 = data["workloads"]["W1"]
    assert w1["weights"] == "loaded from before"
    for op in OPS:
        entry = w1["ops"][op]
        assert len(entry["samples_ms"]["before"]) == len(entry["samples_ms"]["after"]) == 2
        assert entry["before_ms"] > 0 and entry["after_ms"] > 0 and entry["after/before"] > 0


def test_compare_trees_refuses_a_tree_without_src(tmp_path: Path) -> None:
    """A --before folder that is not a source tree is a usage error (exit 2), not a traceback."""
    proc = run_script(COMPARE, "--before", str(tmp_path), "--workloads", "W1")
    assert proc.returncode == 2 and "src/" in proc.stderr
