"""The committer's own SQLite database: reports, announcements, nonces, attestations, anchors.

WAL mode with `synchronous=FULL` (an anchor that was broadcast must never be forgotten, or the
next anchor would try to spend the same output again); file 0600 in a 0700 directory; schema
versioned by `PRAGMA user_version` and marked with an `application_id`, so a foreign or newer
file is a clear startup error naming the path; an exclusive lock file keeps a second committer
off the same database. Calls are small and run on the event loop thread: the committer writes a
few rows a minute (a day's catch-up is written one transaction per page of rounds).

The database is *not* what protects against nonce reuse: that is the guard's journal beside the
key (`committer.dlc.guard`), which survives this file being deleted or restored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from common.errors import ConfigError

APPLICATION_ID: Final = 0x42544343  # "BTCC"
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE reports (
    minute INTEGER PRIMARY KEY,
    encoding BLOB NOT NULL,
    digest BLOB NOT NULL,
    signature BLOB NOT NULL,
    status INTEGER NOT NULL,
    price_e8 INTEGER NOT NULL,
    confidence_e8 INTEGER NOT NULL,
    simulated INTEGER NOT NULL,
    signed_at_ms INTEGER NOT NULL,
    round_proto BLOB NOT NULL,
    anchor_id INTEGER,
    leaf_index INTEGER
);
CREATE INDEX reports_unanchored ON reports (minute) WHERE anchor_id IS NULL;
CREATE TABLE announcements (
    event_id TEXT PRIMARY KEY,
    maturity INTEGER NOT NULL,
    tlv BLOB NOT NULL,
    mode TEXT NOT NULL,
    state INTEGER NOT NULL,
    simulated INTEGER NOT NULL,
    announced_at INTEGER NOT NULL
);
CREATE INDEX announcements_maturity ON announcements (maturity);
CREATE TABLE nonces (
    event_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    PRIMARY KEY (event_id, idx)
);
CREATE TABLE attestations (
    event_id TEXT PRIMARY KEY,
    maturity INTEGER NOT NULL,
    round_minute INTEGER NOT NULL,
    outcome_value INTEGER NOT NULL,
    clamped INTEGER NOT NULL,
    outcomes TEXT NOT NULL,
    tlv BLOB NOT NULL,
    round_status INTEGER NOT NULL,
    round_price_e8 INTEGER NOT NULL,
    attested_at_ms INTEGER NOT NULL
);
CREATE TABLE anchors (
    anchor_id INTEGER PRIMARY KEY,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    minutes TEXT NOT NULL,
    root BLOB NOT NULL,
    commitment BLOB NOT NULL,
    mode TEXT NOT NULL,
    state INTEGER NOT NULL,
    txid TEXT NOT NULL,
    tx BLOB NOT NULL,
    psbt TEXT NOT NULL,
    output_index INTEGER NOT NULL,
    internal_key BLOB NOT NULL,
    detail TEXT NOT NULL,
    change_txid TEXT NOT NULL,
    change_vout INTEGER NOT NULL,
    change_amount INTEGER NOT NULL,
    change_root BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class ReportRow:
    minute: int
    encoding: bytes
    digest: bytes
    signature: bytes
    status: int
    price_e8: int
    confidence_e8: int
    simulated: bool
    signed_at_ms: int
    round_proto: bytes
    anchor_id: int | None = None
    leaf_index: int | None = None


@dataclass(frozen=True, slots=True)
class AnnouncementRow:
    event_id: str
    maturity: int
    tlv: bytes
    mode: str
    state: int
    simulated: bool
    announced_at: int


@dataclass(frozen=True, slots=True)
class AttestationRow:
    event_id: str
    maturity: int
    round_minute: int
    outcome_value: int
    clamped: bool
    outcomes: tuple[str, ...]
    tlv: bytes
    round_status: int
    round_price_e8: int
    attested_at_ms: int


@dataclass(frozen=True, slots=True)
class AnchorRow:
    anchor_id: int
    period_start: int
    period_end: int
    minutes: tuple[int, ...]
    root: bytes
    commitment: bytes
    mode: str
    state: int
    txid: str
    tx: bytes
    psbt: str
    output_index: int
    internal_key: bytes
    detail: str
    change_txid: str
    change_vout: int
    change_amount: int
    change_root: bytes
    created_at: int


class CommitterStore:
    """One SQLite file; construct with `open_store`."""

    def __init__(self, connection: sqlite3.Connection, lock_fd: int, path: Path | None) -> None:
        self._db = connection
        self._lock_fd = lock_fd
        self.path = path

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db

    # --- reports ---------------------------------------------------------------------------

    def add_reports(self, rows: Sequence[ReportRow]) -> None:
        """Insert in one transaction; a stored minute is an IntegrityError (the caller dedupes)."""
        with self._db:
            self._db.executemany(
                "INSERT INTO reports (minute, encoding, digest, signature, status, price_e8, "
                "confidence_e8, simulated, signed_at_ms, round_proto) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.minute,
                        r.encoding,
                        r.digest,
                        r.signature,
                        r.status,
                        r.price_e8,
                        r.confidence_e8,
                        int(r.simulated),
                        r.signed_at_ms,
                        r.round_proto,
                    )
                    for r in rows
                ],
            )

    _REPORT_COLUMNS = (
        "minute, encoding, digest, signature, status, price_e8, confidence_e8, simulated, "
        "signed_at_ms, round_proto, anchor_id, leaf_index"
    )

    @staticmethod
    def _report(values: tuple[Any, ...]) -> ReportRow:
        return ReportRow(
            int(values[0]),
            bytes(values[1]),
            bytes(values[2]),
            bytes(values[3]),
            int(values[4]),
            int(values[5]),
            int(values[6]),
            bool(values[7]),
            int(values[8]),
            bytes(values[9]),
            None if values[10] is None else int(values[10]),
            None if values[11] is None else int(values[11]),
        )

    def report(self, minute: int) -> ReportRow | None:
        row = self._db.execute(
            f"SELECT {self._REPORT_COLUMNS} FROM reports WHERE minute = ?",  # noqa: S608 (constant)
            (minute,),
        ).fetchone()
        return None if row is None else self._report(row)

    def reports_from(self, minute: int, limit: int) -> list[ReportRow]:
        rows = self._db.execute(
            f"SELECT {self._REPORT_COLUMNS} FROM reports WHERE minute >= ? "  # noqa: S608
            "ORDER BY minute LIMIT ?",
            (minute, limit),
        ).fetchall()
        return [self._report(row) for row in rows]

    def known_minutes(self, minutes: Sequence[int]) -> set[int]:
        if not minutes:
            return set()
        marks = ",".join("?" * len(minutes))
        rows = self._db.execute(
            f"SELECT minute FROM reports WHERE minute IN ({marks})",  # noqa: S608 (placeholders)
            tuple(minutes),
        ).fetchall()
        return {int(row[0]) for row in rows}

    def last_report_minute(self) -> int | None:
        row = self._db.execute("SELECT MAX(minute) FROM reports").fetchone()
        return None if row[0] is None else int(row[0])

    def unanchored(self, before: int) -> list[ReportRow]:
        rows = self._db.execute(
            f"SELECT {self._REPORT_COLUMNS} FROM reports "  # noqa: S608
            "WHERE anchor_id IS NULL AND minute < ? ORDER BY minute",
            (before,),
        ).fetchall()
        return [self._report(row) for row in rows]

    def report_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM reports").fetchone()[0])

    # --- announcements, nonces, attestations ----------------------------------------------

    def add_announcement(self, row: AnnouncementRow, nonces: Sequence[bytes]) -> None:
        """Nonces and announcement in one transaction: stored before anyone can read it."""
        with self._db:
            self._db.executemany(
                "INSERT INTO nonces (event_id, idx, nonce) VALUES (?,?,?)",
                [(row.event_id, index, nonce) for index, nonce in enumerate(nonces)],
            )
            self._db.execute(
                "INSERT INTO announcements VALUES (?,?,?,?,?,?,?)",
                (
                    row.event_id,
                    row.maturity,
                    row.tlv,
                    row.mode,
                    row.state,
                    int(row.simulated),
                    row.announced_at,
                ),
            )

    @staticmethod
    def _announcement(row: tuple[Any, ...]) -> AnnouncementRow:
        return AnnouncementRow(
            str(row[0]),
            int(row[1]),
            bytes(row[2]),
            str(row[3]),
            int(row[4]),
            bool(row[5]),
            int(row[6]),
        )

    def announcement(self, event_id: str) -> AnnouncementRow | None:
        row = self._db.execute(
            "SELECT * FROM announcements WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else self._announcement(tuple(row))

    def announcement_for_maturity(self, maturity: int) -> AnnouncementRow | None:
        row = self._db.execute(
            "SELECT * FROM announcements WHERE maturity = ?", (maturity,)
        ).fetchone()
        return None if row is None else self._announcement(tuple(row))

    def announcements(self, low: int, high: int, limit: int) -> list[AnnouncementRow]:
        rows = self._db.execute(
            "SELECT * FROM announcements WHERE maturity >= ? AND maturity <= ? "
            "ORDER BY maturity LIMIT ?",
            (low, high, limit),
        ).fetchall()
        return [self._announcement(tuple(row)) for row in rows]

    def set_announcement_state(self, event_id: str, state: int) -> None:
        with self._db:
            self._db.execute(
                "UPDATE announcements SET state = ? WHERE event_id = ?", (state, event_id)
            )

    def add_attestation(self, row: AttestationRow, state: int) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO attestations VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    row.event_id,
                    row.maturity,
                    row.round_minute,
                    row.outcome_value,
                    int(row.clamped),
                    json.dumps(list(row.outcomes)),
                    row.tlv,
                    row.round_status,
                    row.round_price_e8,
                    row.attested_at_ms,
                ),
            )
            self._db.execute(
                "UPDATE announcements SET state = ? WHERE event_id = ?", (state, row.event_id)
            )

    def attestation(self, event_id: str) -> AttestationRow | None:
        row = self._db.execute(
            "SELECT * FROM attestations WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            return None
        return AttestationRow(
            str(row[0]),
            int(row[1]),
            int(row[2]),
            int(row[3]),
            bool(row[4]),
            tuple(json.loads(row[5])),
            bytes(row[6]),
            int(row[7]),
            int(row[8]),
            int(row[9]),
        )

    def attestations(self) -> list[AttestationRow]:
        rows = self._db.execute("SELECT event_id FROM attestations").fetchall()
        found = [self.attestation(str(row[0])) for row in rows]
        return [row for row in found if row is not None]

    # --- anchors -----------------------------------------------------------------------------

    def add_anchor(self, row: AnchorRow) -> None:
        """The anchor and its reports' leaf positions in one transaction."""
        with self._db:
            self._db.execute(
                "INSERT INTO anchors VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row.anchor_id,
                    row.period_start,
                    row.period_end,
                    json.dumps(list(row.minutes)),
                    row.root,
                    row.commitment,
                    row.mode,
                    row.state,
                    row.txid,
                    row.tx,
                    row.psbt,
                    row.output_index,
                    row.internal_key,
                    row.detail,
                    row.change_txid,
                    row.change_vout,
                    row.change_amount,
                    row.change_root,
                    row.created_at,
                ),
            )
            self._db.executemany(
                "UPDATE reports SET anchor_id = ?, leaf_index = ? WHERE minute = ?",
                [(row.anchor_id, index, minute) for index, minute in enumerate(row.minutes)],
            )

    def update_anchor(self, anchor_id: int, *, state: int, tx: bytes, detail: str) -> None:
        with self._db:
            self._db.execute(
                "UPDATE anchors SET state = ?, tx = ?, detail = ? WHERE anchor_id = ?",
                (state, tx, detail, anchor_id),
            )

    @staticmethod
    def _anchor(row: tuple[Any, ...]) -> AnchorRow:
        values = list(row)
        values[3] = tuple(json.loads(values[3]))
        return AnchorRow(*values)

    def anchor(self, anchor_id: int) -> AnchorRow | None:
        row = self._db.execute("SELECT * FROM anchors WHERE anchor_id = ?", (anchor_id,)).fetchone()
        return None if row is None else self._anchor(tuple(row))

    def anchors(self, limit: int) -> list[AnchorRow]:
        rows = self._db.execute(
            "SELECT * FROM anchors ORDER BY anchor_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self._anchor(tuple(row)) for row in rows]

    def last_anchor(self) -> AnchorRow | None:
        found = self.anchors(1)
        return found[0] if found else None

    def close(self) -> None:
        self._db.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _prepare(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise ConfigError(f"{path}: held by another committer; refusing to share it") from None
    return lock_fd


def _migrate(connection: sqlite3.Connection, path: Path | None) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    application = connection.execute("PRAGMA application_id").fetchone()[0]
    tables = connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    if version == 0 and tables == 0:
        connection.executescript(
            "BEGIN;"
            + _SCHEMA
            + f"PRAGMA application_id = {APPLICATION_ID};"
            + f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
        )
    elif application != APPLICATION_ID:
        raise ConfigError(f"{path}: not a committer database (foreign SQLite file)")
    elif version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: schema version {version} is newer than this committer's "
            f"{SCHEMA_VERSION}; upgrade the committer"
        )


def open_store(path: Path | None) -> CommitterStore:
    """Open (creating and migrating) the database at `path`; None = in memory (tests, bench)."""
    lock_fd = -1 if path is None else _prepare(path)
    try:
        connection = sqlite3.connect(":memory:" if path is None else path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        _migrate(connection, path)
        connection.isolation_level = "DEFERRED"
    except sqlite3.DatabaseError as error:
        if lock_fd >= 0:
            os.close(lock_fd)
        raise ConfigError(f"{path}: cannot open the committer database: {error}") from error
    except ConfigError:
        if lock_fd >= 0:
            os.close(lock_fd)
        raise
    return CommitterStore(connection, lock_fd, path)
