"""The SQLite schema as a list of migration steps, applied in order from `PRAGMA user_version`.

Version 0 is an empty file. Each step runs in its own transaction together with the
`user_version` bump (SQLite DDL is transactional), so a crash or an error mid-migration leaves
the file at the previous version, never half-migrated. A file whose version is newer than
`LATEST_VERSION` was written by a newer aggregator and is refused, never downgraded.

`PRAGMA application_id` marks the file as ours: together with the meta table it tells our
history apart from another application's SQLite file, which is refused instead of written to.

Layout: an observation names its (exchange, node, base, quote) series by a small integer (the
`series` table), which halves the row and index size of the biggest table; prices are exact
decimal text; closed rounds are the serialized `oracle_pb2.Round` keyed by minute. Steps are
append-only: a released step is never edited, a change is a new step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

# "BTCO": written into the SQLite header of every history file.
APPLICATION_ID = 0x4254_434F


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "observations (with their series), closed rounds, node table, meta",
        (
            """CREATE TABLE meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE series (
                id INTEGER PRIMARY KEY,
                exchange TEXT NOT NULL,
                node_id TEXT NOT NULL,
                base TEXT NOT NULL,
                quote TEXT NOT NULL,
                -- Newest candle minute seen (refreshed about daily): when the series can go.
                last_minute INTEGER NOT NULL,
                UNIQUE (exchange, node_id, base, quote)
            )""",
            """CREATE TABLE observations (
                id INTEGER PRIMARY KEY,
                minute INTEGER NOT NULL,
                series_id INTEGER NOT NULL REFERENCES series (id),
                symbol TEXT NOT NULL,
                price TEXT NOT NULL,
                received_at REAL NOT NULL,
                simulated INTEGER NOT NULL,
                signature BLOB,
                public_key BLOB
            )""",
            # One observation per series and minute; also the range index of recover and pruning.
            "CREATE UNIQUE INDEX observations_by_minute ON observations (minute, series_id)",
            """CREATE TABLE rounds (
                minute INTEGER PRIMARY KEY,
                status INTEGER NOT NULL,
                closed_at REAL NOT NULL,
                simulated INTEGER NOT NULL,
                round_proto BLOB NOT NULL
            )""",
            """CREATE TABLE nodes (
                node_id TEXT PRIMARY KEY,
                exchange TEXT NOT NULL,
                last_seen REAL NOT NULL,
                submissions INTEGER NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "refusal counts and samples, equivocation evidence",
        (
            """CREATE TABLE refusal_counts (
                day INTEGER NOT NULL,
                reason TEXT NOT NULL,
                count INTEGER NOT NULL,
                last_at REAL NOT NULL,
                PRIMARY KEY (day, reason)
            ) WITHOUT ROWID""",
            """CREATE TABLE refusal_samples (
                id INTEGER PRIMARY KEY,
                reason TEXT NOT NULL,
                received_at REAL NOT NULL,
                size INTEGER NOT NULL,
                sample BLOB NOT NULL
            )""",
            "CREATE INDEX refusal_samples_by_reason ON refusal_samples (reason, id)",
            """CREATE TABLE equivocations (
                id INTEGER PRIMARY KEY,
                minute INTEGER NOT NULL,
                series_id INTEGER NOT NULL REFERENCES series (id),
                detected_at REAL NOT NULL,
                first_symbol TEXT NOT NULL,
                first_price TEXT NOT NULL,
                first_received_at REAL NOT NULL,
                first_signature BLOB,
                first_public_key BLOB,
                second_symbol TEXT NOT NULL,
                second_price TEXT NOT NULL,
                second_received_at REAL NOT NULL,
                second_signature BLOB,
                second_public_key BLOB
            )""",
            # The first evidence per series and minute is kept; repeats add nothing.
            "CREATE UNIQUE INDEX equivocations_by_minute ON equivocations (minute, series_id)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

# Tables a history of LATEST_VERSION has; used to recognise our own files.
OWN_TABLES = frozenset(
    {
        "meta",
        "series",
        "observations",
        "rounds",
        "nodes",
        "refusal_counts",
        "refusal_samples",
        "equivocations",
    }
)


def user_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def application_id(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA application_id").fetchone()
    return int(row[0])


def migrate(
    connection: sqlite3.Connection,
    *,
    target: int = LATEST_VERSION,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> list[int]:
    """Apply every step above the file's version up to `target`; the versions applied.

    `connection` must be in autocommit mode (isolation_level=None): each step is one explicit
    transaction. A failing step is rolled back and re-raised; the steps before it stay applied.
    """
    applied: list[int] = []
    current = user_version(connection)
    for step in migrations:
        if step.version <= current or step.version > target:
            continue
        if step.version != current + 1:
            raise ValueError(f"migration steps must be consecutive; {current} -> {step.version}")
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in step.statements:
                connection.execute(statement)
            if current == 0:
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            # PRAGMA takes no bound parameters; the value is our own integer.
            connection.execute(f"PRAGMA user_version = {step.version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        current = step.version
        applied.append(step.version)
    return applied
