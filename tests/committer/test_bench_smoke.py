"""scripts/bench_committer.py runs once in smoke mode and prints its figures (not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committer_benchmark_smoke(tmp_path: Path) -> None:
    figures = tmp_path / "committer.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench_committer.py", "--smoke", "--json", str(figures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| round close -> signed report |" in result.stdout
    assert "| round close -> DLC attestation |" in result.stdout
    assert "| catch-up of 120 rounds |" in result.stdout
    document = json.loads(figures.read_text())
    assert document["catch_up"]["reports_per_second"] > 0
    assert document["live"]["attestations"] >= 1
