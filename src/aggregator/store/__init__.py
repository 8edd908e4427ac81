"""Durable history of the aggregator: every accepted observation, every closed round, the node
table, refusals by reason and equivocation evidence, behind the small `HistoryStore` interface.

`open_store(config.database, simulate=..., clock=...)` gives the SQLite store (WAL, group commit,
durable on return) or, with `enabled = false`, the in-memory one. See README "Durable history".
"""

from aggregator.store.errors import (
    DuplicateRoundError,
    HistoryClosedError,
    HistoryError,
    HistoryRecordError,
    HistoryUnavailableError,
    ObservationConflictError,
)
from aggregator.store.factory import open_store
from aggregator.store.memory import InMemoryHistoryStore
from aggregator.store.protocol import DatabaseSettings, HistoryStore
from aggregator.store.records import (
    EquivocationRecord,
    NodeRecordRow,
    ObservationRecord,
    RecoveredState,
    RefusalSample,
    RoundRecord,
)
from aggregator.store.sqlite import SqliteHistoryStore

__all__ = [
    "DatabaseSettings",
    "DuplicateRoundError",
    "EquivocationRecord",
    "HistoryClosedError",
    "HistoryError",
    "HistoryRecordError",
    "HistoryStore",
    "HistoryUnavailableError",
    "InMemoryHistoryStore",
    "NodeRecordRow",
    "ObservationConflictError",
    "ObservationRecord",
    "RecoveredState",
    "RefusalSample",
    "RoundRecord",
    "SqliteHistoryStore",
    "open_store",
]
