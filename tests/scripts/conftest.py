"""Fixtures for the operator scripts' tests: an isolated run/ and logs/ per test, free ports.

Every script is run as a real subprocess with ORACLE_RUN_DIR, ORACLE_LOG_DIR and the ports pointed
at a temporary directory and unused ports, so a test never touches an operator's running system.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scripts.helpers import REPO_ROOT, free_port, proc_identity, run_script


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The environment with every ORACLE_ variable of the caller's removed, and the scripts'
    directories and ports pointed at `tmp_path` and free ports."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORACLE_")}
    env.update(
        ORACLE_RUN_DIR=str(tmp_path / "run"),
        ORACLE_LOG_DIR=str(tmp_path / "logs"),
        ORACLE_STATE_DIR=str(tmp_path / "state"),
        ORACLE_AGGREGATOR_HOST="127.0.0.1",
        ORACLE_AGGREGATOR_PORT=str(free_port()),
        ORACLE_SIM_PORT=str(free_port()),
        ORACLE_COMMITTER_PORT=str(free_port()),
        ORACLE_COMMITTER_HTTP_PORT=str(free_port()),
        ORACLE_EXPLORER_PORT=str(free_port()),
        ORACLE_AGGREGATOR_METRICS_PORT=str(free_port()),
        # Every node on any free port: three fixed ones could be taken by a parallel run.
        ORACLE_NODE_METRICS_BASE_PORT="0",
        ORACLE_START_TIMEOUT="20",
    )
    return env


def stop_everything(env: dict[str, str]) -> None:
    """Whatever a test started through the scripts: first the script, then by recorded PID."""
    run_script("stop_nodes.sh", "--all", "--timeout", "5", env=env)
    for pid_file in Path(env["ORACLE_RUN_DIR"]).glob("*.pid"):
        lines = pid_file.read_text().split()
        if (
            lines
            and lines[0].isdigit()
            and len(lines) > 1
            and proc_identity(int(lines[0])) == lines[1]
        ):
            os.kill(int(lines[0]), signal.SIGKILL)


@pytest.fixture
def script_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = isolated_env(tmp_path)
    yield env
    if any(Path(env["ORACLE_RUN_DIR"]).glob("*.pid")):
        stop_everything(env)


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
