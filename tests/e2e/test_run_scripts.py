"""End to end: the operator's scripts run the whole oracle on simulated prices, as a newcomer would.

`run_multi_nodes.sh --simulate` starts the real simulator, aggregator, committer (and explorer
where installed) and three nodes as processes; `test_aggregator.py --json` sees an aggregate of
three exchanges equal to the mean of the simulator's own closes for that minute; `status.sh`
shows every part answering; a killed node is started again alone ("start what is missing"), the
aggregator restarted alone while the others run; and the "Stop:" line the run printed, copied
into a clean shell, stops everything and leaves no PID file. Everything runs on free ports with
its own directories, so an operator's running system is never touched. Nodes collect at real
minute boundaries, so this takes about two minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.scripts.conftest import isolated_env, stop_everything
from tests.scripts.helpers import REPO_ROOT, SCRIPTS, is_alive, run_script

pytestmark = pytest.mark.e2e

NODE_TIMEOUT = 30  # seconds a node stays active after a submission (the default is 120)
PROCESS_NAMES = (
    "aggregator",
    "committer",
    "node1_binance",
    "node2_coinbase",
    "node3_kraken",
    "simulator",
)


@pytest.fixture
def system_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = isolated_env(tmp_path)
    env.update(ORACLE_AGGREGATOR_NODE_TIMEOUT=str(NODE_TIMEOUT), ORACLE_START_TIMEOUT="30")
    yield env
    stop_everything(env)


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
    return completed.returncode, json.loads(completed.stdout, parse_float=Decimal)


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


def _three_exchanges_same_minute(report: dict[str, Any], after: int = 0) -> bool:
    aggregate = report.get("aggregate") or {}
    inputs = report.get("inputs", [])
    return (
        aggregate.get("success") is True
        and aggregate.get("data_points") == 3
        and aggregate.get("aggregate_minute", 0) > after
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
    return {path.stem: int(path.read_text().split()[0]) for path in sorted(run_dir.glob("*.pid"))}


def _status(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = run_script("status.sh", "--json", env=env)
    parts = {part["name"]: part for part in json.loads(result.stdout)["parts"]}
    return result.returncode, parts


def _log_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_simulated_system_from_start_to_stop(system_env: dict[str, str]) -> None:
    env = system_env
    started = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "SIMULATED MODE" in started.stdout
    pids = _recorded_pids(env)
    explorer = "explorer" in pids
    assert set(pids) == set(PROCESS_NAMES) | ({"explorer"} if explorer else set())
    assert all(is_alive(pid) for pid in pids.values())
    # The committer: keys made on first run (0600), SIMULATED, its endpoints printed.
    work_dir = Path(env["ORACLE_STATE_DIR"]) / "data" / "simulated"
    for key in ("committer.key", "committer-dlc-seed.key", "committer-anchor.key"):
        assert (work_dir / "keys" / key).stat().st_mode & 0o777 == 0o600
    http = f"http://127.0.0.1:{env['ORACLE_COMMITTER_HTTP_PORT']}"
    assert f"gRPC 127.0.0.1:{env['ORACLE_COMMITTER_PORT']}  HTTP {http}/v1/oracle" in started.stdout
    with urllib.request.urlopen(f"{http}/v1/oracle", timeout=5) as answer:  # noqa: S310 - http
        assert json.loads(answer.read())["simulated"] is True
    if explorer:
        assert f"Explorer: http://127.0.0.1:{env['ORACLE_EXPLORER_PORT']}/" in started.stdout
    # The aggregator's Prometheus endpoint is printed and answers; SIMULATED in its info.
    metrics = f"http://127.0.0.1:{env['ORACLE_AGGREGATOR_METRICS_PORT']}/metrics"
    assert f"metrics {metrics}" in started.stdout
    with urllib.request.urlopen(metrics, timeout=5) as answer:
        info = next(
            line
            for line in answer.read().decode().splitlines()
            if line.startswith("oracle_aggregator_info")
        )
        assert 'simulated="true"' in info

    # A second run has nothing to start: everything runs already.
    again = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "nothing started" in again.stdout
    assert _recorded_pids(env) == pids

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
        assert point["price"] == closes[point["source"]]  # exact decimals, not doubles
    # Binance is USDT-quoted: converted with the USDT/USD rate the Kraken and Coinbase nodes
    # collect (or, with no rate yet, taken at par and flagged so).
    assert {point["source"]: point["quote"] for point in report["inputs"]}["binance"] == "USDT"
    usdt = report["aggregate"]["usdt"]
    assert usdt["converted"] != usdt["at_par"]
    rate = Decimal(str(usdt["rate"])) if usdt["converted"] else Decimal(1)
    expected_mean = (closes["binance"] * rate + closes["coinbase"] + closes["kraken"]) / 3
    # The rate travels as a double; the price itself is exact (its e8 field).
    assert abs(report["aggregate"]["price"] - expected_mean) <= Decimal("1e-6")
    assert report["aggregate"]["status"] == "OK"

    code, parts = _status(env)
    assert code == 0, parts
    for name in PROCESS_NAMES:
        assert parts[name]["state"] == "running", parts[name]
        assert parts[name]["answers"] is True, parts[name]

    # Logs: fixed event names (the mode is a field), and every node line names its node.
    logs = Path(env["ORACLE_LOG_DIR"])
    aggregates = [e for e in _log_events(logs / "aggregator.log") if e["event"] == "aggregate"]
    assert aggregates
    assert {event["mode"] for event in aggregates} == {"SIMULATED"}
    coinbase = _log_events(logs / "node2_coinbase.log")
    assert all(event.get("node_id") == "oracle-node-2" for event in coinbase)

    # A crashed node: status says so, and the next run starts it alone.
    os.kill(pids["node3_kraken"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_alive(pids["node3_kraken"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    code, parts = _status(env)
    assert code == 1
    assert parts["node3_kraken"]["state"] == "dead"
    missing = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=120)
    assert missing.returncode == 0, missing.stdout + missing.stderr
    assert "==> starting kraken node oracle-node-3" in missing.stdout
    assert missing.stdout.count("==> starting") == 1
    after_missing = _recorded_pids(env)
    assert after_missing["node3_kraken"] != pids["node3_kraken"]
    assert {k: v for k, v in after_missing.items() if k != "node3_kraken"} == {
        k: v for k, v in pids.items() if k != "node3_kraken"
    }

    # The aggregator restarted alone, the others untouched; the nodes deliver to the new one.
    restarted = run_script("restart.sh", "--only", "aggregator", env=env, timeout=120)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after_restart = _recorded_pids(env)
    assert after_restart["aggregator"] != pids["aggregator"]
    assert {k: v for k, v in after_restart.items() if k != "aggregator"} == {
        k: v for k, v in after_missing.items() if k != "aggregator"
    }
    _wait_for(
        env,
        lambda r: _three_exchanges_same_minute(r, after=minute),
        timeout=120,
        what="a later minute of three exchanges at the restarted aggregator",
    )

    # The "Stop:" line, copied as printed into a shell that knows nothing of this environment,
    # stops this system (not the default run/ one).
    stop_line = next(line for line in started.stdout.splitlines() if "--all" in line)
    command = stop_line.split("   (")[0].strip()
    assert command.startswith(f"ORACLE_RUN_DIR={env['ORACLE_RUN_DIR']} ")
    stopped = subprocess.run(
        ["bash", "-c", command],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert list(Path(env["ORACLE_RUN_DIR"]).glob("*.pid")) == []
    assert not any(is_alive(pid) for pid in after_restart.values())


def test_a_part_that_fails_at_start_is_reported_and_started_alone_once_fixed(
    system_env: dict[str, str],
) -> None:
    env = system_env
    # A file that is not the committer's database: only opening it tells (no --check-config can).
    database = Path(env["ORACLE_STATE_DIR"]) / "data" / "simulated" / "data" / "committer.sqlite3"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"not a database, " * 512)

    failed = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=180)

    assert failed.returncode == 1
    assert "ERROR: committer (PID" in failed.stderr
    assert "exited during startup" in failed.stderr
    assert "committer.sqlite3" in failed.stderr  # its own reason, from its output
    assert "Did not start: committer; the others keep running." in failed.stderr
    pids = _recorded_pids(env)
    assert "committer" not in pids
    assert all(is_alive(pid) for pid in pids.values())

    database.unlink()
    fixed = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=180)

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.count("==> starting") == 1
    assert "==> starting the committer" in fixed.stdout
    assert {k: v for k, v in _recorded_pids(env).items() if k != "committer"} == pids


def _path_without_ps(tmp_path: Path, path: str) -> str:
    """A PATH with every program of `path` except `ps` (as on a system without procps)."""
    bin_dir = tmp_path / "no-ps-bin"
    bin_dir.mkdir()
    for directory in path.split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = bin_dir / entry.name
            if entry.name != "ps" and not target.exists() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return str(bin_dir)


def test_a_system_without_ps_starts_and_stops_every_process(
    system_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**system_env, "PATH": _path_without_ps(tmp_path, os.environ["PATH"])}
    assert shutil.which("ps", path=env["PATH"]) is None

    started = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=180)

    assert started.returncode == 0, started.stdout + started.stderr
    assert "exited during startup" not in started.stderr
    pids = _recorded_pids(env)
    assert set(PROCESS_NAMES) <= set(pids)
    assert all(is_alive(pid) for pid in pids.values())

    stopped = run_script("stop_nodes.sh", "--all", "--timeout", "10", env=env)

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert _recorded_pids(env) == {}
    assert not any(is_alive(pid) for pid in pids.values())
