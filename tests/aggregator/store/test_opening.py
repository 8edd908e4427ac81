"""Opening a history file: fresh files with owner-only modes, and every bad file a clear error.

A bad file (corrupt, not SQLite, another application's, a newer schema, the other mode,
unwritable) must stop the aggregator with a ConfigError that names the path, and must be left
byte for byte as it was: never silently emptied, overwritten or "repaired".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aggregator.config import AggregatorConfig, DatabaseConfig, load_config
from aggregator.store import InMemoryHistoryStore, SqliteHistoryStore, open_store
from aggregator.store.schema import APPLICATION_ID, LATEST_VERSION, MIGRATIONS, Migration
from common.errors import ConfigError
from tests.aggregator.store.builders import T0, FakeClock, observation, round_record


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def empty_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    path.touch(mode=0o600)


def truncate_to_garbage(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00" * 50 + os.urandom(4000))


def damage_page(path: Path, page: int) -> None:
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    assert len(data) // page_size > page + 1
    data[page * page_size : page * page_size + 200] = os.urandom(200)  # a b-tree page header
    path.write_bytes(bytes(data))


def refused(path: Path, clock: FakeClock, *, simulate: bool = False) -> str:
    with pytest.raises(ConfigError) as error:
        SqliteHistoryStore(path, simulate=simulate, clock=clock)
    message = str(error.value)
    assert str(path) in message
    return message


async def make_history(path: Path, clock: FakeClock, *, simulate: bool = False) -> None:
    store = SqliteHistoryStore(path, simulate=simulate, clock=clock)
    await store.add_observation(observation(simulated=simulate))
    await store.add_round(round_record(T0, simulated=simulate))
    await store.close()


# -- a fresh history ------------------------------------------------------------------------


async def test_a_fresh_history_is_created_owner_only_whatever_the_umask(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "a" / "b" / "history.sqlite3"
    previous = os.umask(0)
    try:
        store = SqliteHistoryStore(path, simulate=False, clock=clock)
        await store.add_observation(observation())
        assert store.created
        created = [path.parent, path.parent.parent]
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")]
        assert {p.name: mode(p) for p in created} == {"b": 0o700, "a": 0o700}
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        await store.close()
    finally:
        os.umask(previous)


async def test_the_file_is_in_wal_mode_and_marked_as_ours(db_path: Path, clock: FakeClock) -> None:
    await make_history(db_path, clock)
    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert connection.execute("PRAGMA user_version").fetchone() == (LATEST_VERSION,)
        meta = dict(connection.execute("SELECT key, value FROM meta"))
        assert meta["mode"] == "real"
    finally:
        connection.close()


async def test_an_empty_existing_file_becomes_a_fresh_history(
    db_path: Path, clock: FakeClock
) -> None:
    empty_file(db_path)
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    await store.add_observation(observation())
    assert len(store.recover(T0 + 65, 600).observations) == 1
    await store.close()


def test_open_store_gives_sqlite_by_default_and_memory_when_disabled(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    config = AggregatorConfig(database=DatabaseConfig(path=tmp_path / "h.sqlite3"))
    durable = open_store(config.database, simulate=False, clock=clock)
    assert isinstance(durable, SqliteHistoryStore)
    asyncio.run(durable.close())

    disabled = DatabaseConfig(enabled=False, path=tmp_path / "unused.sqlite3")
    volatile = open_store(disabled, simulate=True, clock=clock)
    assert isinstance(volatile, InMemoryHistoryStore)
    assert not (tmp_path / "unused.sqlite3").exists()
    assert "a restart forgets every observation" in capsys.readouterr().out


@dataclass(frozen=True)
class Settings:
    """Any object with the three attributes will do (the DatabaseSettings protocol)."""

    retention_days: object
    path: Path
    enabled: bool = True


@pytest.mark.parametrize("days", [0, -1, 100_000, 1.5, True])
def test_the_store_refuses_a_retention_outside_its_range_itself(
    tmp_path: Path, clock: FakeClock, days: object
) -> None:
    with pytest.raises(ConfigError, match="retention_days"):
        open_store(Settings(days, tmp_path / "h.sqlite3"), simulate=False, clock=clock)  # type: ignore[arg-type]
    assert not (tmp_path / "h.sqlite3").exists()


def test_the_database_table_of_the_config_file_opens_that_history(
    tmp_path: Path, clock: FakeClock
) -> None:
    config_file = tmp_path / "aggregator.toml"
    database = tmp_path / "history" / "oracle.sqlite3"
    config_file.write_text(f'[database]\npath = "{database}"\nretention_days = 7\n')

    config = load_config(config_file)
    store = open_store(config.database, simulate=config.simulate, clock=clock)
    try:
        assert isinstance(store, SqliteHistoryStore)
        assert store.retention_days == 7
        assert database.is_file()
    finally:
        asyncio.run(store.close())


def test_the_default_database_settings_match_the_team_interface() -> None:
    database = AggregatorConfig().database
    assert (database.enabled, database.path, database.retention_days) == (
        True,
        Path("data/aggregator.sqlite3"),
        30,
    )


# -- files that are not ours, or not well ---------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_untouched(db_path: Path, clock: FakeClock) -> None:
    db_path.parent.mkdir()
    db_path.write_text("price,minute\n100000,1795000020\n" * 10)
    db_path.chmod(0o600)
    before = digest(db_path)

    assert "not an SQLite database" in refused(db_path, clock)
    assert digest(db_path) == before
    assert not Path(f"{db_path}-wal").exists()


def test_a_file_shorter_than_an_sqlite_header_is_refused(db_path: Path, clock: FakeClock) -> None:
    db_path.parent.mkdir()
    db_path.write_bytes(b"SQLite format 3\x00")
    db_path.chmod(0o600)
    assert "not an SQLite database" in refused(db_path, clock)


async def test_a_truncated_history_is_refused_untouched(db_path: Path, clock: FakeClock) -> None:
    await make_history(db_path, clock)
    truncate_to_garbage(db_path)
    before = digest(db_path)

    message = refused(db_path, clock)
    assert "corrupt" in message
    assert digest(db_path) == before


async def test_a_history_with_a_damaged_page_is_refused_untouched(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    for i in range(300):
        await store.add_observation(observation(node_id=f"node-{i}"))
    await store.close()
    damage_page(db_path, 3)
    before = digest(db_path)

    assert "corrupt" in refused(db_path, clock)
    assert digest(db_path) == before


def test_another_applications_sqlite_file_is_refused_untouched(
    db_path: Path, clock: FakeClock
) -> None:
    db_path.parent.mkdir()
    foreign = sqlite3.connect(db_path)
    foreign.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    foreign.execute("INSERT INTO invoices (total) VALUES (12.5)")
    foreign.commit()
    foreign.close()
    db_path.chmod(0o600)
    before = digest(db_path)

    message = refused(db_path, clock)
    assert "another application" in message
    assert "invoices" in message
    assert digest(db_path) == before


def test_an_sqlite_file_with_a_foreign_application_id_is_refused(
    db_path: Path, clock: FakeClock
) -> None:
    db_path.parent.mkdir()
    foreign = sqlite3.connect(db_path)
    foreign.execute("PRAGMA application_id = 1598903374")  # Fossil's
    foreign.commit()
    foreign.close()
    db_path.chmod(0o600)
    assert "another application" in refused(db_path, clock)


async def test_a_history_of_a_newer_schema_is_refused_not_downgraded(
    db_path: Path, clock: FakeClock
) -> None:
    await make_history(db_path, clock)
    newer = sqlite3.connect(db_path)
    newer.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    newer.commit()
    newer.close()
    before = digest(db_path)

    assert "newer aggregator" in refused(db_path, clock)
    assert digest(db_path) == before


def test_a_path_that_is_a_directory_is_refused(db_path: Path, clock: FakeClock) -> None:
    db_path.mkdir(parents=True)
    assert "not a regular file" in refused(db_path, clock)


async def test_a_group_writable_history_is_refused(db_path: Path, clock: FakeClock) -> None:
    await make_history(db_path, clock)
    os.chmod(db_path, 0o660)
    assert "chmod 600" in refused(db_path, clock)


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Make `path` unwritable for us: chmod for a normal user; root ignores modes, so for root
    the immutable attribute (chattr +i), skipping where the file system has none."""
    if os.geteuid() != 0:
        previous = mode(path)
        path.chmod(previous & ~0o222)
        try:
            yield
        finally:
            path.chmod(previous)
        return
    result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"running as root and chattr +i is unavailable: {result.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


async def test_an_unwritable_history_is_refused(db_path: Path, clock: FakeClock) -> None:
    await make_history(db_path, clock)
    for leftover in (Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        leftover.unlink(missing_ok=True)
    with unwritable(db_path):
        assert "writable" in refused(db_path, clock)


async def test_an_unwritable_directory_is_refused(db_path: Path, clock: FakeClock) -> None:
    await make_history(db_path, clock)
    with unwritable(db_path.parent):
        assert "not writable" in refused(db_path, clock)


async def test_a_real_history_refuses_a_simulate_mode_aggregator(
    db_path: Path, clock: FakeClock
) -> None:
    await make_history(db_path, clock)
    message = refused(db_path, clock, simulate=True)
    assert "REAL" in message
    assert "simulated and real prices never share a database" in message


def test_the_mode_is_checked_before_an_old_history_is_migrated(
    db_path: Path, clock: FakeClock
) -> None:
    _file_at_version(db_path, 1)  # a real history of schema version 1
    before = digest(db_path)

    assert "REAL" in refused(db_path, clock, simulate=True)
    assert digest(db_path) == before  # not migrated, not switched to WAL


async def test_a_simulated_history_refuses_a_real_aggregator(
    db_path: Path, clock: FakeClock
) -> None:
    await make_history(db_path, clock, simulate=True)
    assert "SIMULATED" in refused(db_path, clock, simulate=False)


# -- migrations -----------------------------------------------------------------------------


def _file_at_version(path: Path, version: int) -> None:
    """A history as an aggregator of schema `version` left it, with a row in each table."""
    from aggregator.store.schema import migrate

    path.parent.mkdir(exist_ok=True, mode=0o700)
    connection = sqlite3.connect(path, isolation_level=None)
    migrate(connection, target=version)
    if version >= 1:
        connection.execute("INSERT INTO meta VALUES ('mode', 'real')")
        connection.execute(
            "INSERT INTO series VALUES (1, 'kraken', 'kraken-node', 'BTC', 'USD', ?)", (T0,)
        )
        connection.execute(
            "INSERT INTO observations VALUES (1, ?, 1, 'XBTUSD', '100000.5', ?, 0, NULL, NULL)",
            (T0, T0 + 61.0),
        )
        connection.execute("INSERT INTO nodes VALUES ('kraken-node', 'kraken', ?, 1)", (T0 + 61.0,))
        connection.execute(
            "INSERT INTO rounds VALUES (?, 1, ?, 0, ?)",
            (T0, T0 + 62.0, round_record(T0).round_proto),
        )
    if version >= 2:
        connection.execute(
            "INSERT INTO refusal_counts VALUES (?, 'bad_price', 3, ?)", (T0 // 86400, T0)
        )
    connection.close()
    path.chmod(0o600)


@pytest.mark.parametrize("version", range(LATEST_VERSION + 1))
async def test_every_schema_version_migrates_to_the_latest_keeping_its_data(
    db_path: Path, clock: FakeClock, version: int
) -> None:
    _file_at_version(db_path, version)

    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        state = store.recover(T0 + 65, 600)
        if version >= 1:
            assert [(o.exchange, o.price) for o in state.observations] == [
                ("kraken", observation(price="100000.5").price)
            ]
            assert store.get_round(T0) == round_record(T0)
            assert [n.node_id for n in state.nodes] == ["kraken-node"]
        else:
            assert state == type(state)([], [], [])
        if version >= 2:
            assert store.refusal_counts() == {"bad_price": 3}
        # Every table of the latest schema works after the migration.
        await store.add_equivocation(observation(), observation(price="1"))
        store.count_refusal("too_late", None, T0)
        await store.add_observation(observation("coinbase"))
        assert len(store.equivocations()) == 1
    finally:
        await store.close()
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA user_version").fetchone() == (LATEST_VERSION,)
    connection.close()


async def test_a_failing_migration_leaves_the_file_at_its_previous_version(
    db_path: Path, clock: FakeClock
) -> None:
    await make_history(db_path, clock)
    broken = (
        *MIGRATIONS,
        Migration(LATEST_VERSION + 1, "broken", ("CREATE TABLE t (a)", "SYNTAX ERROR")),
    )

    with pytest.raises(ConfigError, match="left at that version") as error:
        SqliteHistoryStore(db_path, simulate=False, clock=clock, migrations=broken)
    assert str(db_path) in str(error.value)

    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA user_version").fetchone() == (LATEST_VERSION,)
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert "t" not in tables
    connection.close()
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    assert store.get_round(T0) == round_record(T0)
    await store.close()
