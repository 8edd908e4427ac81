"""Starting, probing and stopping the service processes a benchmark measures, on loopback only.

Every process gets its own log file in the run's temporary directory (so a failed start can be
explained by showing the log tail) and is stopped with SIGTERM first, then SIGKILL after a grace
period, so a benchmark never leaves a server behind. The servers' own side of that (serve until
SIGTERM, then stop gracefully) is `serve_until_signalled`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from common.proto import oracle_pb2, oracle_pb2_grpc

SCRIPTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = SCRIPTS_DIR.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A loopback port that was free a moment ago (for CLIs that need a number up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB, from VmRSS in /proc/<pid>/status (Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid`, all threads, from /proc/<pid>/stat (Linux only)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # The command name (field 2) may contain spaces; fields after its closing parenthesis are
    # fixed: utime and stime are fields 14 and 15 of the whole line.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_env() -> dict[str, str]:
    """Environment for child processes: the `bench` helpers importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SCRIPTS_DIR), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def venv_command(name: str) -> str:
    """A console script of this venv (aggregator, oracle-node, exchange-sim) by absolute path."""
    candidate = VENV_BIN / name
    if not candidate.exists():
        raise FileNotFoundError(f"{candidate} not found: is the project installed in this venv?")
    return str(candidate)


class ServiceProcess:
    """One child process with its output in a log file; a context manager that always stops it."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.out"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=bench_env(),
            cwd=REPO_ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float = 20.0) -> None:
        """Poll `ready` until true; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during start:\n"
                    + self.log_tail()
                )
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n" + self.log_tail())

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def grpc_answers(target: str) -> bool:
    """True when an OracleService at `target` answers HealthCheck (healthy or not)."""
    with grpc.insecure_channel(target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        try:
            stub.HealthCheck(oracle_pb2.HealthRequest(node_id="bench-probe"), timeout=1.0)
        except grpc.RpcError:
            return False
        return True


async def serve_until_signalled(server: grpc.aio.Server, port: int, grace: float) -> None:
    """Start `server`, print `PORT <port>` once listening, serve until SIGTERM or SIGINT, stop."""
    await server.start()
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=grace)
