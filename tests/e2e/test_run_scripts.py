"""End to end: the operator's scripts run the whole oracle on simulated prices, as a newcomer would.

`run_multi_nodes.sh --simulate` starts the real simulator, aggregator and three nodes as processes;
`test_aggregator.py --json` sees an aggregate of three exchanges equal to the mean of the
simulator's own closes for that minute; a killed node drops out of the active count; and
`stop_nodes.sh --all` leaves no process and no PID file. Everything runs on free ports with its
own run/ and logs/ directories, so an operator's running system is never touched. Nodes collect at
real minute boundaries, so this takes about two minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.scripts.helpers import REPO_ROOT, SCRIPTS, free_port, is_alive, run_script

pytestmark = pytest.mark.e2e

NODE_TIMEOUT = 30  # seconds a node stays active after a submission (the default is 120)
PROCESS_NAMES = ("simulator", "aggregator", "node1_binance", "node2_coinbase", "node3_kraken")


@pytest.fixture
def system_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORACLE_")}
    env.update(
        ORACLE_RUN_DIR=str(tmp_path / "run"),
        ORACLE_LOG_DIR=str(tmp_path / "logs"),
        ORACLE_AGGREGATOR_HOST="127.0.0.1",
        ORACLE_AGGREGATOR_PORT=str(free_port()),
        ORACLE_AGGREGATOR_NODE_TIMEOUT=str(NODE_TIMEOUT),
        ORACLE_SIM_PORT=str(free_port()),
        ORACLE_START_TIMEOUT="30",
    )
    yield env
    # Whatever happened, leave nothing running: first the script, then by recorded PID.
    run_script("stop_nodes.sh", "--all", "--timeout", "5", env=env)
    for pid_file in Path(env["ORACLE_RUN_DIR"]).glob("*.pid"):
        pid = int(pid_file.read_text().split()[0])
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _probe(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    completed = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "python"),
            str(SCRIPTS / "test_aggregator.py"),
            "--json",
            "--timeout",
            "3",
            "--target",
            f"127.0.0.1:{env['ORACLE_AGGREGATOR_PORT']}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout)


def _wait_for(
    env: dict[str, str], accept: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        code, last = _probe(env)
        if accept(last):
            return code, last
        time.sleep(0.5)
    logs = Path(env["ORACLE_LOG_DIR"])
    tails = {path.name: path.read_text()[-1500:] for path in sorted(logs.glob("*.log"))}
    raise AssertionError(f"timed out waiting for {what}; last probe: {last}; logs: {tails}")


def _three_exchanges_same_minute(report: dict[str, Any]) -> bool:
    aggregate = report.get("aggregate") or {}
    inputs = report.get("inputs", [])
    return (
        aggregate.get("success") is True
        and aggregate.get("data_points") == 3
        and len(inputs) == 3
        and {point["minute"] for point in inputs} == {aggregate["aggregate_minute"]}
    )


def _sim_close(env: dict[str, str], venue: str, minute: int) -> Decimal:
    url = f"http://127.0.0.1:{env['ORACLE_SIM_PORT']}/_sim/close?venue={venue}&minute={minute}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["venue"] == venue
    assert int(body["minute"]) == minute
    return Decimal(body["close"])


def _recorded_pids(env: dict[str, str]) -> dict[str, int]:
    run_dir = Path(env["ORACLE_RUN_DIR"])
    return {name: int((run_dir / f"{name}.pid").read_text().split()[0]) for name in PROCESS_NAMES}


def test_simulated_system_from_start_to_stop(system_env: dict[str, str]) -> None:
    env = system_env
    started = run_script("run_multi_nodes.sh", "--simulate", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "SIMULATED MODE" in started.stdout
    pids = _recorded_pids(env)
    assert all(is_alive(pid) for pid in pids.values())
    logs = Path(env["ORACLE_LOG_DIR"])
    for log_name in ("aggregator.log", "node1_binance.log", "node2_coinbase.log"):
        assert (logs / log_name).exists()

    again = run_script("run_multi_nodes.sh", "--simulate", env=env)
    assert again.returncode == 3
    assert "REFUSED: one node per exchange" in again.stderr

    # The first collection happens at the next minute boundary (Coinbase a few seconds later).
    code, report = _wait_for(
        env, _three_exchanges_same_minute, timeout=120, what="an aggregate of three exchanges"
    )
    assert code == 0
    assert report["healthy"] is True
    assert report["simulated"] is True
    assert report["aggregate"]["message"].startswith("SIMULATED")
    assert report["health"]["active_nodes"] == 3
    minute = report["aggregate"]["aggregate_minute"]
    closes = {
        point["source"]: _sim_close(env, point["source"], minute) for point in report["inputs"]
    }
    for point in report["inputs"]:
        assert point["price"] == pytest.approx(float(closes[point["source"]]), rel=1e-12)
    # Binance is USDT-quoted and still averaged at par with the USD venues.
    assert {point["source"]: point["quote"] for point in report["inputs"]}["binance"] == "USDT"
    expected_mean = sum(closes.values()) / 3
    assert report["aggregate"]["price"] == pytest.approx(float(expected_mean), rel=1e-12)

    # A crashed node: its PID file stays behind, its exchange falls out of the active count.
    os.kill(pids["node3_kraken"], signal.SIGKILL)
    _, after = _wait_for(
        env,
        lambda r: (
            (r.get("aggregate") or {}).get("aggregate_minute", 0) > minute
            and {p["source"] for p in r["inputs"] if p["minute"] > minute}
            == {"binance", "coinbase"}
        ),
        timeout=120,
        what="the next minute from the two remaining nodes",
    )
    assert after["health"]["active_nodes"] == 2
    kraken = next(point for point in after["inputs"] if point["source"] == "kraken")
    assert kraken["minute"] == minute

    stopped = run_script("stop_nodes.sh", "--all", env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "node3_kraken: removing stale PID file" in stopped.stdout
    assert list(Path(env["ORACLE_RUN_DIR"]).glob("*.pid")) == []
    assert not any(is_alive(pid) for pid in pids.values())
