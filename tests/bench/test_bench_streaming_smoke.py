"""The streaming benchmark runs once in smoke mode: processes start, streams flow, it reports.

Not a timed test: smoke figures mean nothing, only that the harness still drives the real hub and
stream loop through real processes without errors and prints its table.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_streaming_benchmark_smoke_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    figures_file = tmp_path / "streaming.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench_streaming.py", "--smoke", "--json", str(figures_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| submission -> delivery, 20 subscribers" in result.stdout
    assert "| SubmitPrice, 20 subscribers attached" in result.stdout
    assert "| StreamPrices, no subscribers" in result.stdout

    document = json.loads(figures_file.read_text(encoding="utf-8"))
    assert document["subscribers"]["attached"] == 20
    assert document["delay"]["deliveries"] == document["delay"]["expected"] == 100
    for kind in ("none", "with", "stream"):
        for figures in document["loads"][kind]:
            assert figures["calls"] > 0
            assert figures["errors"] == 0
