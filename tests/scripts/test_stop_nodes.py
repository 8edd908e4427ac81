"""scripts/stop_nodes.sh: stops exactly what the PID files name, cleans stale ones, never by name.

Stand-in processes (`sleep`, some under a misleading name) play the started services: what the
script does to them is what it would do to a node, and a wrong kill is visible as a dead sleeper.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.scripts.conftest import start_sleeper
from tests.scripts.fake_aggregator import FakeAggregator, serving
from tests.scripts.helpers import (
    is_alive,
    proc_identity,
    run_script,
    wait_for_exec,
    write_pidfile,
)


def _run_dir(env: dict[str, str]) -> Path:
    return Path(env["ORACLE_RUN_DIR"])


def test_stops_the_recorded_nodes_and_removes_their_pid_files(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = _run_dir(script_env)
    nodes = {name: start_sleeper(spawn) for name in ("node1_binance", "node2_coinbase")}
    for name, process in nodes.items():
        write_pidfile(run_dir, name, process.pid)

    result = run_script("stop_nodes.sh", env=script_env)

    assert result.returncode == 0, result.stderr
    for process in nodes.values():
        process.wait(timeout=5)
    assert list(run_dir.glob("*.pid")) == []
    assert "node1_binance: stopped" in result.stdout


def test_stale_pid_file_of_a_dead_process_is_removed_without_a_signal(
    script_env: dict[str, str],
) -> None:
    run_dir = _run_dir(script_env)
    # A PID that is very unlikely to be alive: the highest a 32-bit pid_max allows.
    write_pidfile(run_dir, "node3_kraken", 4194303, identity="Wed Nov 25 10:00:00 2026")

    result = run_script("stop_nodes.sh", env=script_env)

    assert result.returncode == 0, result.stderr
    assert not (run_dir / "node3_kraken.pid").exists()
    assert "stale PID file (PID 4194303 is no longer running; no signal sent)" in result.stdout


def test_pid_reused_by_another_process_is_not_killed(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = _run_dir(script_env)
    bystander = start_sleeper(spawn, "oracle-node")
    # The file names the bystander's PID but another start time: the node it recorded is gone.
    earlier = str(int(proc_identity(bystander.pid)) - 1)
    write_pidfile(run_dir, "node1_binance", bystander.pid, identity=earlier)

    result = run_script("stop_nodes.sh", "--all", env=script_env)

    assert result.returncode == 0, result.stderr
    assert is_alive(bystander.pid)
    assert not (run_dir / "node1_binance.pid").exists()
    assert "now belongs to another process" in result.stdout


def test_a_pid_file_from_the_ps_era_is_neither_signalled_nor_dropped(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    # Older scripts recorded `ps -o lstart=`; that cannot be compared with /proc's start time, so
    # the live process might be the node they started: no signal, and the PID file stays.
    run_dir = _run_dir(script_env)
    node = start_sleeper(spawn, "oracle-node")
    pid_file = write_pidfile(
        run_dir, "node2_coinbase", node.pid, identity="Wed Nov 25 10:00:00 2026"
    )

    result = run_script("stop_nodes.sh", env=script_env)

    assert result.returncode == 1
    assert is_alive(node.pid)
    assert pid_file.exists()
    assert "older version of these scripts" in result.stderr


def test_never_kills_by_name(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    # Processes that look exactly like the oracle's by name, but were not started by the script.
    lookalikes = [
        start_sleeper(spawn, name) for name in ("oracle-node", "aggregator", "exchange-sim")
    ]

    result = run_script("stop_nodes.sh", "--all", env=script_env)

    assert result.returncode == 0, result.stderr
    assert "Nothing to stop" in result.stdout
    assert all(is_alive(process.pid) for process in lookalikes)


def test_without_all_the_aggregator_and_simulator_keep_running(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = _run_dir(script_env)
    aggregator, simulator, node = (start_sleeper(spawn) for _ in range(3))
    write_pidfile(run_dir, "aggregator", aggregator.pid)
    write_pidfile(run_dir, "simulator", simulator.pid)
    write_pidfile(run_dir, "node2_coinbase", node.pid)

    result = run_script("stop_nodes.sh", env=script_env)

    assert result.returncode == 0, result.stderr
    node.wait(timeout=5)
    assert is_alive(aggregator.pid)
    assert is_alive(simulator.pid)
    assert "keeps running; stop everything with:" in result.stdout
    # The hint, copied, acts on this system: it carries the run directory in use.
    assert f"ORACLE_RUN_DIR={run_dir} " in result.stdout

    result = run_script("stop_nodes.sh", "--all", env=script_env)

    assert result.returncode == 0, result.stderr
    aggregator.wait(timeout=5)
    simulator.wait(timeout=5)
    assert list(run_dir.glob("*.pid")) == []


def test_a_process_ignoring_sigterm_gets_sigkill_after_the_timeout(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = _run_dir(script_env)
    stubborn = subprocess.Popen(["bash", "-c", "trap '' TERM; exec sleep 120"])
    spawn.append(stubborn)
    wait_for_exec(stubborn.pid, "sleep")  # the trap is in place once bash has become sleep
    write_pidfile(run_dir, "aggregator", stubborn.pid)

    result = run_script("stop_nodes.sh", "--all", "--timeout", "1", env=script_env)

    assert result.returncode == 0, result.stderr
    assert stubborn.wait(timeout=5) == -9
    assert "sending SIGKILL" in result.stderr
    assert not (run_dir / "aggregator.pid").exists()


def test_unknown_option_is_a_usage_error(script_env: dict[str, str]) -> None:
    result = run_script("stop_nodes.sh", "--everything", env=script_env)
    assert result.returncode == 2
    assert "unknown argument" in result.stderr


def test_only_stops_the_named_parts(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = _run_dir(script_env)
    parts = {
        name: start_sleeper(spawn)
        for name in ("aggregator", "committer", "node1_binance", "node3_kraken")
    }
    for name, process in parts.items():
        write_pidfile(run_dir, name, process.pid)

    result = run_script("stop_nodes.sh", "--only", "kraken,committer", env=script_env)

    assert result.returncode == 0, result.stderr
    parts["node3_kraken"].wait(timeout=5)
    parts["committer"].wait(timeout=5)
    assert is_alive(parts["aggregator"].pid)
    assert is_alive(parts["node1_binance"].pid)
    assert sorted(path.name for path in run_dir.glob("*.pid")) == [
        "aggregator.pid",
        "node1_binance.pid",
    ]


def test_only_a_part_that_is_not_running_is_nothing_to_stop(script_env: dict[str, str]) -> None:
    result = run_script("stop_nodes.sh", "--only", "aggregator", env=script_env)
    assert result.returncode == 0
    assert "Nothing to stop" in result.stdout


def test_a_port_still_held_after_stopping_everything_is_named(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    # Issue 15: `stop_nodes.sh --all` exited 0 while a hand-started aggregator held the port.
    run_dir = _run_dir(script_env)
    node = start_sleeper(spawn)
    write_pidfile(run_dir, "node1_binance", node.pid)
    port = int(script_env["ORACLE_AGGREGATOR_PORT"])
    with serving(FakeAggregator(), port):
        result = run_script("stop_nodes.sh", "--all", env=script_env)

    assert result.returncode == 3
    node.wait(timeout=5)
    warning = next(line for line in result.stderr.splitlines() if line.startswith("WARNING"))
    assert warning.startswith(
        f"WARNING: port {port} (aggregator) is still held by pid {os.getpid()} ("
    )
    assert "not started by these scripts" in warning
    assert f"ORACLE_RUN_DIR={run_dir} " in result.stderr  # the status hint


def test_the_committer_ports_are_checked_after_stopping_it(script_env: dict[str, str]) -> None:
    http_port = int(script_env["ORACLE_COMMITTER_HTTP_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", http_port))
        squatter.listen()
        result = run_script("stop_nodes.sh", "--only", "committer", env=script_env)
    assert result.returncode == 3
    assert f"port {http_port} (committer) is still held by pid {os.getpid()}" in result.stderr


def test_stopping_the_nodes_alone_checks_no_port(script_env: dict[str, str]) -> None:
    # Nodes have no port: a held aggregator port is none of a plain stop's business.
    with serving(FakeAggregator(), int(script_env["ORACLE_AGGREGATOR_PORT"])):
        result = run_script("stop_nodes.sh", env=script_env)
    assert result.returncode == 0
    assert "WARNING" not in result.stderr


def test_all_and_only_together_is_a_usage_error(script_env: dict[str, str]) -> None:
    result = run_script("stop_nodes.sh", "--all", "--only", "kraken", env=script_env)
    assert result.returncode == 2
    assert "exclude each other" in result.stderr
