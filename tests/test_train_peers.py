"""Smoke test of benchmarks/train_peers.py: the --quick run trains every preset and every
installed peer's equivalent, prints one table row each and writes the JSON; a peer that is not
installed is skipped and named."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_peers.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_peers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_peers"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def rows(output: str) -> List[List[str]]:
    """The table's data rows as lists of cells."""
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in output.splitlines()
            if line.startswith("| ") and not line.startswith("| data")]


def expected_pairs(libs: List[str]) -> set:
    pairs = set()
    for data in ("moons", "digits"):
        for family in ("realnvp", "nsf", "maf"):
            pairs |= {(data, family, lib) for lib in libs}
        pairs |= {("digits", "glow", lib) for lib in libs if lib in ("invertible", "normflows")}
    return pairs


def test_quick_run_prints_every_row_and_writes_json(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script()
    installed = [lib for lib in script.LIBS if importlib.util.find_spec(lib) is not None]
    out = tmp_path / "train.json"
    assert script.main(["--quick", "--out", str(out)]) == 0
    table = rows(capsys.readouterr().out)
    assert {(r[0], r[1], r[2]) for r in table} == expected_pairs(installed)
    payload = json.loads(out.read_text())
    assert payload["settings"]["epochs"] == 2 and len(payload["records"]) == len(table)
    records = payload["records"]
    for record in records:
        assert len(record["epoch_s"]) == 2 and record["epoch_s_median"] > 0
        if record["lib"] == "invertible":
            assert math.isfinite(record["test_nll"]) and record["best_epoch"] in (0, 1)
            peers = [r for r in records if r["lib"] != "invertible"
                     and (r["dataset"], r["family"]) == (record["dataset"], record["family"])]
            ratio = record["time_over_fastest_peer"]
            assert ratio > 0 if peers else math.isnan(ratio)


def test_missing_peer_is_skipped(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "zuko", None)  # `import zuko` now raises ImportError
    script = load_script()
    assert script.main(["--quick", "--datasets", "moons", "--families", "maf",
                        "--libs", "invertible,zuko"]) == 0
    output = capsys.readouterr().out
    assert [r[:3] for r in rows(output)] == [["moons", "maf", "invertible"]]
    assert "zuko: not installed" in output


def test_summary_over_seeds() -> None:
    """``--summarise``: per model the mean NLL with its range, the gap to the best peer, the
    median time ratio, over the runs given."""
    script = load_script()

    def record(lib: str, nll: float, gap: float, ratio: float) -> dict:
        return {"dataset": "moons", "family": "maf", "lib": lib, "test_nll": nll,
                "nll_minus_best_peer": gap, "time_over_fastest_peer": ratio}

    runs = [[record("invertible", 2.0, 0.1, 0.9), record("zuko", 1.9, 0.0, 1.0)],
            [record("invertible", 2.2, -0.1, 0.8), record("zuko", 2.3, 0.1, 1.2)]]
    table = rows(script.summary(runs))
    assert [row[:3] for row in table] == [["moons", "maf", "invertible"], ["moons", "maf", "zuko"]]
    assert table[0][3:] == ["2.100 (2.000..2.200)", "+0.000 (-0.100..+0.100)", "0.85"]
    assert table[1][5] == "1.10"


def test_summary_counts_rows_when_runs_differ() -> None:
    """Extra seeds of one model (a run holding only some models) add a ``runs`` column, so no
    row claims more runs than it has."""
    script = load_script()

    def record(lib: str, nll: float) -> dict:
        return {"dataset": "digits", "family": "nsf", "lib": lib, "test_nll": nll,
                "nll_minus_best_peer": 0.0, "time_over_fastest_peer": 1.0}

    full = [record("invertible", -91.0), record("nflows", -90.0)]
    extra = [record("invertible", -92.0)]
    text = script.summary([full, extra])
    assert "test NLL, mean (min..max)" in text and text.splitlines()[0].endswith("runs |")
    table = rows(text)
    assert table[0][3] == "-91.500 (-92.000..-91.000)" and table[0][-1] == "2"
    assert table[1][:3] == ["digits", "nsf", "nflows"] and table[1][-1] == "1"
    assert "mean of 2" in script.summary([full, full])  # equal counts: the header says it
