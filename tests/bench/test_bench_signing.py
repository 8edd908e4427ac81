"""The signing benchmark runs in its smoke mode and prints every row (figures are not checked)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_signing_benchmark_smoke_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/bench_signing.py", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in (
        "| sign_observation (BIP340, fresh aux) |",
        "| verify_observation, valid |",
        "| verify_observation, forged |",
        "| rate limiter admit, allowed |",
        "| rate limiter admit, new id each call (LRU full) |",
        "| refusal log, suppressed refusal |",
    ):
        assert row in result.stdout
