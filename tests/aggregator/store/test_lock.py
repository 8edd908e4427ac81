"""A second aggregator on the same history refuses to start, and a dead one never blocks a new one.

The first aggregator is a real process (hold_history) so the lock is tested across processes,
as it matters in production; the kernel drops the lock of a SIGKILLed holder.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from aggregator.store import SqliteHistoryStore
from common.errors import ConfigError
from tests.aggregator.store import processes
from tests.aggregator.store.builders import T0, FakeClock


def start_holder(db_path: Path) -> tuple[subprocess.Popen[str], int]:
    holder = processes.start("hold_history", str(db_path))
    reader = processes.LineReader(holder)
    assert reader.wait_for(lambda lines: any(line.startswith("held") for line in lines)), (
        holder.stderr.read() if holder.stderr else ""
    )
    pid = int(next(line for line in reader.lines if line.startswith("held")).split()[1])
    return holder, pid


async def test_a_second_aggregator_on_the_same_file_refuses_to_start(
    db_path: Path, clock: FakeClock
) -> None:
    holder, pid = start_holder(db_path)
    try:
        with pytest.raises(ConfigError) as error:
            SqliteHistoryStore(db_path, simulate=False, clock=clock)
        message = str(error.value)
        assert str(db_path) in message
        assert f"pid {pid}" in message
        assert "another aggregator" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder closes its store cleanly and exits
        assert holder.wait(10) == 0

    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        assert [o.node_id for o in store.recover(T0 + 65, 600).observations] == ["holder"]
    finally:
        await store.close()


async def test_a_killed_aggregator_leaves_no_stale_lock(db_path: Path, clock: FakeClock) -> None:
    holder, _pid = start_holder(db_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)

    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        assert [o.node_id for o in store.recover(T0 + 65, 600).observations] == ["holder"]
    finally:
        await store.close()


async def test_a_second_store_in_the_same_process_is_refused_too(
    db_path: Path, clock: FakeClock
) -> None:
    first = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        with pytest.raises(ConfigError, match="another aggregator"):
            SqliteHistoryStore(db_path, simulate=False, clock=clock)
    finally:
        await first.close()
    second = SqliteHistoryStore(db_path, simulate=False, clock=clock)  # released on close
    await second.close()
