"""`exchange-sim` as a real process: port discovery, fetches, same seed same prices, SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "exchange-sim"
BANNER = re.compile(r"^SIMULATED exchange-sim listening on http://127\.0\.0\.1:(\d+) ")


@contextmanager
def running_sim(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        [str(BIN), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = BANNER.match(banner)
        assert match, f"no banner: {banner!r}"
        yield process, int(match.group(1))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=5)


def _newest_closed_closes(port: int) -> tuple[int, dict[str, str]]:
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=5.0) as client:
        rows = client.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}).json()
        minute = rows[-2][0] // 1000  # the last row is forming; the one before it is closed
        answer = client.get("/_sim/close", params={"minute": minute}).json()
        return minute, answer["closes"]


def test_starts_on_a_free_port_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "sim.port"
    log_file = tmp_path / "sim.log"
    with running_sim("--port-file", str(port_file), "--log-file", str(log_file)) as (proc, port):
        assert port_file.read_text().strip() == str(port)
        with httpx.Client(timeout=5.0) as client:
            url = f"http://127.0.0.1:{port}/0/public/OHLC"
            answer = client.get(url, params={"pair": "XBTUSD", "interval": "1"})
        assert answer.status_code == 200
        assert answer.headers["X-Oracle-Simulated"] == "1"
        assert len(answer.json()["result"]["XXBTZUSD"]) == 720
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    assert not port_file.exists()
    lines = log_file.read_text().splitlines()
    assert lines, "no log lines"
    assert all('"mode": "SIMULATED"' in line for line in lines)
    assert any('"event": "listening"' in line and f'"port": {port}' in line for line in lines)


def test_same_seed_same_closes_across_restarts() -> None:
    with running_sim("--seed", "1234") as (_, port):
        minute, first_run = _newest_closed_closes(port)
    with running_sim("--seed", "1234") as (_, port):
        base = f"http://127.0.0.1:{port}"
        answer = httpx.get(f"{base}/_sim/close", params={"minute": minute}, timeout=5.0).json()
    assert answer["closes"] == first_run
    with running_sim("--seed", "999") as (_, port):
        base = f"http://127.0.0.1:{port}"
        other = httpx.get(f"{base}/_sim/close", params={"minute": minute}, timeout=5.0).json()
    assert other["closes"] != first_run


def test_fault_flags_apply_from_the_first_request() -> None:
    flags = ("--http-5xx", "binance:2:502", "--rate-limit", "kraken")
    with running_sim(*flags) as (_, port):
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
        params = {"symbol": "BTCUSDT", "interval": "1m", "limit": "1"}
        statuses = [client.get("/api/v3/klines", params=params).status_code for _ in range(3)]
        kraken = client.get("/0/public/OHLC", params={"pair": "XBTUSD"}).json()
        client.close()
    assert statuses == [502, 502, 200]
    assert kraken == {"error": ["EAPI:Rate limit exceeded"]}


def test_bad_flags_exit_with_a_usage_error_naming_them() -> None:
    result = subprocess.run(
        [str(BIN), "--jump", "binance"], check=False, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 2
    assert "--jump" in result.stderr


def test_non_loopback_bind_is_warned_about_loudly() -> None:
    process = subprocess.Popen(
        [str(BIN), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "listening" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0
    assert "WARNING: SIMULATED exchange-sim bound to 0.0.0.0" in stderr


def test_python_dash_m_works_too() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "exchange_sim", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0
    assert "SIMULATED" in result.stdout
    assert time.monotonic() - started < 10


def test_sigterm_lets_an_answer_in_progress_finish() -> None:
    with running_sim("--slow", "kraken:0.8") as (proc, port):
        url = f"http://127.0.0.1:{port}/0/public/OHLC"
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(httpx.get, url, params={"pair": "XBTUSD"}, timeout=5.0)
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            assert pending.result().status_code == 200
        assert proc.wait(timeout=5) == 0
