"""Group commit: one writer thread owns the SQLite connection and commits batches of writes.

Why a thread: SQLite calls block (a commit waits for fsync), and the event loop must keep
answering while they do. Why batches: a commit costs one fsync whether it carries one
observation or a thousand, so every write that arrives while a commit is in progress is carried
by the next one. No timer delays a lone write: the batch is simply whatever queued up meanwhile,
so latency at low load is one commit and throughput at high load is many writes per fsync.

The contract the aggregator relies on: `write` returns only after the transaction holding its
write committed (durable under the connection's `synchronous` setting), and raises when it did
not. A write that breaks a rule of its own (a duplicate round) fails alone; a failure of the
transaction (disk full, I/O error) fails the whole batch, which rolls back, so nothing is ever
acknowledged that is not on disk.

Deferred writes (node table, refusal counts) are not acknowledged individually: they ride along
with the next batch, or are flushed on their own after `deferred_flush_seconds`. Maintenance
(retention pruning) runs as its own small transactions between batches, so it never holds the
writer for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from aggregator.store.errors import (
    HistoryClosedError,
    HistoryError,
    HistoryRecordError,
    HistoryUnavailableError,
)
from common.logsetup import get_logger

_log = get_logger(service="aggregator")

Apply = Callable[[sqlite3.Connection], None]


class DeferredBatch(Protocol):
    def write(self, connection: sqlite3.Connection) -> None: ...
    def restore(self) -> None: ...


class DeferredSource(Protocol):
    def take(self) -> DeferredBatch | None:
        """Everything pending, or None; the source is empty afterwards."""


class Maintenance(Protocol):
    def __call__(self, connection: sqlite3.Connection) -> tuple[int, bool]:
        """One small step inside a transaction: (rows changed, more work left)."""


@dataclass(slots=True)
class WriterStats:
    """Counters a test or benchmark reads to see what the writer really did."""

    transactions: int = 0  # committed transactions (batches, deferred flushes, maintenance)
    batches: int = 0  # committed transactions that carried acknowledged writes
    writes: int = 0  # acknowledged writes committed
    refused: int = 0  # writes that failed on their own rule (the rest of their batch committed)
    rollbacks: int = 0  # transactions that failed and rolled back
    largest_batch: int = 0
    deferred_flushes: int = 0
    maintenance_steps: int = 0
    maintenance_rows: int = 0
    largest_maintenance_step: int = 0


@dataclass(slots=True)
class _Write:
    apply: Apply
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _Signal:
    """A request for the writer itself: stop, or run maintenance to completion."""

    kind: str
    future: asyncio.Future[int]
    loop: asyncio.AbstractEventLoop
    rows: int = 0


@dataclass(slots=True)
class _State:
    deferred_due: float | None = None
    next_maintenance: float = 0.0
    maintenance_waiters: list[_Signal] = field(default_factory=list)
    stop: _Signal | None = None


_WAKE = object()


class GroupCommitWriter:
    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        deferred: Sequence[DeferredSource] = (),
        maintenance: Maintenance | None = None,
        maintenance_interval: float = 60.0,
        on_rollback: Callable[[], None] = lambda: None,
        finalize: Callable[[sqlite3.Connection], None] = lambda _connection: None,
        max_batch: int = 1024,
        max_pending: int = 65_536,
        deferred_flush_seconds: float = 1.0,
        name: str = "history-writer",
    ) -> None:
        self._connection = connection
        self._deferred = tuple(deferred)
        self._maintenance = maintenance
        self._maintenance_interval = maintenance_interval
        self._on_rollback = on_rollback
        self._finalize = finalize
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._deferred_flush_seconds = deferred_flush_seconds
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Guards `_closed`/`_failure` against a put racing close(): nothing is queued after STOP.
        self._gate = threading.Lock()
        self._closed = False
        self._failure: BaseException | None = None
        self._stats = WriterStats()
        self._stats_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- the event-loop side ---------------------------------------------------------------

    async def write(self, apply: Apply) -> None:
        """Queue `apply` and return once the transaction that ran it committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._put(_Write(apply, future, loop))
        await future

    def wake_deferred(self) -> None:
        """A deferred source went from empty to pending: make sure it gets flushed."""
        with self._gate:
            if not self._closed:
                self._queue.put(_WAKE)

    async def run_maintenance(self) -> int:
        """Run maintenance steps until none is left (interleaved with writes); rows changed."""
        return await self._signal("maintenance")

    async def stop(self) -> None:
        """Commit what is queued and pending, finalize, close the connection; idempotent."""
        if not self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._gate:
            if not self._closed:
                self._closed = True
                self._queue.put(_Signal("stop", future, loop))
            else:
                future.set_result(0)
        await future
        await asyncio.to_thread(self._thread.join)

    def stats(self) -> WriterStats:
        with self._stats_lock:
            return replace(self._stats)

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    def _put(self, item: _Write) -> None:
        with self._gate:
            if self._failure is not None:
                raise HistoryUnavailableError(
                    f"the history writer stopped after an error: {self._failure}"
                )
            if self._closed:
                raise HistoryClosedError("the history is closed (the aggregator is stopping)")
            if self._queue.qsize() >= self._max_pending:
                raise HistoryUnavailableError(
                    f"the history writer has {self._max_pending} writes pending; retry shortly"
                )
            self._queue.put(item)

    async def _signal(self, kind: str) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._gate:
            if self._closed or self._failure is not None:
                raise HistoryClosedError("the history is closed")
            self._queue.put(_Signal(kind, future, loop))
        return await future

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        state = _State(next_maintenance=time.monotonic())
        try:
            while state.stop is None:
                self._turn(state)
            self._flush_deferred()
            self._finalize(self._connection)
        except BaseException as error:  # noqa: BLE001 - recorded; every waiter is failed below
            self._failure = error
            _log.exception("history_writer_failed", error=str(error))
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._fail_leftovers(state)

    def _turn(self, state: _State) -> None:
        batch = self._collect(state)
        now = time.monotonic()
        flush = bool(batch) or (state.deferred_due is not None and now >= state.deferred_due)
        if batch or flush:
            self._commit(batch, flush_deferred=flush)
            if flush:
                state.deferred_due = None
        if self._maintenance is None or state.stop is not None:
            for waiter in state.maintenance_waiters:
                _resolve(waiter.loop, waiter.future, 0)
            state.maintenance_waiters.clear()
            return
        if time.monotonic() >= state.next_maintenance:
            rows, more = self._maintain()
            for waiter in state.maintenance_waiters:
                waiter.rows += rows
            if more:
                state.next_maintenance = time.monotonic()
            else:
                state.next_maintenance = time.monotonic() + self._maintenance_interval
                for waiter in state.maintenance_waiters:
                    _resolve(waiter.loop, waiter.future, waiter.rows)
                state.maintenance_waiters.clear()

    def _collect(self, state: _State) -> list[_Write]:
        """Block until something is due, then take everything queued (up to max_batch)."""
        deadlines = [state.next_maintenance] if self._maintenance is not None else []
        if state.deferred_due is not None:
            deadlines.append(state.deferred_due)
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        batch: list[_Write] = []
        try:
            item: object | None = self._queue.get(timeout=timeout)
        except queue.Empty:
            return batch
        while item is not None:
            if isinstance(item, _Write):
                batch.append(item)
            elif item is _WAKE:
                if state.deferred_due is None:
                    state.deferred_due = time.monotonic() + self._deferred_flush_seconds
            elif isinstance(item, _Signal) and item.kind == "stop":
                state.stop = item
                break
            elif isinstance(item, _Signal):
                state.maintenance_waiters.append(item)
                state.next_maintenance = time.monotonic()
            if len(batch) >= self._max_batch:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = None
        return batch

    def _commit(self, batch: list[_Write], *, flush_deferred: bool) -> None:
        taken = (
            [t for t in (s.take() for s in self._deferred) if t is not None]
            if (flush_deferred)
            else []
        )
        if not batch and not taken:
            return
        outcomes: list[BaseException | None] = []
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            outcomes.extend(_apply_one(connection, request.apply) for request in batch)
            for deferred in taken:
                deferred.write(connection)
            connection.execute("COMMIT")
        except Exception as error:  # noqa: BLE001 - any failure of the transaction fails it all
            _rollback(connection)
            self._on_rollback()
            for deferred in taken:
                deferred.restore()
            with self._stats_lock:
                self._stats.rollbacks += 1
            _log.error("history_commit_failed", error=str(error), writes=len(batch))
            failure = HistoryUnavailableError(f"the history could not commit ({error}); retry")
            failure.__cause__ = error
            _deliver(batch, [failure] * len(batch))
            return
        refused = sum(outcome is not None for outcome in outcomes)
        with self._stats_lock:
            stats = self._stats
            stats.transactions += 1
            if batch:
                stats.batches += 1
            stats.writes += len(batch) - refused
            stats.refused += refused
            stats.largest_batch = max(stats.largest_batch, len(batch))
            if taken:
                stats.deferred_flushes += 1
        _deliver(batch, outcomes)

    def _flush_deferred(self) -> None:
        self._commit([], flush_deferred=True)

    def _maintain(self) -> tuple[int, bool]:
        assert self._maintenance is not None  # noqa: S101 - only scheduled when configured
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            rows, more = self._maintenance(connection)
            connection.execute("COMMIT")
        except Exception as error:  # noqa: BLE001 - maintenance is retried at the next interval
            _rollback(connection)
            self._on_rollback()
            _log.error("history_maintenance_failed", error=str(error))
            return 0, False
        with self._stats_lock:
            stats = self._stats
            stats.transactions += 1
            stats.maintenance_steps += 1
            stats.maintenance_rows += rows
            stats.largest_maintenance_step = max(stats.largest_maintenance_step, rows)
        return rows, more

    def _fail_leftovers(self, state: _State) -> None:
        """Nothing may wait forever: fail whatever is still queued, then release stop()."""
        with self._gate:
            self._closed = True
        closed = HistoryClosedError("the history is closed (the aggregator is stopping)")
        leftovers: list[_Write] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Write):
                leftovers.append(item)
            elif isinstance(item, _Signal):
                _resolve(item.loop, item.future, 0)
        _deliver(leftovers, [closed] * len(leftovers))
        for waiter in state.maintenance_waiters:
            _resolve(waiter.loop, waiter.future, waiter.rows)
        if state.stop is not None:
            _resolve(state.stop.loop, state.stop.future, 0)


def _apply_one(connection: sqlite3.Connection, apply: Apply) -> BaseException | None:
    """Run one write; its own rule violations fail it alone (SQLite undoes just that statement)."""
    try:
        apply(connection)
    except HistoryError as refusal:
        return refusal
    except sqlite3.IntegrityError as error:
        return HistoryRecordError(f"the history refused a record: {error}")
    return None


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _deliver(batch: Sequence[_Write], outcomes: Sequence[BaseException | None]) -> None:
    """Wake each caller's event loop once per batch, not once per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], object]]] = {}
    for request, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(request.loop, []).append((request.future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[None], object]]) -> None:
    for future, outcome in settled:
        if future.done():
            continue  # the caller gave up (cancelled); the write stands regardless
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(None)


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[int], value: int) -> None:
    def settle() -> None:
        if not future.done():
            future.set_result(value)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)
