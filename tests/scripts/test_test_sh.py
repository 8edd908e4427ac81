"""scripts/test.sh --help prints its own usage and touches nothing (issue 15: it reinstalled
.venv while the system ran, then printed pytest's help)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.scripts.helpers import SCRIPTS


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_its_own_usage_without_a_venv(tmp_path: Path, flag: str) -> None:
    # A copy in a tree with no .venv and no pyproject.toml: any setup step would fail or leave
    # a trace there.
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPTS / "test.sh", tmp_path / "scripts" / "test.sh")

    result = subprocess.run(
        [str(tmp_path / "scripts" / "test.sh"), flag],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("THE test command")
    assert "Usage: scripts/test.sh [PYTEST ARGS...]" in result.stdout
    assert result.stderr == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scripts"]
