"""scripts/lib/procs.sh on its own: start times from /proc, no `ps`, and when a process is gone.

Without procps, the start time used to read as empty, so run_multi_nodes.sh took every process it
had just started for dead, deleted its PID file and left it running unrecorded. These tests source
the library with a PATH that has no `ps` at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.scripts.conftest import start_sleeper
from tests.scripts.helpers import SCRIPTS, proc_stat_fields

_TOOLS = ("bash", "dirname", "sed", "mkdir", "mv", "tail", "sleep", "cat")


def _wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _bin_without_ps(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in _TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def _source_and_run(tmp_path: Path, commands: str) -> subprocess.CompletedProcess[str]:
    bin_dir = _bin_without_ps(tmp_path)
    env = {"PATH": str(bin_dir), "ORACLE_RUN_DIR": str(tmp_path / "run"), "HOME": str(tmp_path)}
    script = f'source "{SCRIPTS}/lib/procs.sh"\n{commands}'
    return subprocess.run(
        [str(bin_dir / "bash"), "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_a_running_process_is_recognised_without_ps(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    sleeper = start_sleeper(spawn)
    result = _source_and_run(
        tmp_path,
        f"""command -v ps && exit 9
pidfile_write node1_binance {sleeper.pid}
pidfile_check node1_binance
echo "$PIDFILE_STATE|$PIDFILE_REASON"
proc_gone {sleeper.pid} && echo gone || echo alive
""",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["running|", "alive"]
    recorded = (tmp_path / "run" / "node1_binance.pid").read_text().split("\n")
    assert recorded[0] == str(sleeper.pid)
    assert recorded[1] == proc_stat_fields(sleeper.pid)[19]  # starttime, field 22
    assert recorded[1].isdigit()


def test_start_time_is_read_after_the_last_parenthesis(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    # The command name (field 2) comes from the program's file name: give it spaces and ')'.
    odd = tmp_path / "odd dir"
    odd.mkdir()
    program = odd / "x) 1 2 (y"
    sleep = shutil.which("sleep")
    assert sleep is not None
    program.symlink_to(sleep)
    process = subprocess.Popen([str(program), "120"], start_new_session=True)
    spawn.append(process)
    stat = Path(f"/proc/{process.pid}/stat")
    _wait_until(lambda: ") 1 2 (" in stat.read_text(encoding="utf-8"))
    result = _source_and_run(tmp_path, f"proc_identity {process.pid}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == proc_stat_fields(process.pid)[19]


def test_exited_and_zombie_processes_are_gone(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    zombie = subprocess.Popen(["true"])  # exits at once; not reaped until wait() below
    try:
        _wait_until(lambda: proc_stat_fields(zombie.pid)[:1] == ["Z"])
        result = _source_and_run(
            tmp_path,
            f"""proc_gone {finished.pid} && echo gone || echo alive
proc_gone {zombie.pid} && echo gone || echo alive
proc_gone {os.getpid()} && echo gone || echo alive
""",
        )
    finally:
        zombie.wait()
    assert result.stdout.splitlines() == ["gone", "gone", "alive"]


def test_gone_is_answered_right_inside_an_exit_trap(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    # test_exchanges.sh asks from its EXIT trap whether its temporary simulator still runs; a bare
    # `return` there would answer with the status from before the trap.
    sleeper = start_sleeper(spawn)
    result = _source_and_run(
        tmp_path, f"trap 'proc_gone {sleeper.pid} && echo gone || echo alive' EXIT\ntrue"
    )
    assert result.stdout.splitlines() == ["alive"]


def test_a_pid_file_records_how_the_part_was_started(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = _source_and_run(
            tmp_path,
            f"pidfile_write committer {sleeper.pid} mode=simulated 'log=/var/log/a b.log'\n"
            "pidfile_check committer; echo state=$PIDFILE_STATE\n"
            "pidfile_field committer mode; pidfile_field committer log; pidfile_field committer x",
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["state=running", "simulated", "/var/log/a b.log"]
    lines = (tmp_path / "run" / "committer.pid").read_text().splitlines()
    assert lines[0] == str(sleeper.pid)
    assert lines[2:] == ["mode=simulated", "log=/var/log/a b.log"]


def test_a_hint_carries_the_variables_in_use_quoted_and_absolute(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", "-c", f'source "{SCRIPTS}/lib/procs.sh"; oracle_hint stop_nodes.sh --only kraken'],
        env={
            "PATH": os.environ["PATH"],
            "ORACLE_RUN_DIR": "my run",  # relative, with a space
            "ORACLE_SIM_PORT": "8199",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run_dir = str(tmp_path / "my run").replace(" ", "\\ ")
    assert result.stdout.strip() == (
        f"ORACLE_RUN_DIR={run_dir} ORACLE_SIM_PORT=8199 {SCRIPTS}/stop_nodes.sh --only kraken"
    )
    # Pasted into a shell, it sets exactly those values.
    echoed = subprocess.run(
        [
            "bash",
            "-c",
            result.stdout.strip().replace(f"{SCRIPTS}/stop_nodes.sh --only kraken", "printenv"),
        ],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert f"ORACLE_RUN_DIR={tmp_path / 'my run'}" in echoed.stdout.splitlines()
