"""scripts/run_multi_nodes.sh decisions: what it keeps, what it refuses, what it checks first.

Every refusal and every configuration error leaves the running system exactly as it found it and
starts nothing. Here the script meets stand-ins (a `sleep` recorded as a running part, a fake
aggregator, a socket or a lock held by the test itself) and the programs' own `--check-config`;
full starts, failed starts and restarts with the real processes are in tests/e2e.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.proto import oracle_pb2
from tests.scripts.conftest import start_sleeper
from tests.scripts.fake_aggregator import FakeAggregator, serving
from tests.scripts.helpers import is_alive, run_script, write_pidfile

PARTS = ["aggregator", "committer", "node1_binance", "node2_coinbase", "node3_kraken"]


def _pid_files(env: dict[str, str]) -> list[str]:
    return sorted(path.name for path in Path(env["ORACLE_RUN_DIR"]).glob("*.pid"))


def _nothing_listens(env: dict[str, str]) -> bool:
    ports = ("AGGREGATOR_PORT", "SIM_PORT", "COMMITTER_PORT", "COMMITTER_HTTP_PORT")
    for name in ports:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", int(env[f"ORACLE_{name}"]))) == 0:
                return False
    return True


@pytest.fixture
def aggregator_in(script_env: dict[str, str]) -> Iterator[FakeAggregator]:
    """A fake aggregator on the script's aggregator port; set `.health.simulated` to choose."""
    fake = FakeAggregator(health=oracle_pb2.HealthResponse(healthy=True, version="0.1.0"))
    with serving(fake, int(script_env["ORACLE_AGGREGATOR_PORT"])):
        yield fake


@pytest.fixture
def lock_holder() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes that each hold a flock on a path, as a hand-started service would."""
    holders: list[subprocess.Popen[str]] = []
    yield holders
    for holder in holders:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=10)


def _hold_lock(holders: list[subprocess.Popen[str]], path: Path) -> subprocess.Popen[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    holders.append(holder)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    return holder


# --- start what is missing --------------------------------------------------------------------


def test_a_running_node_is_kept_not_started_twice(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    running_node = start_sleeper(spawn)
    pid_file = write_pidfile(Path(script_env["ORACLE_RUN_DIR"]), "node2_coinbase", running_node.pid)
    recorded = pid_file.read_text()

    result = run_script("run_multi_nodes.sh", "--only", "coinbase", env=script_env)

    assert result.returncode == 0, result.stderr
    assert f"coinbase   PID {running_node.pid}" in result.stdout
    assert "(already running)" in result.stdout
    assert "everything asked for was already running: nothing started" in result.stdout
    assert is_alive(running_node.pid)
    assert pid_file.read_text() == recorded
    assert _pid_files(script_env) == ["node2_coinbase.pid"]
    # No aggregator answers: the operator hears how to start just that part.
    assert "no aggregator answers" in result.stdout
    assert "run_multi_nodes.sh --only aggregator" in result.stdout


def test_a_part_running_in_the_other_mode_refuses_the_run(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    # A simulated aggregator of ours runs: a real node beside it would mix real prices in.
    aggregator = start_sleeper(spawn)
    run_dir = Path(script_env["ORACLE_RUN_DIR"])
    pid_file = write_pidfile(run_dir, "aggregator", aggregator.pid)
    pid_file.write_text(pid_file.read_text() + "mode=simulated\n")

    result = run_script("run_multi_nodes.sh", "--only", "kraken", env=script_env)

    assert result.returncode == 3
    assert "REFUSED, nothing was started" in result.stderr
    assert (
        f"these parts run in SIMULATED mode, but real mode was asked: aggregator (PID "
        f"{aggregator.pid})" in result.stderr
    )
    assert "run_multi_nodes.sh --simulate --only kraken" in result.stderr
    assert _pid_files(script_env) == ["aggregator.pid"]
    assert is_alive(aggregator.pid)


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
    assert _nothing_listens_but_the_fake(script_env)


def _nothing_listens_but_the_fake(env: dict[str, str]) -> bool:
    for name in ("SIM_PORT", "COMMITTER_PORT", "COMMITTER_HTTP_PORT"):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", int(env[f"ORACLE_{name}"]))) == 0:
                return False
    return True


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

    # A simulated kraken node, with no simulator: it starts (and fetches nothing) locally.
    result = run_script("run_multi_nodes.sh", "--simulate", "--only", "kraken", env=script_env)

    assert result.returncode == 0, result.stderr
    assert "nodes these scripts did not start" in result.stdout
    assert "  binance: binance-node reported 2026-11-25T23:21Z" in result.stdout
    assert "kraken:" not in result.stdout
    assert "aggregator (already running, not started by these scripts)" not in result.stdout
    assert "no exchange simulator answers" in result.stdout
    assert "run_multi_nodes.sh --simulate --only simulator" in result.stdout
    assert _pid_files(script_env) == ["node3_kraken.pid"]


# --- refusals: something else holds what a part needs -------------------------------------------


@pytest.mark.parametrize(
    ("port_variable", "args", "part"),
    [
        ("ORACLE_AGGREGATOR_PORT", (), "aggregator"),
        ("ORACLE_SIM_PORT", ("--simulate",), "simulator"),
        ("ORACLE_COMMITTER_PORT", (), "committer"),
        ("ORACLE_COMMITTER_HTTP_PORT", (), "committer"),
    ],
)
def test_port_held_by_something_else_is_refused_naming_its_holder(
    script_env: dict[str, str], port_variable: str, args: tuple[str, ...], part: str
) -> None:
    port = int(script_env[port_variable])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_script("run_multi_nodes.sh", *args, env=script_env)

    assert result.returncode == 3
    assert f"{part}: port {port} is held by pid " in result.stderr
    assert "(python" in result.stderr or "(pytest" in result.stderr  # this test process
    assert "not started by these scripts" in result.stderr
    assert _pid_files(script_env) == []


def test_a_node_id_held_by_a_hand_started_node_is_refused(
    script_env: dict[str, str], lock_holder: list[subprocess.Popen[str]]
) -> None:
    run_dir = Path(script_env["ORACLE_RUN_DIR"])
    holder = _hold_lock(lock_holder, run_dir / "node-oracle-node-2.lock")

    result = run_script("run_multi_nodes.sh", "--simulate", env=script_env)

    assert result.returncode == 3
    assert (
        f"node2_coinbase: node id oracle-node-2 is used by pid {holder.pid} (python"
        in result.stderr
    )
    assert "not started by these scripts" in result.stderr
    assert _pid_files(script_env) == []
    assert _nothing_listens(script_env)


def test_a_log_file_written_by_another_process_is_refused(
    script_env: dict[str, str], lock_holder: list[subprocess.Popen[str]]
) -> None:
    log_dir = Path(script_env["ORACLE_LOG_DIR"])
    holder = _hold_lock(lock_holder, log_dir / "aggregator.log.lock")

    result = run_script("run_multi_nodes.sh", env=script_env)

    assert result.returncode == 3
    assert (
        f"aggregator: its log file {log_dir / 'aggregator.log'} is written by pid {holder.pid}"
        in result.stderr
    )
    assert _pid_files(script_env) == []


# --- every configuration checked before anything starts ----------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        # Issue 15: this used to fail only after the simulator and aggregator were started.
        (
            "ORACLE_NODE_INTERVAL",
            "30",
            "node1_binance: oracle-node: configuration error: environment ORACLE_NODE_INTERVAL "
            "(--interval): must be an integer multiple of 60 from 60 to 86400, got 30",
        ),
        (
            "ORACLE_AGGREGATOR_QUORUM",
            "99",
            "aggregator: aggregator: configuration error: environment ORACLE_AGGREGATOR_QUORUM "
            "(--quorum): must be an integer",
        ),
        ("ORACLE_NODE_LOG_LEVEL", "chatty", "got 'chatty'"),
    ],
)
def test_a_bad_setting_starts_nothing(
    script_env: dict[str, str], variable: str, value: str, expected: str
) -> None:
    env = {**script_env, variable: value}

    result = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=120)

    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "REFUSED, nothing was started: the configuration above is not valid" in result.stderr
    assert "==> starting" not in result.stdout
    assert _pid_files(env) == []
    assert _nothing_listens(env)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("[committer]\nresync_seconds = 'x'\n", "committer: committer: configuration error:"),
        # Overridden by the run's --port, but `committer keygen` reads the file alone: once, this
        # started everything but the committer.
        ("[committer]\nport = 'fifty'\n", "committer (its file alone, as keygen reads it):"),
    ],
)
def test_a_bad_committer_config_file_starts_nothing(
    script_env: dict[str, str], tmp_path: Path, content: str, says: str
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for path in Path(__file__).resolve().parents[2].joinpath("config").glob("oracle-node-*.toml"):
        (config_dir / path.name).write_text(path.read_text())
    (config_dir / "committer.toml").write_text(content)
    env = {**script_env, "ORACLE_CONFIG_DIR": str(config_dir)}

    result = run_script("run_multi_nodes.sh", "--simulate", env=env, timeout=120)

    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert _pid_files(env) == []


def test_check_only_validates_without_starting(script_env: dict[str, str]) -> None:
    good = run_script("run_multi_nodes.sh", "--simulate", "--check-only", env=script_env)
    bad = run_script(
        "run_multi_nodes.sh",
        "--check-only",
        "--only",
        "kraken",
        env={**script_env, "ORACLE_NODE_INTERVAL": "90"},
    )

    assert good.returncode == 0, good.stderr
    assert "configuration OK: simulator aggregator committer" in good.stdout
    assert bad.returncode == 2
    assert "node3_kraken: oracle-node: configuration error" in bad.stderr
    assert _pid_files(script_env) == []


# --- the hints carry the environment ------------------------------------------------------------


def test_a_refusal_hint_carries_the_environment_in_use(
    script_env: dict[str, str], aggregator_in: FakeAggregator
) -> None:
    aggregator_in.health.simulated = True
    result = run_script("run_multi_nodes.sh", env=script_env)

    assert result.returncode == 3
    run_dir = script_env["ORACLE_RUN_DIR"]
    port = script_env["ORACLE_AGGREGATOR_PORT"]
    stop_line = next(line for line in result.stderr.splitlines() if "stop_nodes.sh --all" in line)
    assert f"ORACLE_RUN_DIR={run_dir}" in stop_line
    assert f"ORACLE_AGGREGATOR_PORT={port}" in stop_line


# --- usage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--simulated",), "unknown argument '--simulated'"),
        (("--only", "bitstamp"), "unknown part 'bitstamp'"),
        (("--only",), "--only needs a part"),
        (("--only", "simulator"), "simulated prices only: add --simulate"),
    ],
)
def test_usage_errors(script_env: dict[str, str], args: tuple[str, ...], says: str) -> None:
    result = run_script("run_multi_nodes.sh", *args, env=script_env)
    assert result.returncode == 2
    assert says in result.stderr
    assert _pid_files(script_env) == []


def test_help_is_the_header(script_env: dict[str, str]) -> None:
    result = run_script("run_multi_nodes.sh", "--help", env=script_env)
    assert result.returncode == 0
    assert result.stdout.startswith("Start the oracle, or the parts of it that are not running")
    assert "--only PART" in result.stdout
