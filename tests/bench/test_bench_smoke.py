"""Each benchmark runs once in its tiny smoke mode and prints figures: CI keeps them working.

These are not timed tests: the figures of a smoke run mean nothing, only that the benchmark still
starts its processes, drives real calls through them without errors and reports.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.e2e
def test_aggregator_benchmark_smoke_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    result = run_script("scripts/bench_aggregator.py", "--smoke", "--json", str(figures_file))
    assert result.returncode == 0, result.stdout + result.stderr

    assert "| SubmitPrice: new reports" in result.stdout
    assert "| GetAggregatedPrice" in result.stdout
    assert "| bare baseline SubmitPrice" in result.stdout
    assert "SubmitPrice: signed" in result.stdout
    assert "n/a (not implemented yet)" in result.stdout
    assert "Memory (aggregator RSS" in result.stdout
    assert "| SubmitPrice: new reports, SQLite history on" in result.stdout
    assert "| GetPriceHistory(limit=100)" in result.stdout
    assert "Restart on a 1-day history file" in result.stdout

    document = json.loads(figures_file.read_text(encoding="utf-8"))
    assert document["machine"]["cores"]
    for row in document["rows"]:
        assert row["figures"]["calls"] > 0, row
        assert row["figures"]["errors"] == 0, row
        assert row["ratio"] > 0
    assert document["history"]["start_to_first_answer_s"] > 0
    memory = document["memory"]
    assert memory["failed_calls"] == 0
    assert memory["rss_after_total_mb"] > 0


@pytest.mark.e2e
def test_collection_benchmark_smoke_starts_everything_and_fetches_each_venue(
    tmp_path: Path,
) -> None:
    figures_file = tmp_path / "collection.json"
    result = run_script("scripts/bench_collection.py", "--smoke", "--json", str(figures_file))
    assert result.returncode == 0, result.stdout + result.stderr

    assert "started simulator, aggregator --simulate, 3 nodes" in result.stdout
    document = json.loads(figures_file.read_text(encoding="utf-8"))
    venues = [row[0] for row in document["smoke"]]
    assert venues == ["binance", "coinbase", "kraken"]
    for _venue, _minute, close, fetch_ms, _process_ms in document["smoke"]:
        assert float(close) > 0
        assert float(fetch_ms) >= 0


def test_collection_benchmark_refuses_an_unknown_scenario() -> None:
    result = run_script("scripts/bench_collection.py", "--scenarios", "normal,stormy")
    assert result.returncode == 2
    assert "stormy" in result.stderr
