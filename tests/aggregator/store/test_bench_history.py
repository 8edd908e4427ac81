"""The history benchmark runs once in its smoke mode and prints its figures: CI keeps it working.

Not a timed test: a smoke run's figures mean nothing, only that every measurement still runs
against the real store and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_history_benchmark_smoke_prints_its_tables_and_writes_json(tmp_path: Path) -> None:
    figures_file = tmp_path / "history.json"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/bench_history.py",
            "--smoke",
            "--dir",
            str(tmp_path / "databases"),
            "--json",
            str(figures_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    assert "| group commit, signed observations | FULL" in result.stdout
    assert "restart (2-day file): open + recover" in result.stdout
    document = json.loads(figures_file.read_text(encoding="utf-8"))
    assert [row["concurrency"] for row in document["group_commit"]] == [1, 16, 64, 1, 16, 64]
    assert all(row["writes"] > 0 for row in document["group_commit"])
    assert document["size"]["month_bytes"] > document["size"]["one_day_bytes"] > 0
    assert document["observations"]["bytes"] > 0
    assert document["restart_month"]["recovered_records"] > 0
    assert document["pruning"]["pruned_rows"] > 0
    # The benchmark cleans up after itself.
    assert list((tmp_path / "databases").iterdir()) == []
