"""The SQLite history: WAL mode, group commit in a writer thread, fast indexed reads.

Durability: `add_observation`, `add_round` and `add_equivocation` return only after the
transaction holding their row committed. With `synchronous = FULL` (the default) that commit
has fsynced the WAL, so the row survives a process crash (`kill -9`), an OS crash and a power
cut. With `NORMAL`, SQLite does not fsync on commit (only at checkpoints): a committed row still
survives any crash of the process, but an OS crash or power cut can lose the last commits (the
file stays consistent). FULL costs one fsync per batch, and group commit spreads that over every
write waiting for it, so it is the default; NORMAL is offered for benchmarks and for disks that
already guarantee durability (battery-backed cache).

Reads (`get_round`, `rounds`, `recover`) use their own connection on the caller's thread: in WAL
mode readers never wait for the writer, and a read after an awaited write sees it. They are
point or range lookups on indexes (`get_round` ~10 us, a page of 100 rounds ~0.3 ms on the
benchmark machine), so they run inline on the event loop.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aggregator.store import schema
from aggregator.store.errors import (
    DuplicateRoundError,
    HistoryClosedError,
    HistoryRecordError,
    ObservationConflictError,
)
from aggregator.store.lockfile import ProcessLock
from aggregator.store.opening import (
    Synchronous,
    connect,
    mode_name,
    open_file,
    prepare_directory,
)
from aggregator.store.records import (
    MINUTE_LIMIT,
    EquivocationRecord,
    NodeRecordRow,
    ObservationRecord,
    RecoveredState,
    RefusalSample,
    RoundRecord,
    check_equivocation,
    check_observation,
    check_round,
    clamp_minute,
    recover_cutoff,
    retention_cutoff,
)
from aggregator.store.refusals import DAY, SAMPLES_PER_REASON, RefusalBatch, RefusalLedger
from aggregator.store.writer import DeferredBatch, GroupCommitWriter, WriterStats
from common.logsetup import get_logger
from common.timeutil import Clock

_log = get_logger(service="aggregator")

Series = tuple[str, str, str, str]
# sqlite3 rows are untyped; each reader below converts its columns explicitly.
Row = tuple[Any, ...]
# The series cache is bounded like everything else (hostile node ids in unsigned mode).
_MAX_CACHED_SERIES = 100_000
# A series' last_minute is refreshed when an observation is this much newer (one UPDATE per
# series per day instead of one per observation); series pruning allows for the lag.
_SERIES_REFRESH = DAY

_OBSERVATION_COLUMNS = (
    "s.exchange, s.node_id, o.minute, s.base, s.quote, o.symbol, o.price, o.received_at, "
    "o.simulated, o.signature, o.public_key"
)
_ROUND_COLUMNS = "minute, status, closed_at, simulated, round_proto"

# The reads, each on an index (test_query_plans checks every plan). INDEXED BY because, without
# statistics, SQLite prefers walking observations in id order (to skip a sort) to the minute
# index: a full scan of a 30-day file to return the few hundred rows of the lateness horizon.
GET_ROUND_SQL = f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE minute = ?"  # noqa: S608 - constant
ROUNDS_SINCE_SQL = f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE minute >= ? ORDER BY minute"  # noqa: S608 - constant
OBSERVATIONS_SINCE_SQL = (
    f"SELECT {_OBSERVATION_COLUMNS} FROM observations o INDEXED BY observations_by_minute "  # noqa: S608 - constant
    "JOIN series s ON s.id = o.series_id WHERE o.minute >= ? ORDER BY o.id"
)
OBSERVATIONS_BETWEEN_SQL = (
    f"SELECT {_OBSERVATION_COLUMNS} FROM observations o INDEXED BY observations_by_minute "  # noqa: S608 - constant
    "JOIN series s ON s.id = o.series_id WHERE o.minute BETWEEN ? AND ? ORDER BY o.id"
)
NODES_SQL = "SELECT node_id, exchange, last_seen, submissions FROM nodes ORDER BY last_seen"


def rounds_sql(*, since: bool, until: bool, before: bool) -> str:
    """The page query of `rounds`: minute bounds as given, newest first, on the primary key."""
    clauses = [
        clause
        for clause, wanted in (
            ("minute >= ?", since),
            ("minute <= ?", until),
            ("minute < ?", before),
        )
        if wanted
    ]
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    return f"SELECT {_ROUND_COLUMNS} FROM rounds {where}ORDER BY minute DESC LIMIT ?"  # noqa: S608 - clauses are ours, values bound


def _observation(row: Row) -> ObservationRecord:
    (exchange, node_id, minute, base, quote, symbol, price, received_at, simulated, sig, key) = row
    return ObservationRecord(
        exchange=str(exchange),
        node_id=str(node_id),
        minute=int(minute),
        base=str(base),
        quote=str(quote),
        symbol=str(symbol),
        price=Decimal(str(price)),
        received_at=float(received_at),
        simulated=bool(simulated),
        signature=bytes(sig) if sig is not None else b"",
        public_key=bytes(key) if key is not None else b"",
    )


def _round(row: Row) -> RoundRecord:
    minute, status, closed_at, simulated, proto = row
    return RoundRecord(
        minute=int(minute),
        status=int(status),
        closed_at=float(closed_at),
        simulated=bool(simulated),
        round_proto=bytes(proto),
    )


def _blob(value: bytes) -> bytes | None:
    return value or None


@dataclass(slots=True)
class _NodeBatch:
    rows: dict[str, NodeRecordRow]
    owner: _PendingNodes

    def write(self, connection: sqlite3.Connection) -> None:
        connection.executemany(
            "INSERT INTO nodes (node_id, exchange, last_seen, submissions) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (node_id) DO UPDATE SET exchange = excluded.exchange, "
            "last_seen = excluded.last_seen, submissions = excluded.submissions",
            [(r.node_id, r.exchange, r.last_seen, r.submissions) for r in self.rows.values()],
        )

    def restore(self) -> None:
        self.owner.restore(self.rows)


@dataclass(slots=True)
class _PendingNodes:
    """Node rows waiting for the next commit; a newer touch of the same node replaces an older."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    rows: dict[str, NodeRecordRow] = field(default_factory=dict)

    def put(self, row: NodeRecordRow) -> bool:
        with self.lock:
            first = not self.rows
            self.rows[row.node_id] = row
            return first

    def take(self) -> DeferredBatch | None:
        with self.lock:
            if not self.rows:
                return None
            rows, self.rows = self.rows, {}
        return _NodeBatch(rows, self)

    def restore(self, rows: dict[str, NodeRecordRow]) -> None:
        with self.lock:
            self.rows = {**rows, **self.rows}


@dataclass(slots=True)
class _RefusalWrite:
    batch: RefusalBatch
    ledger: RefusalLedger

    def write(self, connection: sqlite3.Connection) -> None:
        connection.executemany(
            "INSERT INTO refusal_counts (day, reason, count, last_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (day, reason) DO UPDATE SET count = count + excluded.count, "
            "last_at = max(last_at, excluded.last_at)",
            [(day, reason, n, last) for (day, reason), (n, last) in self.batch.counts.items()],
        )
        for reason, samples in self.batch.samples.items():
            connection.executemany(
                "INSERT INTO refusal_samples (reason, received_at, size, sample) "
                "VALUES (?, ?, ?, ?)",
                [(s.reason, s.received_at, s.size, s.sample) for s in samples],
            )
            # Keep the newest SAMPLES_PER_REASON of this reason, whatever arrived before.
            connection.execute(
                "DELETE FROM refusal_samples WHERE reason = ? AND id NOT IN ("
                "SELECT id FROM refusal_samples WHERE reason = ? ORDER BY id DESC LIMIT ?)",
                (reason, reason, SAMPLES_PER_REASON),
            )

    def restore(self) -> None:
        self.ledger.restore(self.batch)


@dataclass(slots=True)
class _RefusalSource:
    ledger: RefusalLedger

    def take(self) -> DeferredBatch | None:
        batch = self.ledger.take()
        return _RefusalWrite(batch, self.ledger) if batch else None


class SqliteHistoryStore:
    """The durable `HistoryStore` (see the module docstring for the durability rules)."""

    def __init__(
        self,
        path: Path,
        *,
        simulate: bool,
        clock: Clock,
        retention_days: int = 30,
        synchronous: Synchronous = "FULL",
        max_batch: int = 1024,
        prune_batch: int = 500,
        prune_interval: float = 60.0,
        deferred_flush_seconds: float = 1.0,
        max_bytes: int | None = None,
        migrations: tuple[schema.Migration, ...] = schema.MIGRATIONS,
    ) -> None:
        self.path = path
        self.simulated = simulate
        self.retention_days = retention_days
        self.synchronous = synchronous
        self._clock = clock
        self._prune_batch = prune_batch
        prepare_directory(path)
        self._lock = ProcessLock.acquire(path.with_name(path.name + ".lock"), path)
        connections: list[sqlite3.Connection] = []
        try:
            opened = open_file(
                path,
                simulated=simulate,
                synchronous=synchronous,
                migrations=migrations,
                now=clock(),
            )
            connections.append(opened.connection)
            self._reader = connect(path)
            connections.append(self._reader)
            self._reader.execute("PRAGMA query_only = 1")
            self._writer = self._build_writer(
                opened.connection,
                max_bytes=max_bytes,
                max_batch=max_batch,
                prune_interval=prune_interval,
                deferred_flush_seconds=deferred_flush_seconds,
            )
        except BaseException:
            for connection in connections:
                connection.close()
            self._lock.release()
            raise
        self.created = opened.created
        self._read_lock = threading.Lock()
        self._writer.start()
        self._closed = False
        _log.info(
            "history_opened",
            path=str(path),
            created=opened.created,
            schema_version=schema.LATEST_VERSION,
            mode=mode_name(simulate),
            synchronous=synchronous,
            retention_days=retention_days,
        )

    def _build_writer(
        self,
        connection: sqlite3.Connection,
        *,
        max_bytes: int | None,
        max_batch: int,
        prune_interval: float,
        deferred_flush_seconds: float,
    ) -> GroupCommitWriter:
        if max_bytes is not None:
            (page_size,) = connection.execute("PRAGMA page_size").fetchone()
            connection.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page_size)}")
        # Writer-thread state: series ids with the last_minute written for them.
        self._series: dict[Series, tuple[int, int]] = {}
        self._nodes = _PendingNodes()
        known = {r for (r,) in connection.execute("SELECT DISTINCT reason FROM refusal_counts")}
        self._refusals = RefusalLedger(known)
        return GroupCommitWriter(
            connection,
            deferred=(self._nodes, _RefusalSource(self._refusals)),
            maintenance=self._prune_step,
            maintenance_interval=prune_interval,
            on_rollback=self._series.clear,
            finalize=_finalize,
            max_batch=max_batch,
            deferred_flush_seconds=deferred_flush_seconds,
        )

    # -- durable writes --------------------------------------------------------------------

    async def add_observation(self, record: ObservationRecord) -> None:
        check_observation(record, simulated=self.simulated)
        await self._writer.write(lambda connection: self._insert_observation(connection, record))

    async def add_round(self, record: RoundRecord) -> None:
        check_round(record, simulated=self.simulated)
        await self._writer.write(lambda connection: _insert_round(connection, record))

    async def add_equivocation(self, first: ObservationRecord, second: ObservationRecord) -> None:
        check_observation(first, simulated=self.simulated)
        check_observation(second, simulated=self.simulated)
        check_equivocation(first, second)
        detected_at = self._clock()
        await self._writer.write(
            lambda connection: self._insert_equivocation(connection, first, second, detected_at)
        )

    # -- deferred writes -------------------------------------------------------------------

    async def touch_node(self, row: NodeRecordRow) -> None:
        """Returns at once; the row is written with the next commit (at most ~1 s later)."""
        self._check_open()
        if self._nodes.put(row):
            self._writer.wake_deferred()

    def count_refusal(self, reason: str, sample: bytes | None, now: float) -> None:
        """Counted in memory, flushed with the next commit; never blocks, never grows disk."""
        if self._closed:
            return
        if self._refusals.add(reason, sample, now):
            self._writer.wake_deferred()

    # -- reads -----------------------------------------------------------------------------

    def get_round(self, minute: int) -> RoundRecord | None:
        row = self._read_one(GET_ROUND_SQL, (clamp_minute(minute),))
        return _round(row) if row is not None else None

    def rounds(
        self,
        from_minute: int | None,
        to_minute: int | None,
        limit: int,
        before_minute: int | None,
    ) -> list[RoundRecord]:
        """Closed rounds in [from_minute, to_minute] and below before_minute, newest first."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise HistoryRecordError("limit must be a positive integer")
        bounds = (from_minute, to_minute, before_minute)
        sql = rounds_sql(
            since=from_minute is not None,
            until=to_minute is not None,
            before=before_minute is not None,
        )
        rows = self._read_all(
            sql,
            (*(clamp_minute(b) for b in bounds if b is not None), min(limit, MINUTE_LIMIT)),
        )
        return [_round(row) for row in rows]

    def recover(self, now: float, horizon: float) -> RecoveredState:
        """Observations and closed rounds whose candle closed within `horizon`, and all nodes.

        Observations come in commit order (the order the aggregator accepted them), rounds by
        minute, nodes least recently seen first (the node table's eviction order).
        """
        cutoff = recover_cutoff(now, horizon)
        observations = self._read_all(OBSERVATIONS_SINCE_SQL, (math.floor(cutoff),))
        rounds = self._read_all(ROUNDS_SINCE_SQL, (math.floor(cutoff),))
        nodes = self._read_all(NODES_SQL, ())
        return RecoveredState(
            observations=[_observation(row) for row in observations if int(row[2]) >= cutoff],
            rounds=[_round(row) for row in rounds if int(row[0]) >= cutoff],
            nodes=[
                NodeRecordRow(str(n), str(e), float(seen), int(count))
                for n, e, seen, count in nodes
            ],
        )

    def observations(self, from_minute: int, to_minute: int) -> list[ObservationRecord]:
        """Every stored observation of the candle minutes [from_minute, to_minute]."""
        rows = self._read_all(OBSERVATIONS_BETWEEN_SQL, (from_minute, to_minute))
        return [_observation(row) for row in rows]

    def refusal_counts(self) -> dict[str, int]:
        """Refusals by reason over the retained days (what was flushed so far)."""
        rows = self._read_all(
            "SELECT reason, sum(count) FROM refusal_counts GROUP BY reason ORDER BY reason", ()
        )
        return {str(reason): int(total) for reason, total in rows}

    def refusal_samples(self) -> list[RefusalSample]:
        rows = self._read_all(
            "SELECT reason, received_at, size, sample FROM refusal_samples ORDER BY reason, id", ()
        )
        return [
            RefusalSample(str(r), float(at), int(size), bytes(sample))
            for r, at, size, sample in rows
        ]

    def equivocations(self, limit: int = 100) -> list[EquivocationRecord]:
        """Stored evidence, newest first."""
        rows = self._read_all(
            "SELECT s.exchange, s.node_id, s.base, s.quote, e.minute, e.detected_at, "
            "e.first_symbol, e.first_price, e.first_received_at, e.first_signature, "
            "e.first_public_key, e.second_symbol, e.second_price, e.second_received_at, "
            "e.second_signature, e.second_public_key FROM equivocations e "
            "JOIN series s ON s.id = e.series_id ORDER BY e.id DESC LIMIT ?",
            (limit,),
        )
        evidence = []
        for exchange, node_id, base, quote, minute, detected_at, *sides in rows:
            first, second = (
                ObservationRecord(
                    str(exchange),
                    str(node_id),
                    int(minute),
                    str(base),
                    str(quote),
                    str(symbol),
                    Decimal(str(price)),
                    float(received_at),
                    self.simulated,
                    bytes(sig or b""),
                    bytes(key or b""),
                )
                for symbol, price, received_at, sig, key in (sides[:5], sides[5:])
            )
            evidence.append(EquivocationRecord(first, second, float(detected_at)))
        return evidence

    def _read_one(self, sql: str, parameters: Row) -> Row | None:
        with self._read_lock:
            self._check_open()
            row: Row | None = self._reader.execute(sql, parameters).fetchone()
            return row

    def _read_all(self, sql: str, parameters: Row) -> list[Row]:
        with self._read_lock:
            self._check_open()
            rows: list[Row] = self._reader.execute(sql, parameters).fetchall()
            return rows

    # -- maintenance and life cycle ---------------------------------------------------------

    async def prune(self) -> int:
        """Prune everything past retention now (in small steps between writes); rows deleted."""
        self._check_open()
        return await self._writer.run_maintenance()

    def stats(self) -> WriterStats:
        return self._writer.stats()

    @property
    def failure(self) -> BaseException | None:
        """Set when the writer thread stopped on an unexpected error (every write then fails
        with UNAVAILABLE): for the health check to report."""
        return self._writer.failure

    async def close(self) -> None:
        """Flush deferred rows, checkpoint, close, release the lock; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._writer.stop()
        finally:
            with self._read_lock:
                self._reader.close()
            self._lock.release()
            _log.info("history_closed", path=str(self.path))

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryClosedError(f"{self.path}: the history is closed")

    # -- writer-thread code ----------------------------------------------------------------

    def _series_id(self, connection: sqlite3.Connection, record: ObservationRecord) -> int:
        series = record.series
        cached = self._series.get(series)
        if cached is not None:
            series_id, last_minute = cached
            if record.minute > last_minute + _SERIES_REFRESH:
                connection.execute(
                    "UPDATE series SET last_minute = ? WHERE id = ?", (record.minute, series_id)
                )
                self._series[series] = (series_id, record.minute)
            return series_id
        row = connection.execute(
            "SELECT id, last_minute FROM series WHERE exchange = ? AND node_id = ? AND base = ? "
            "AND quote = ?",
            series,
        ).fetchone()
        if row is None:
            cursor = connection.execute(
                "INSERT INTO series (exchange, node_id, base, quote, last_minute) "
                "VALUES (?, ?, ?, ?, ?)",
                (*series, record.minute),
            )
            row = (cursor.lastrowid, record.minute)
        series_id, last_minute = int(row[0]), int(row[1])
        if record.minute > last_minute + _SERIES_REFRESH:
            connection.execute(
                "UPDATE series SET last_minute = ? WHERE id = ?", (record.minute, series_id)
            )
            last_minute = record.minute
        if len(self._series) >= _MAX_CACHED_SERIES:
            self._series.clear()
        self._series[series] = (series_id, last_minute)
        return series_id

    def _insert_observation(
        self, connection: sqlite3.Connection, record: ObservationRecord
    ) -> None:
        series_id = self._series_id(connection, record)
        cursor = connection.execute(
            "INSERT INTO observations (minute, series_id, symbol, price, received_at, simulated, "
            "signature, public_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (minute, series_id) DO NOTHING",
            (
                record.minute,
                series_id,
                record.symbol,
                str(record.price),
                record.received_at,
                int(record.simulated),
                _blob(record.signature),
                _blob(record.public_key),
            ),
        )
        if cursor.rowcount == 1:
            return
        (stored,) = connection.execute(
            "SELECT price FROM observations WHERE minute = ? AND series_id = ?",
            (record.minute, series_id),
        ).fetchone()
        if Decimal(stored) != record.price:
            raise ObservationConflictError(
                f"the history already holds {record.exchange} {record.base}/{record.quote} from "
                f"node {record.node_id} at minute {record.minute} with price {stored}; "
                f"{record.price} is refused, the first observation stands"
            )
        # The same price again: an idempotent resubmission, nothing to add.

    def _insert_equivocation(
        self,
        connection: sqlite3.Connection,
        first: ObservationRecord,
        second: ObservationRecord,
        detected_at: float,
    ) -> None:
        series_id = self._series_id(connection, first)
        connection.execute(
            "INSERT INTO equivocations (minute, series_id, detected_at, first_symbol, "
            "first_price, first_received_at, first_signature, first_public_key, second_symbol, "
            "second_price, second_received_at, second_signature, second_public_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (minute, series_id) DO NOTHING",
            (
                first.minute,
                series_id,
                detected_at,
                *(
                    value
                    for side in (first, second)
                    for value in (
                        side.symbol,
                        str(side.price),
                        side.received_at,
                        _blob(side.signature),
                        _blob(side.public_key),
                    )
                ),
            ),
        )

    def _prune_step(self, connection: sqlite3.Connection) -> tuple[int, bool]:
        """Delete at most `prune_batch` rows per table older than retention; (rows, more)."""
        (newest,) = connection.execute(
            "SELECT max(newest) FROM (SELECT max(minute) AS newest FROM observations "
            "UNION ALL SELECT max(minute) FROM rounds)"
        ).fetchone()
        cutoff = retention_cutoff(self._clock(), newest, self.retention_days)
        batch = self._prune_batch
        deleted = 0
        more = False
        for sql, bound in (
            (
                "DELETE FROM observations WHERE id IN "
                "(SELECT id FROM observations WHERE minute < ? ORDER BY minute LIMIT ?)",
                cutoff,
            ),
            (
                "DELETE FROM rounds WHERE minute IN "
                "(SELECT minute FROM rounds WHERE minute < ? ORDER BY minute LIMIT ?)",
                cutoff,
            ),
            (
                "DELETE FROM equivocations WHERE id IN "
                "(SELECT id FROM equivocations WHERE minute < ? ORDER BY minute LIMIT ?)",
                cutoff,
            ),
            (
                "DELETE FROM nodes WHERE node_id IN "
                "(SELECT node_id FROM nodes WHERE last_seen < ? LIMIT ?)",
                cutoff,
            ),
            (
                "DELETE FROM refusal_counts WHERE (day, reason) IN "
                "(SELECT day, reason FROM refusal_counts WHERE day < ? LIMIT ?)",
                cutoff // DAY,
            ),
            (
                "DELETE FROM refusal_samples WHERE id IN "
                "(SELECT id FROM refusal_samples WHERE received_at < ? LIMIT ?)",
                cutoff,
            ),
        ):
            count = connection.execute(sql, (bound, batch)).rowcount
            deleted += count
            more = more or count >= batch
        if not more:
            # Only once observations and evidence are gone can their series go (last_minute may
            # lag the newest observation by up to _SERIES_REFRESH).
            count = connection.execute(
                "DELETE FROM series WHERE id IN "
                "(SELECT id FROM series WHERE last_minute < ? LIMIT ?)",
                (cutoff - _SERIES_REFRESH - 60, batch),
            ).rowcount
            if count:
                self._series.clear()
            deleted += count
            more = count >= batch
        return deleted, more


def _insert_round(connection: sqlite3.Connection, record: RoundRecord) -> None:
    try:
        connection.execute(
            f"INSERT INTO rounds ({_ROUND_COLUMNS}) VALUES (?, ?, ?, ?, ?)",  # noqa: S608 - constant columns
            (
                record.minute,
                record.status,
                record.closed_at,
                int(record.simulated),
                record.round_proto,
            ),
        )
    except sqlite3.IntegrityError as error:
        raise DuplicateRoundError(record.minute) from error


def _finalize(connection: sqlite3.Connection) -> None:
    """On a clean stop: refresh the planner's statistics and fold the WAL into the file."""
    with contextlib.suppress(sqlite3.Error):
        # Bounded: ANALYZE samples at most this many rows per index, so shutdown stays quick.
        connection.execute("PRAGMA analysis_limit = 1000")
        connection.execute("PRAGMA optimize")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
