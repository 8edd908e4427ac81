"""The one small interface the aggregator sees: `HistoryStore` (agreed in TEAM.md).

Everything behind it is replaceable: the SQLite store today, the in-memory store when history is
disabled and in fast tests, a PostgreSQL store for replicas later (README, "Durable history").
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from aggregator.store.records import NodeRecordRow, ObservationRecord, RecoveredState, RoundRecord


class DatabaseSettings(Protocol):
    """What `open_store` reads from `config.database` (any object with these attributes)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def path(self) -> Path | str: ...
    @property
    def retention_days(self) -> int: ...


class HistoryStore(Protocol):
    async def add_observation(self, record: ObservationRecord) -> None:
        """Durable (committed) on return; concurrent callers share one transaction.

        The same observation again (same node, exchange, pair, minute and price) is a no-op;
        a different price for them raises ObservationConflictError (ALREADY_EXISTS). A failed
        commit raises HistoryUnavailableError: answer the node UNAVAILABLE, never success.
        """

    async def add_round(self, record: RoundRecord) -> None:
        """Durable on return; a second round for the same minute raises DuplicateRoundError."""

    async def touch_node(self, row: NodeRecordRow) -> None:
        """Returns at once; written with the next commit (within about a second)."""

    def count_refusal(self, reason: str, sample: bytes | None, now: float) -> None:
        """Counted by reason; a bounded sample kept. Never blocks; not durable on return."""

    async def add_equivocation(self, first: ObservationRecord, second: ObservationRecord) -> None:
        """Evidence (issue 11), durable on return; the first evidence per node-minute is kept."""

    def recover(self, now: float, horizon: float) -> RecoveredState:
        """At startup: observations and closed rounds whose candle closed within `horizon`
        seconds before `now` (minute + 60 >= now - horizon), and the node table."""

    def get_round(self, minute: int) -> RoundRecord | None: ...

    def rounds(
        self,
        from_minute: int | None,
        to_minute: int | None,
        limit: int,
        before_minute: int | None,
    ) -> list[RoundRecord]:
        """Closed rounds with from_minute <= minute <= to_minute and minute < before_minute
        (None = unbounded), newest first, at most `limit` (>= 1). For the next page pass the
        last returned minute as `before_minute`."""

    async def close(self) -> None:
        """Flush, close and release the database; idempotent."""
