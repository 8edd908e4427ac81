"""Fixtures: both history backends behind one `store` fixture, so each rule is tested on both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator.store import InMemoryHistoryStore, SqliteHistoryStore
from tests.aggregator.store.builders import T0, FakeClock

AnyStore = SqliteHistoryStore | InMemoryHistoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 65)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "aggregator.sqlite3"


@pytest.fixture(params=["sqlite", "memory"])
async def store(
    request: pytest.FixtureRequest, db_path: Path, clock: FakeClock
) -> AsyncIterator[AnyStore]:
    opened: AnyStore
    if request.param == "sqlite":
        opened = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    else:
        opened = InMemoryHistoryStore(simulate=False, clock=clock)
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteHistoryStore]:
    opened = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    yield opened
    await opened.close()
