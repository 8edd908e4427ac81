"""Helpers shared by the scripts' tests and the end-to-end test: run a script, read PID files."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_script(
    name: str, *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one of scripts/ as an operator would, from `cwd` (default: not the repo root)."""
    command = [str(SCRIPTS / name), *args]
    return subprocess.run(
        command,
        env=env,
        cwd=cwd or Path("/"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def proc_identity(pid: int) -> str:
    """The start time `ps` reports for a live, non-zombie process; "" when there is none.

    The same rule as scripts/lib/procs.sh, so a test can write a PID file the scripts trust.
    """
    env = {**os.environ, "LC_ALL": "C"}
    state = subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, env=env, check=False
    ).stdout.strip()
    if not state or state.startswith("Z"):
        return ""
    return subprocess.run(
        ["ps", "-o", "lstart=", "-p", str(pid)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    ).stdout.strip()


def write_pidfile(run_dir: Path, name: str, pid: int, identity: str | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{name}.pid"
    path.write_text(f"{pid}\n{proc_identity(pid) if identity is None else identity}\n")
    return path


def is_alive(pid: int) -> bool:
    return bool(proc_identity(pid))


def wait_for_exec(pid: int, program: str, timeout: float = 5) -> None:
    """Wait until process `pid` runs `program` (a shell that `exec`s has finished its setup)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        args = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout.strip()
        if args.startswith(program):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never ran {program}")
