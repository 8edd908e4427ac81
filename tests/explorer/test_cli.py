"""`oracle-explorer` as an operator runs it: a real process, a real port, SIGTERM, clear errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _explorer(*args: str) -> list[str]:
    return [sys.executable, "-m", "explorer", *args]


def test_it_serves_until_sigterm_and_says_the_aggregator_is_down(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "explorer.log"
    process = subprocess.Popen(
        _explorer("--port", str(port), "--aggregator", "127.0.0.1:1", "--log-file", str(log)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        document = None
        while time.monotonic() < deadline and document is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=1
                ) as answer:
                    document = json.load(answer)
            except OSError:
                time.sleep(0.1)
        assert document == {"status": "ok", "aggregator_reachable": False, "mode": "connecting"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr.decode()
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "explorer_started"
    assert "explorer_stopped" in events


def test_a_bad_option_or_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "explorer.toml"
    bad.write_text("[explorer]\nport = 'x'\n")
    result = subprocess.run(
        _explorer("--config", str(bad)), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "explorer.toml: [explorer] port: must be an integer" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        _explorer("--aggregator", "nohost"), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "option --aggregator: must be host:port" in result.stderr


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            _explorer("--port", str(port)), capture_output=True, text=True, timeout=30, check=False
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_names_the_options() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "oracle-explorer"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--aggregator", "--committer", "--port", "ORACLE_EXPLORER_PORT"):
        assert option in result.stdout


def test_sigterm_ends_open_event_streams_and_exits_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        _explorer("--port", str(port), "--aggregator", "127.0.0.1:1"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        stream = None
        while time.monotonic() < deadline and stream is None:
            try:
                stream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.1)
        assert stream is not None
        with stream:
            stream.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            head = stream.recv(4096)
            assert b"200 OK" in head
            assert b"text/event-stream" in head
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=15)
            assert time.monotonic() - started < 5  # the stream does not hold the shutdown up
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
