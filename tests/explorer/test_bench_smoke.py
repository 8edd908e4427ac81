"""scripts/bench_explorer.py runs in its smoke mode and prints its figures: CI keeps it working.

Not a timed test: the smoke figures mean nothing, only that the benchmark still starts the
explorer, drives real requests and streams through it and reports every delivery.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_explorer_benchmark_smoke(tmp_path: Path) -> None:
    figures = tmp_path / "explorer.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench_explorer.py", "--smoke", "--json", str(figures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "/api/price, 16 in flight" in result.stdout
    document = json.loads(figures.read_text())
    assert document["fan_out"]["deliveries"] == 5 * 2
    assert document["price"]["calls_per_s"] > 0
