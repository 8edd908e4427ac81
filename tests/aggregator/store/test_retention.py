"""Retention prunes in small steps, so a large backlog never holds the writer for long."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from aggregator.store import SqliteHistoryStore
from tests.aggregator.store.builders import DAY, T0, FakeClock, observation, round_record


async def test_a_backlog_is_pruned_in_batches_with_writes_in_between(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteHistoryStore(
        db_path, simulate=False, clock=clock, prune_batch=10, prune_interval=3600
    )
    try:
        await asyncio.gather(
            *(store.add_observation(observation(node_id=f"n{i}", minute=T0)) for i in range(95)),
            *(store.add_round(round_record(T0 + 60 * i)) for i in range(25)),
        )
        clock.now = T0 + 40 * DAY
        fresh = observation(minute=T0 + 40 * DAY)
        before = store.stats()

        pruning = asyncio.create_task(store.prune())
        await store.add_observation(fresh)  # answered while the backlog is being pruned
        deleted = await pruning

        after = store.stats()
        assert deleted >= 95 + 25
        assert after.maintenance_steps - before.maintenance_steps >= 10
        assert after.largest_maintenance_step <= 2 * 10 + 10  # one batch per table at most
        assert store.recover(clock.now, 600).observations == [fresh]
        assert store.rounds(None, None, 100, None) == []
    finally:
        await store.close()


async def test_series_of_nodes_gone_for_longer_than_retention_are_forgotten(
    db_path: Path, clock: FakeClock
) -> None:
    def series_rows() -> list[tuple[str, int]]:
        connection = sqlite3.connect(db_path)  # a reader beside the store, as WAL allows
        try:
            return connection.execute(
                "SELECT node_id, last_minute FROM series ORDER BY 1"
            ).fetchall()
        finally:
            connection.close()

    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        await store.add_observation(observation(node_id="gone-node", minute=T0))
        await store.add_observation(observation(node_id="live-node", minute=T0 + 35 * DAY))
        clock.now = T0 + 35 * DAY + 65
        await store.prune()
        assert series_rows() == [("live-node", T0 + 35 * DAY)]

        # A node that comes back gets a new series row and is stored as before.
        returning = observation(node_id="gone-node", minute=T0 + 35 * DAY)
        await store.add_observation(returning)
        assert series_rows() == [("gone-node", T0 + 35 * DAY), ("live-node", T0 + 35 * DAY)]
        assert returning in store.recover(clock.now, 600).observations
    finally:
        await store.close()


async def test_retention_runs_by_itself_on_its_interval(db_path: Path, clock: FakeClock) -> None:
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock, prune_interval=0.05)
    try:
        await store.add_round(round_record(T0))
        clock.now = T0 + 31 * DAY
        await store.add_round(round_record(T0 + 31 * DAY - 60))
        for _ in range(200):
            if store.get_round(T0) is None:
                break
            await asyncio.sleep(0.01)
        assert store.get_round(T0) is None
    finally:
        await store.close()
