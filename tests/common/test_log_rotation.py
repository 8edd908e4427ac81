"""Log files rotate by size in the process's own logging, losing and splitting no line.

A real child process writes many numbered lines from several threads through `configure_logging`
with a small `max_bytes`; afterwards every number is found exactly once across the file and its
rotated copies, each line whole JSON. A second process given the same log file is refused, also
after the first one has rotated it (the lock sits beside the file, so rotation cannot move it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.logsetup import RotatingLogStream, open_log_file

WRITER = r"""
import sys, threading
from pathlib import Path
from common.logsetup import configure_logging, get_logger

path, lines, threads, max_bytes, backups = sys.argv[1], *map(int, sys.argv[2:6])
configure_logging("info", Path(path), service="rotation-test", max_bytes=max_bytes, backups=backups)
log = get_logger()

def write(thread: int) -> None:
    for number in range(thread, lines, threads):
        log.info("numbered_line", number=number, padding="x" * (number % 50))

workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print("done", flush=True)
if len(sys.argv) > 6:
    sys.stdin.readline()  # hold the log file until the test says so
"""


def _writer(
    log: Path, lines: int, *, max_bytes: int, backups: int, hold: bool = False
) -> list[str]:
    command = [sys.executable, "-c", WRITER, str(log), str(lines), "4", str(max_bytes)]
    command.append(str(backups))
    if hold:
        command.append("hold")
    return command


def _all_files(log: Path) -> list[Path]:
    rotated = sorted(log.parent.glob(log.name + ".*[0-9]"), key=lambda path: int(path.suffix[1:]))
    return [*reversed(rotated), log]  # oldest first


def test_rotation_keeps_every_line_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    lines = 6000

    result = subprocess.run(
        _writer(log, lines, max_bytes=64 * 1024, backups=100),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    files = _all_files(log)
    assert len(files) >= 6, "the test must cross several rotations"
    numbers: Counter[int] = Counter()
    for path in files:
        assert path.stat().st_size <= 64 * 1024
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        for line in text.splitlines():
            event = json.loads(line)  # every line whole: never split across two files
            assert event["event"] == "numbered_line"
            numbers[event["number"]] += 1
    assert set(numbers) == set(range(lines))
    assert set(numbers.values()) == {1}


def test_oldest_files_beyond_backups_are_dropped(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    result = subprocess.run(
        _writer(log, 3000, max_bytes=16 * 1024, backups=2),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.glob("service.log*")) == [
        "service.log",
        "service.log.1",
        "service.log.2",
        "service.log.lock",
    ]
    # What is kept is the newest: the last line written is in the live file.
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["number"] >= 2996


def test_a_second_process_on_the_same_log_file_is_refused_even_after_rotation(
    tmp_path: Path,
) -> None:
    log = tmp_path / "shared.log"
    first = subprocess.Popen(
        _writer(log, 3000, max_bytes=16 * 1024, backups=50, hold=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline() == "done\n"
        assert (tmp_path / "shared.log.1").exists(), "the first process has rotated its file"

        second = subprocess.run(
            _writer(log, 10, max_bytes=16 * 1024, backups=50),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert second.returncode != 0
        assert f"log file '{log}' is already written by another running process" in second.stderr
        assert f"pid {first.pid} (python" in second.stderr
        numbers = [json.loads(line)["number"] for line in log.read_text().splitlines()]
        assert all(number < 3000 for number in numbers)
        assert len(numbers) == len(set(numbers)), "the refused process wrote nothing"
    finally:
        if first.stdin is not None:
            first.stdin.close()
        first.wait(timeout=30)
    # Once the first has exited, the file is free again.
    again = subprocess.run(
        _writer(log, 10, max_bytes=16 * 1024, backups=50),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr


def test_the_lock_is_released_by_the_kernel_on_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "killed.log"
    first = subprocess.Popen(
        _writer(log, 10, max_bytes=0, backups=1, hold=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None
    assert first.stdout.readline() == "done\n"
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    deadline = time.monotonic() + 5
    while True:
        result = subprocess.run(
            _writer(log, 10, max_bytes=0, backups=1),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            break
    assert result.returncode == 0, result.stderr


def test_max_bytes_zero_never_rotates(tmp_path: Path) -> None:
    log = tmp_path / "plain.log"
    result = subprocess.run(
        _writer(log, 2000, max_bytes=0, backups=1),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plain.log", "plain.log.lock"]
    assert len(log.read_text().splitlines()) == 2000


def test_the_same_file_twice_in_one_process_reuses_its_stream(tmp_path: Path) -> None:
    log = tmp_path / "twice.log"
    first = open_log_file(log, max_bytes=4096, backups=2)
    assert isinstance(first, RotatingLogStream)
    assert open_log_file(tmp_path / "." / "twice.log", max_bytes=4096, backups=2) is first


def test_a_fifo_is_written_as_it_is_without_lock_or_rotation(tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        stream = open_log_file(fifo, max_bytes=4096, backups=2)
        assert not isinstance(stream, RotatingLogStream)
        stream.write("hello\n")
        stream.flush()
        assert os.read(reader, 100) == b"hello\n"
    finally:
        os.close(reader)
    assert not (tmp_path / "log.fifo.lock").exists()


def test_no_lock_file_beside_the_log_locks_the_file_itself_and_does_not_rotate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory this process may not write (root may write any, so the refusal is injected):
    # no lock file can be made there, and no rotated file either.
    from common import logsetup

    real_try_lock = logsetup.try_lock

    def no_lock_files(path: Path, *, write_pid: bool = True) -> object:
        if path.name.endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_try_lock(path, write_pid=write_pid)

    monkeypatch.setattr(logsetup, "try_lock", no_lock_files)
    log = tmp_path / "x.log"
    stream = open_log_file(log, max_bytes=4096, backups=2)
    assert not isinstance(stream, RotatingLogStream)
    stream.write("line\n")
    stream.flush()
    assert log.read_text() == "line\n"
    assert not (tmp_path / "x.log.lock").exists()
    monkeypatch.setattr(logsetup, "_sinks", {})
    with pytest.raises(ConfigError, match="already written"):
        # The file itself is locked (by this process's first stream: flock is per open file).
        open_log_file(log, max_bytes=4096, backups=2)


def test_a_held_log_file_in_this_process_is_a_config_error(tmp_path: Path) -> None:
    # Another process's lock, simulated by locking the lock file from a child.
    log = tmp_path / "held.log"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.readline()",
            str(tmp_path / "held.log.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ConfigError, match=rf"already written .*pid {holder.pid}"):
            open_log_file(log, max_bytes=4096, backups=2)
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=10)


@pytest.mark.e2e  # a real simulator process answering a few hundred requests (~10 s)
def test_a_real_service_rotating_its_log_under_load_keeps_every_request_line(
    tmp_path: Path,
) -> None:
    """The exchange simulator logs each venue request: 200 requests from four threads, a
    rotation every ~14 lines, and every request's line is found exactly once."""
    import concurrent.futures
    import urllib.request

    log = tmp_path / "logs" / "simulator.log"
    config = tmp_path / "sim.toml"
    config.write_text(f'[logging]\nfile = "{log}"\nmax_bytes = 4096\nbackups = 100\n')
    port_file = tmp_path / "port"
    simulator = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "exchange-sim"),
            "--config",
            str(config),
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert simulator.poll() is None, simulator.stderr.read() if simulator.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        port = int(port_file.read_text())
        base = f"http://127.0.0.1:{port}/api/v3/klines?symbol=BTCUSDT&interval=1m&seq="

        def ask(seq: int) -> int:
            with urllib.request.urlopen(base + str(seq), timeout=10) as answer:  # noqa: S310 - http to the test server
                return int(answer.status)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            assert set(pool.map(ask, range(200))) == {200}
    finally:
        simulator.terminate()
        simulator.wait(timeout=20)
    files = _all_files(log)
    assert len(files) >= 10
    seen: Counter[int] = Counter()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            if event["event"] == "venue_request":
                seen[int(event["query"]["seq"])] += 1
    assert seen == Counter(range(200))
