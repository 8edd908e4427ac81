"""Group commit: concurrent writes share transactions, none is answered before its commit, and
a failed commit fails exactly the writes it carried.

The commit is held back for real: another connection takes SQLite's write lock, as a slow disk
or a long checkpoint would, while the aggregator's writes queue behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import grpc
import pytest

from aggregator.store import (
    DuplicateRoundError,
    HistoryUnavailableError,
    ObservationConflictError,
    SqliteHistoryStore,
)
from tests.aggregator.store.builders import T0, FakeClock, node_row, observation, round_record


def writes(count: int) -> list:  # type: ignore[type-arg]
    return [observation(node_id=f"node-{i}", minute=T0) for i in range(count)]


async def test_writes_waiting_for_a_commit_share_one_transaction(
    sqlite_store: SqliteHistoryStore, db_path: Path
) -> None:
    before = sqlite_store.stats()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit until this ends
    try:
        pending = [asyncio.create_task(sqlite_store.add_observation(r)) for r in writes(64)]
        await asyncio.sleep(0.2)
        # Durable on return: not one of them may have been answered yet.
        assert not any(task.done() for task in pending)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await asyncio.gather(*pending)

    after = sqlite_store.stats()
    assert after.writes - before.writes == 64
    # The first write may have been taken alone before the lock stopped it; the other 63
    # queued meanwhile and were committed together.
    assert after.batches - before.batches <= 2
    assert after.largest_batch >= 63
    assert len(sqlite_store.recover(T0 + 65, 600).observations) == 64


async def test_concurrent_writes_are_batched_without_any_lock_held(
    sqlite_store: SqliteHistoryStore,
) -> None:
    before = sqlite_store.stats()
    await asyncio.gather(*(sqlite_store.add_observation(r) for r in writes(256)))

    after = sqlite_store.stats()
    assert after.writes - before.writes == 256
    assert after.batches - before.batches < 64  # fewer commits (fsyncs) than a quarter


async def test_a_write_that_breaks_its_own_rule_fails_alone(
    sqlite_store: SqliteHistoryStore, db_path: Path
) -> None:
    await sqlite_store.add_round(round_record(T0))
    await sqlite_store.add_observation(observation(node_id="node-0", price="1"))
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        good = [asyncio.create_task(sqlite_store.add_observation(r)) for r in writes(10)[1:]]
        duplicate = asyncio.create_task(sqlite_store.add_round(round_record(T0)))
        conflict = asyncio.create_task(sqlite_store.add_observation(writes(1)[0]))
        await asyncio.sleep(0.1)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    await asyncio.gather(*good)
    with pytest.raises(DuplicateRoundError):
        await duplicate
    with pytest.raises(ObservationConflictError):
        await conflict
    assert len(sqlite_store.recover(T0 + 65, 600).observations) == 10
    assert sqlite_store.stats().refused == 2


async def test_a_failed_commit_acknowledges_nothing_it_carried(
    db_path: Path, clock: FakeClock
) -> None:
    # A hard size cap makes SQLite fail with "database or disk is full", as a full disk would.
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock, max_bytes=40 * 4096)
    try:
        acknowledged: list[int] = []
        refused: list[int] = []
        statuses: set[grpc.StatusCode] = set()
        for i in range(400):
            minute = T0 + 60 * i
            try:
                await store.add_round(round_record(minute))
            except HistoryUnavailableError as error:
                statuses.add(error.status)
                refused.append(minute)
            else:
                acknowledged.append(minute)

        assert acknowledged
        assert refused
        assert statuses == {grpc.StatusCode.UNAVAILABLE}
        assert store.stats().rollbacks >= len(refused)
        for minute in acknowledged:
            assert store.get_round(minute) == round_record(minute)
        for minute in refused:
            assert store.get_round(minute) is None
    finally:
        await store.close()


async def test_node_rows_ride_with_the_next_commit(
    sqlite_store: SqliteHistoryStore, db_path: Path
) -> None:
    await sqlite_store.touch_node(node_row("kraken-node", n=1))
    await sqlite_store.touch_node(node_row("kraken-node", n=2))
    before = sqlite_store.stats()
    await sqlite_store.add_observation(observation())

    after = sqlite_store.stats()
    commits = after.transactions - after.maintenance_steps
    assert commits - (before.transactions - before.maintenance_steps) == 1
    assert after.deferred_flushes - before.deferred_flushes == 1
    assert sqlite_store.recover(T0 + 65, 600).nodes == [node_row("kraken-node", n=2)]


async def test_node_rows_and_refusals_are_flushed_on_their_own_when_nothing_else_commits(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock, deferred_flush_seconds=0.05)
    try:
        await store.touch_node(node_row())
        store.count_refusal("bad_price", b"x", T0)
        for _ in range(200):
            if store.refusal_counts() and store.recover(T0 + 65, 600).nodes:
                break
            await asyncio.sleep(0.01)
        assert store.recover(T0 + 65, 600).nodes == [node_row()]
        assert store.refusal_counts() == {"bad_price": 1}
    finally:
        await store.close()


async def test_close_commits_pending_node_rows_and_refusals(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock, deferred_flush_seconds=60)
    await store.touch_node(node_row())
    store.count_refusal("bad_price", None, T0)
    await store.close()

    reopened = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        assert reopened.recover(T0 + 65, 600).nodes == [node_row()]
        assert reopened.refusal_counts() == {"bad_price": 1}
    finally:
        await reopened.close()


async def test_a_caller_that_gives_up_does_not_break_the_batch(
    sqlite_store: SqliteHistoryStore,
) -> None:
    tasks = [asyncio.create_task(sqlite_store.add_observation(r)) for r in writes(20)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert sum(result is None for result in results) >= 19
    # The cancelled caller was not answered, but a write already queued still commits.
    assert len(sqlite_store.recover(T0 + 65, 600).observations) in (19, 20)
