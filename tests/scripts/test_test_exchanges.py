"""scripts/test_exchanges.sh: one closed candle per exchange, a table, and an honest exit status.

Runs against the real exchange simulator process (the same fake the simulate mode uses); no test
reaches a real exchange.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from tests.scripts.helpers import REPO_ROOT, free_port, run_script

# Real simulator and node processes, and `--once` may wait out the simulated Coinbase lag (~7 s).
pytestmark = pytest.mark.e2e


def _start_simulator(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(REPO_ROOT / ".venv" / "bin" / "exchange-sim"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/health", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the exchange simulator did not come up")


def _port_is_free(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/health", timeout=1):
            return False
    except OSError:
        return True


def test_simulate_starts_a_temporary_simulator_and_prints_three_closes(
    script_env: dict[str, str],
) -> None:
    result = run_script("test_exchanges.sh", "--simulate", env=script_env)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("SIMULATED:")
    temporary_port = int(lines[1].rsplit(" ", 1)[1].rstrip(")"))
    rows = {line.split()[0]: line for line in lines[3:]}
    assert set(rows) == {"binance", "coinbase", "kraken"}
    assert all(" ms  SIMULATED" in row for row in rows.values())
    assert " USDT " in rows["binance"]
    assert " USD " in rows["kraken"]
    # The temporary simulator is gone with the script.
    assert _port_is_free(temporary_port)


def test_real_mode_refuses_a_simulator_posing_as_the_exchanges(
    script_env: dict[str, str],
) -> None:
    port = free_port()
    simulator = _start_simulator(port)
    try:
        env = {**script_env, "ORACLE_NODE_API_URL": f"http://127.0.0.1:{port}"}
        result = run_script("test_exchanges.sh", env=env)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)

    assert result.returncode == 1
    failures = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failures) == 3
    assert all("not in --simulate mode" in line for line in failures)
