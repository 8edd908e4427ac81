"""One process per node id and per log file: the second node refuses to start, naming the first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import ConfigError
from oracle_node.instance_lock import lock_log_file, lock_node_id

BIN = Path(sys.executable).parent / "oracle-node"


def test_a_held_node_id_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    first = lock_node_id(tmp_path / "run", "oracle-node-1")
    try:
        with pytest.raises(
            ConfigError, match=rf"'oracle-node-1' is already used .*pid {os.getpid()}"
        ):
            lock_node_id(tmp_path / "run", "oracle-node-1")
        other = lock_node_id(tmp_path / "run", "oracle-node-2")  # another id is free
        other.release()
        assert (tmp_path / "run" / "node-oracle-node-1.lock").read_text() == f"{os.getpid()}\n"
    finally:
        first.release()
    again = lock_node_id(tmp_path / "run", "oracle-node-1")  # released: free again
    again.release()


def test_a_held_log_file_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    first = lock_log_file(log)
    try:
        with pytest.raises(ConfigError, match=rf"node.log' is already written .*pid {os.getpid()}"):
            lock_log_file(log)
    finally:
        first.release()
    lock_log_file(log).release()


def test_a_run_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"run directory .*cannot create it"):
        lock_node_id(blocker / "run", "n1")


def _node(tmp_path: Path, node_id: str, log: Path) -> list[str]:
    return [
        str(BIN),
        "--config",
        os.devnull,
        "--node-id",
        node_id,
        "--aggregator-url",
        "127.0.0.1:9",
        "--api-url",
        "http://127.0.0.1:9",
        "--log-file",
        str(log),
        "--run-dir",
        str(tmp_path / "run"),
    ]


@pytest.fixture
def running_node(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path / "first.log"
    process = subprocess.Popen(_node(tmp_path, "shared-id", log), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while "node_started" not in (log.read_text() if log.exists() else ""):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the first node did not start"
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def _second(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_a_second_node_with_the_same_id_refuses_to_start(
    running_node: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    result = _second(_node(tmp_path, "shared-id", tmp_path / "second.log"))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"oracle-node: configuration error: node id 'shared-id' is already used by another "
        f"running node (pid {running_node.pid}, lock {tmp_path / 'run' / 'node-shared-id.lock'}): "
        "stop that node or give this one another --node-id"
    ]
    assert not (tmp_path / "second.log").exists()  # refused before logging started
    assert running_node.poll() is None  # the first one is untouched


def test_a_second_node_on_the_same_log_file_refuses_to_start(
    running_node: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    log = tmp_path / "first.log"
    before = log.read_text()

    result = _second(_node(tmp_path, "another-id", log))

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert f"log file '{log}' is already written by another running node" in line
    assert f"pid {running_node.pid}" in line
    node_ids = {json.loads(entry).get("node_id") for entry in log.read_text().splitlines()}
    assert node_ids == {"shared-id"}, "the refused node wrote into the first node's log"
    assert log.read_text().startswith(before)


def test_once_takes_no_lock(running_node: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """`--once` submits nothing, so checking an exchange works while the node runs."""
    quick = tmp_path / "quick.toml"
    quick.write_text("[binance]\nmax_retries = 0\n", encoding="utf-8")
    command = [
        *_node(tmp_path, "shared-id", tmp_path / "once.log"),
        "--once",
        "--config",
        str(quick),
    ]
    result = _second(command)
    assert "already used" not in result.stderr
    assert result.returncode == 1  # nothing listens on port 9: the fetch fails, not the lock


@pytest.mark.e2e  # starts the real simulator, aggregator and nodes through the run script
def test_a_hand_started_copy_of_a_scripted_node_is_refused(tmp_path: Path) -> None:
    from tests.scripts.helpers import REPO_ROOT, free_port, run_script

    env = {key: value for key, value in os.environ.items() if not key.startswith("ORACLE_")}
    env.update(
        ORACLE_RUN_DIR=str(tmp_path / "run"),
        ORACLE_LOG_DIR=str(tmp_path / "logs"),
        ORACLE_AGGREGATOR_HOST="127.0.0.1",
        ORACLE_AGGREGATOR_PORT=str(free_port()),
        ORACLE_SIM_PORT=str(free_port()),
    )
    try:
        started = run_script("run_multi_nodes.sh", "--simulate", env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        scripted = int((tmp_path / "run" / "node1_binance.pid").read_text().split()[0])
        # The operator's copy-paste from the README, in the same environment.
        result = subprocess.run(
            [str(BIN), "--config", "config/oracle-node-1.toml", "--simulate"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert (
            f"node id 'oracle-node-1' is already used by another running node (pid {scripted}"
            in (result.stderr)
        )
    finally:
        run_script("stop_nodes.sh", "--all", "--timeout", "5", env=env)
