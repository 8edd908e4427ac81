"""scripts/run_multi_nodes.sh refusals: each leaves the running system exactly as it found it.

The full start (simulator, aggregator, three nodes) is exercised in tests/e2e; here the script
meets stand-ins: a `sleep` recorded as a running node, a fake aggregator in the other mode, a port
held by something that is not the oracle.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.proto import oracle_pb2
from tests.scripts.conftest import start_sleeper
from tests.scripts.fake_aggregator import FakeAggregator, serving
from tests.scripts.helpers import is_alive, run_script, write_pidfile


def _pid_files(env: dict[str, str]) -> list[str]:
    return sorted(path.name for path in Path(env["ORACLE_RUN_DIR"]).glob("*.pid"))


@pytest.fixture
def aggregator_in(script_env: dict[str, str]) -> Iterator[FakeAggregator]:
    """A fake aggregator on the script's aggregator port; set `.health.simulated` to choose."""
    fake = FakeAggregator(health=oracle_pb2.HealthResponse(healthy=True, version="0.1.0"))
    with serving(fake, int(script_env["ORACLE_AGGREGATOR_PORT"])):
        yield fake


def test_second_node_for_a_running_exchange_is_refused_and_nothing_starts(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    running_node = start_sleeper(spawn)
    pid_file = write_pidfile(Path(script_env["ORACLE_RUN_DIR"]), "node2_coinbase", running_node.pid)
    recorded = pid_file.read_text()

    result = run_script("run_multi_nodes.sh", "--simulate", env=script_env)

    assert result.returncode == 3
    assert "REFUSED: one node per exchange" in result.stderr
    assert f"coinbase: node PID {running_node.pid} is still running" in result.stderr
    assert "stop_nodes.sh" in result.stderr
    assert is_alive(running_node.pid)
    assert pid_file.read_text() == recorded
    assert _pid_files(script_env) == ["node2_coinbase.pid"]


def test_real_run_refused_when_the_aggregator_is_simulated(
    script_env: dict[str, str], aggregator_in: FakeAggregator
) -> None:
    aggregator_in.health.simulated = True
    # A stale node PID file is cleaned on the way, before the refusal.
    write_pidfile(
        Path(script_env["ORACLE_RUN_DIR"]), "node1_binance", 4194303, identity="Mon Jan  1 2024"
    )

    result = run_script("run_multi_nodes.sh", env=script_env)

    assert result.returncode == 3
    assert "runs in SIMULATED mode, but real mode was asked" in result.stderr
    assert "removing stale PID file" in result.stdout
    assert _pid_files(script_env) == []


def test_simulate_run_refused_when_the_aggregator_is_real(
    script_env: dict[str, str], aggregator_in: FakeAggregator
) -> None:
    aggregator_in.health.simulated = False

    result = run_script("run_multi_nodes.sh", "--simulate", env=script_env)

    assert result.returncode == 3
    assert "runs in REAL mode, but --simulate was asked" in result.stderr
    assert "SIMULATED MODE" in result.stdout
    # The simulator is decided on but not started before the refusal.
    assert _pid_files(script_env) == []


def test_nodes_started_by_hand_are_pointed_out(
    script_env: dict[str, str], aggregator_in: FakeAggregator
) -> None:
    aggregator_in.health.simulated = True
    aggregator_in.price.recent_prices.extend(
        [
            oracle_pb2.PriceDataPoint(
                price=1.0, timestamp=1_795_648_860, source="binance", node_id="binance-node"
            ),
            oracle_pb2.PriceDataPoint(
                price=1.0, timestamp=1_795_648_860, source="kraken", node_id="oracle-node-3"
            ),
        ]
    )

    result = run_script("run_multi_nodes.sh", env=script_env)

    assert "nodes these scripts did not start" in result.stdout
    assert "  binance: binance-node reported 2026-11-25T23:21Z" in result.stdout
    assert "kraken:" not in result.stdout
    assert result.returncode == 3  # and the mode mismatch still refuses


@pytest.mark.parametrize(
    ("port_variable", "args", "expected"),
    [
        ("ORACLE_AGGREGATOR_PORT", (), "does not answer the oracle's HealthCheck"),
        ("ORACLE_SIM_PORT", ("--simulate",), "is not the exchange simulator"),
    ],
)
def test_port_held_by_something_else_is_refused(
    script_env: dict[str, str], port_variable: str, args: tuple[str, ...], expected: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(script_env[port_variable])))
        squatter.listen()
        result = run_script("run_multi_nodes.sh", *args, env=script_env)

    assert result.returncode == 3
    assert expected in result.stderr
    assert _pid_files(script_env) == []


def test_unknown_option_is_a_usage_error(script_env: dict[str, str]) -> None:
    result = run_script("run_multi_nodes.sh", "--simulated", env=script_env)
    assert result.returncode == 2
    assert "unknown argument '--simulated'" in result.stderr


@pytest.fixture
def stopped_afterwards(script_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The script env, with `stop_nodes.sh --all` run afterwards for whatever a test started."""
    yield script_env
    run_script("stop_nodes.sh", "--all", "--timeout", "5", env=script_env)


@pytest.mark.e2e  # starts the real aggregator process
def test_aggregator_that_cannot_start_is_reported_with_its_log(
    stopped_afterwards: dict[str, str],
) -> None:
    env = {**stopped_afterwards, "ORACLE_AGGREGATOR_QUORUM": "99"}

    result = run_script("run_multi_nodes.sh", env=env)

    assert result.returncode == 1
    assert "aggregator (PID" in result.stderr
    assert "exited during startup" in result.stderr
    # The tail of logs/aggregator.log: the one-line configuration error.
    assert "environment ORACLE_AGGREGATOR_QUORUM (--quorum): must be an integer" in result.stderr
    assert _pid_files(env) == []


@pytest.mark.e2e  # starts the real aggregator and node processes
def test_node_that_cannot_start_is_reported_and_the_rest_keep_running(
    stopped_afterwards: dict[str, str],
) -> None:
    # A node refuses a bad setting after importing its libraries (pydantic among them, ~0.6 s
    # on a quiet machine): on a loaded one the default 2 s settle time can pass before it exits.
    env = {**stopped_afterwards, "ORACLE_NODE_LOG_LEVEL": "chatty", "ORACLE_NODE_SETTLE": "6"}

    result = run_script("run_multi_nodes.sh", env=env)

    assert result.returncode == 1
    for exchange in ("binance", "coinbase", "kraken"):
        assert f"the {exchange} node (PID" in result.stderr
    assert "ORACLE_NODE_LOG_LEVEL (--log-level): must be one of" in result.stderr
    assert "got 'chatty'" in result.stderr
    assert "stop_nodes.sh" in result.stderr
    assert _pid_files(env) == ["aggregator.pid"]


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


@pytest.mark.e2e  # starts the real simulator, aggregator and node processes
def test_a_system_without_ps_starts_and_stops_every_process(
    stopped_afterwards: dict[str, str], tmp_path: Path
) -> None:
    env = {**stopped_afterwards, "PATH": _path_without_ps(tmp_path, os.environ["PATH"])}
    assert shutil.which("ps", path=env["PATH"]) is None

    started = run_script("run_multi_nodes.sh", "--simulate", env=env)

    assert started.returncode == 0, started.stdout + started.stderr
    assert "exited during startup" not in started.stderr
    names = ["aggregator", "node1_binance", "node2_coinbase", "node3_kraken", "simulator"]
    assert _pid_files(env) == [f"{name}.pid" for name in names]
    run_dir = Path(env["ORACLE_RUN_DIR"])
    pids = [int((run_dir / f"{name}.pid").read_text().split()[0]) for name in names]
    assert all(is_alive(pid) for pid in pids)

    stopped = run_script("stop_nodes.sh", "--all", "--timeout", "10", env=env)

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert _pid_files(env) == []
    assert not any(is_alive(pid) for pid in pids)
