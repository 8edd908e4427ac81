"""Helpers shared by the scripts' tests and the end-to-end test: run a script, read PID files."""

from __future__ import annotations

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


def proc_stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on; [] when unreadable.

    The command name (field 2) is in parentheses and may hold spaces and ')', so the fields are
    counted from after the last ')', as scripts/lib/procs.sh does.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return stat[stat.rindex(")") + 1 :].split()


def proc_identity(pid: int) -> str:
    """The start time (field 22 of /proc/<pid>/stat) of a live, non-zombie process; "" if none.

    The same rule as scripts/lib/procs.sh, so a test can write a PID file the scripts trust.
    """
    fields = proc_stat_fields(pid)
    if len(fields) < 20 or fields[0] in {"Z", "X"}:
        return ""
    return fields[19]


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
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            argv = []
        if b" ".join(argv).decode(errors="replace").startswith(program):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never ran {program}")
