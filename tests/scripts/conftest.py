"""Fixtures for the operator scripts' tests: an isolated run/ and logs/ per test, free ports.

Every script is run as a real subprocess with ORACLE_RUN_DIR, ORACLE_LOG_DIR and the ports pointed
at a temporary directory and unused ports, so a test never touches an operator's running system.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scripts.helpers import REPO_ROOT, free_port, proc_identity


@pytest.fixture
def script_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ORACLE_AGGREGATOR_", "ORACLE_NODE_", "ORACLE_SIM_"))
    }
    env.update(
        ORACLE_RUN_DIR=str(tmp_path / "run"),
        ORACLE_LOG_DIR=str(tmp_path / "logs"),
        ORACLE_AGGREGATOR_HOST="127.0.0.1",
        ORACLE_AGGREGATOR_PORT=str(free_port()),
        ORACLE_SIM_PORT=str(free_port()),
        ORACLE_START_TIMEOUT="20",
    )
    return env


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start stand-in processes; whatever a test leaves alive is killed by PID afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


def start_sleeper(spawn: list[subprocess.Popen[bytes]], *argv0: str) -> subprocess.Popen[bytes]:
    """A harmless long-lived process, optionally under a misleading name (argv[0])."""
    name = argv0[0] if argv0 else "sleep"
    process = subprocess.Popen(
        ["bash", "-c", f'exec -a "{name}" sleep 120'], cwd=REPO_ROOT, start_new_session=True
    )
    spawn.append(process)
    deadline = time.monotonic() + 5
    while not proc_identity(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return process
