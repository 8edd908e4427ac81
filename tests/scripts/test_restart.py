"""scripts/restart.sh decisions that need no real process: the mode it restarts in, refusals.

Restarting real parts while the others run is in tests/e2e/test_run_scripts.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.scripts.conftest import start_sleeper
from tests.scripts.helpers import is_alive, run_script, write_pidfile


def test_simulate_is_refused_while_the_system_runs_in_real_mode(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    aggregator = start_sleeper(spawn)
    pid_file = write_pidfile(Path(script_env["ORACLE_RUN_DIR"]), "aggregator", aggregator.pid)
    pid_file.write_text(pid_file.read_text() + "mode=real\n")

    result = run_script("restart.sh", "--simulate", "--only", "kraken", env=script_env)

    assert result.returncode == 3
    assert "the system runs in real mode; --simulate would mix simulated prices in" in result.stderr
    assert is_alive(aggregator.pid)


def test_a_bad_setting_refuses_the_restart_and_keeps_the_old_process(
    script_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    node = start_sleeper(spawn)
    pid_file = write_pidfile(Path(script_env["ORACLE_RUN_DIR"]), "node3_kraken", node.pid)
    recorded = pid_file.read_text()

    result = run_script(
        "restart.sh", "--only", "kraken", env={**script_env, "ORACLE_NODE_INTERVAL": "30"}
    )

    assert result.returncode == 2
    assert "node3_kraken: oracle-node: configuration error" in result.stderr
    assert "nothing was changed" in result.stderr
    assert is_alive(node.pid)
    assert pid_file.read_text() == recorded


def test_unknown_part_is_a_usage_error(script_env: dict[str, str]) -> None:
    result = run_script("restart.sh", "--only", "mars", env=script_env)
    assert result.returncode == 2
    assert "unknown part 'mars'" in result.stderr
