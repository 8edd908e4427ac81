"""scripts/status.sh: each part's state, PID, uptime, endpoint, log and whether it answers.

Stand-ins play the parts: a `sleep` recorded as a node (its liveness is its log's freshness), a
fake aggregator and a fake committer answering on their ports, a PID file left by a dead process.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from common.proto import committer_pb2, committer_pb2_grpc, oracle_pb2
from tests.scripts.conftest import start_sleeper
from tests.scripts.fake_aggregator import FakeAggregator, serving
from tests.scripts.helpers import run_script, write_pidfile


def _status(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = run_script("status.sh", "--json", env=env)
    document = json.loads(result.stdout)
    assert document["exit"] == result.returncode
    return result.returncode, {part["name"]: part for part in document["parts"]}


class FakeCommitter(committer_pb2_grpc.CommitterServiceServicer):
    def GetOracleInfo(
        self, request: committer_pb2.GetOracleInfoRequest, context: grpc.ServicerContext
    ) -> committer_pb2.OracleInfo:
        return committer_pb2.OracleInfo(oracle_public_key=bytes(range(32)), simulated=True)


@contextmanager
def committer_on(port: int) -> Iterator[None]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    committer_pb2_grpc.add_CommitterServiceServicer_to_server(FakeCommitter(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield
    finally:
        server.stop(grace=None)


def test_nothing_started_exits_3_and_says_how_to_start(script_env: dict[str, str]) -> None:
    result = run_script("status.sh", env=script_env)
    assert result.returncode == 3
    assert "Nothing was started by these scripts" in result.stdout
    assert f"ORACLE_RUN_DIR={script_env['ORACLE_RUN_DIR']} " in result.stdout
    assert "run_multi_nodes.sh [--simulate]" in result.stdout


def test_a_running_node_with_a_fresh_log_answers(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir, log_dir = Path(script_env["ORACLE_RUN_DIR"]), Path(script_env["ORACLE_LOG_DIR"])
    node = start_sleeper(spawn)
    log = log_dir / "node3_kraken.log"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"event": "price_submitted"}) + "\n")
    pid_file = write_pidfile(run_dir, "node3_kraken", node.pid)
    pid_file.write_text(pid_file.read_text() + f"mode=simulated\nlog={log}\n")

    code, parts = _status(script_env)

    assert code == 0
    kraken = parts["node3_kraken"]
    assert kraken["state"] == "running"
    assert kraken["pid"] == node.pid
    assert 0 <= kraken["uptime_seconds"] < 60
    assert kraken["answers"] is True
    assert "(price_submitted)" in kraken["detail"]
    assert kraken["log"] == str(log)
    assert parts["aggregator"]["state"] == "stopped"
    text = run_script("status.sh", env=script_env).stdout
    assert "[SIMULATED]" in text


def test_a_node_whose_log_went_silent_does_not_answer(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir, log_dir = Path(script_env["ORACLE_RUN_DIR"]), Path(script_env["ORACLE_LOG_DIR"])
    node = start_sleeper(spawn)
    log = log_dir / "node1_binance.log"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"event": "fetch_started"}) + "\n")
    old = time.time() - 600
    os.utime(log, (old, old))
    write_pidfile(run_dir, "node1_binance", node.pid)

    code, parts = _status(script_env)

    assert code == 1
    assert parts["node1_binance"]["answers"] is False
    assert "log silent for" in parts["node1_binance"]["detail"]


def test_a_pid_file_that_outlived_its_process_is_dead(script_env: dict[str, str]) -> None:
    write_pidfile(Path(script_env["ORACLE_RUN_DIR"]), "aggregator", 4194303, identity="1")
    code, parts = _status(script_env)
    assert code == 1
    assert parts["aggregator"]["state"] == "dead"
    text = run_script("status.sh", env=script_env).stdout
    assert "Some part is down. Start what is missing:" in text


def test_an_aggregator_started_by_hand_is_shown_as_such(script_env: dict[str, str]) -> None:
    fake = FakeAggregator(
        health=oracle_pb2.HealthResponse(healthy=True, active_nodes=3, message="all fresh")
    )
    with serving(fake, int(script_env["ORACLE_AGGREGATOR_PORT"])):
        code, parts = _status(script_env)
    aggregator = parts["aggregator"]
    assert aggregator["state"] == "running (not started by these scripts)"
    assert aggregator["answers"] is True
    assert aggregator["detail"] == "healthy, 3 active node(s): all fresh"
    assert code == 3  # nothing of these scripts' runs


def test_the_aggregator_and_committer_are_asked_over_grpc(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    run_dir = Path(script_env["ORACLE_RUN_DIR"])
    for name in ("aggregator", "committer"):
        write_pidfile(run_dir, name, start_sleeper(spawn).pid)
    fake = FakeAggregator(health=oracle_pb2.HealthResponse(healthy=False, simulated=True))
    with (
        serving(fake, int(script_env["ORACLE_AGGREGATOR_PORT"])),
        committer_on(int(script_env["ORACLE_COMMITTER_PORT"])),
    ):
        code, parts = _status(script_env)
    assert code == 0  # answering is alive; unhealthy is the aggregator's own data verdict
    assert parts["aggregator"]["detail"].startswith("UNHEALTHY, 0 active node(s)")
    assert parts["aggregator"]["simulated"] is True
    committer = parts["committer"]
    assert committer["answers"] is True
    assert committer["detail"] == "oracle key 0001020304050607..."
    assert committer["simulated"] is True
    assert fake.probes == ["probe:status"]  # a probe id, never taken for a node


def test_a_recorded_part_that_does_not_answer_is_down(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    write_pidfile(Path(script_env["ORACLE_RUN_DIR"]), "committer", start_sleeper(spawn).pid)
    code, parts = _status(script_env)
    assert code == 1
    assert parts["committer"]["state"] == "running"
    assert parts["committer"]["answers"] is False
    assert "unavailable" in parts["committer"]["detail"]


def test_usage_error(script_env: dict[str, str]) -> None:
    result = run_script("status.sh", "--yaml", env=script_env)
    assert result.returncode == 2
