"""Starting the helper processes of the store tests (real interpreters, real SIGKILL)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def start(module: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.aggregator.store.{module}", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class LineReader:
    """Collects a child's stdout lines in a thread, so the test can wait for a count."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.lines: list[str] = []
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: object, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.lines):  # type: ignore[operator]
                return True
            if not self._thread.is_alive():
                return bool(predicate(self.lines))  # type: ignore[operator]
            time.sleep(0.005)
        return False

    def finish(self, timeout: float = 10.0) -> list[str]:
        """Every line, after the child's stdout closed (it exited or was killed)."""
        self._thread.join(timeout)
        return self.lines
