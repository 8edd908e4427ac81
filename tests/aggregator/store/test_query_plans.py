"""Every read and prune runs on an index: no query scans the observation or round tables.

Not a timing test: SQLite's own query plans, checked on a populated file. A scan here is what
turns a restart or a GetPriceHistory page from milliseconds into seconds as the history grows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from aggregator.store import SqliteHistoryStore
from aggregator.store.sqlite import (
    GET_ROUND_SQL,
    OBSERVATIONS_BETWEEN_SQL,
    OBSERVATIONS_SINCE_SQL,
    ROUNDS_SINCE_SQL,
    rounds_sql,
)
from tests.aggregator.store.builders import T0, FakeClock, observation, round_record

PAGES = [
    rounds_sql(since=since, until=until, before=before)
    for since in (False, True)
    for until in (False, True)
    for before in (False, True)
]
PRUNES = [
    "DELETE FROM observations WHERE id IN "
    "(SELECT id FROM observations WHERE minute < 1 ORDER BY minute LIMIT 500)",
    "DELETE FROM rounds WHERE minute IN "
    "(SELECT minute FROM rounds WHERE minute < 1 ORDER BY minute LIMIT 500)",
    "DELETE FROM equivocations WHERE id IN "
    "(SELECT id FROM equivocations WHERE minute < 1 ORDER BY minute LIMIT 500)",
]


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db_path = tmp_path_factory.mktemp("plans") / "history.sqlite3"

    async def fill() -> None:
        store = SqliteHistoryStore(db_path, simulate=False, clock=FakeClock(T0 + 65))
        await asyncio.gather(
            *(
                store.add_observation(observation(node_id=f"n{i % 30}", minute=T0 + 60 * (i // 30)))
                for i in range(300)
            ),
            *(store.add_round(round_record(T0 + 60 * i)) for i in range(300)),
        )
        await store.close()  # runs PRAGMA optimize, as a real shutdown does

    asyncio.run(fill())
    return db_path


@pytest.mark.parametrize(
    "sql",
    [
        GET_ROUND_SQL,
        ROUNDS_SINCE_SQL,
        OBSERVATIONS_SINCE_SQL,
        OBSERVATIONS_BETWEEN_SQL,
        *PAGES,
        *PRUNES,
    ],
)
def test_the_query_uses_an_index(populated: Path, sql: str) -> None:
    connection = sqlite3.connect(populated)
    try:
        parameters = [1] * sql.count("?")
        plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
    finally:
        connection.close()
    assert not any("TEMP B-TREE" in step for step in plan if "rounds" in sql), plan
    if sql == rounds_sql(since=False, until=False, before=False):
        # The first page of an unbounded history: a walk down the primary key that stops after
        # LIMIT rows, which is as cheap as a range.
        assert plan == ["SCAN rounds"], plan
        return
    assert not [step for step in plan if step.startswith("SCAN")], plan
