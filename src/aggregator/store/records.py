"""The history's own records: plain values, no import of the aggregator's domain types.

The rounds side builds these from its own state, so the store and the rounds logic can change
independently. The checks here run before a record is queued: a record in the wrong mode
(simulated into a real history, or the reverse) or a round whose bytes say something else than
its columns is a bug in the caller and never reaches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from google.protobuf.message import DecodeError

from aggregator.store.errors import HistoryRecordError
from common.proto import oracle_pb2

# Text columns are bounded: the aggregator validates ids and symbols far below these, and a bug
# upstream must not let one row grow without bound.
_MAX_TEXT = 128
_MAX_BLOB = 256
_MAX_ROUND_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ObservationRecord:
    """One accepted observation as the aggregator received it."""

    exchange: str
    node_id: str
    minute: int
    base: str
    quote: str
    symbol: str
    price: Decimal
    received_at: float
    simulated: bool
    signature: bytes = b""
    public_key: bytes = b""

    @property
    def series(self) -> tuple[str, str, str, str]:
        """What one observation per minute is allowed for: (exchange, node, base, quote)."""
        return (self.exchange, self.node_id, self.base, self.quote)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One closed round: a few indexed columns and the immutable record as served."""

    minute: int
    status: int
    closed_at: float
    simulated: bool
    round_proto: bytes  # the serialized oracle_pb2.Round


@dataclass(frozen=True, slots=True)
class NodeRecordRow:
    node_id: str
    exchange: str
    last_seen: float
    submissions: int


@dataclass(frozen=True, slots=True)
class RecoveredState:
    """What the aggregator reloads at start (see `HistoryStore.recover`)."""

    observations: list[ObservationRecord]  # every observation inside the lateness horizon
    rounds: list[RoundRecord]  # closed rounds inside the horizon (immutability guard)
    nodes: list[NodeRecordRow]


@dataclass(frozen=True, slots=True)
class EquivocationRecord:
    """Evidence: two different prices from one node for one series and minute (issue 11)."""

    first: ObservationRecord
    second: ObservationRecord
    detected_at: float


@dataclass(frozen=True, slots=True)
class RefusalSample:
    reason: str
    received_at: float
    size: int  # the refused request's length; `sample` holds at most its first bytes
    sample: bytes


# Minutes are unix seconds; anything beyond this is no minute any round can have, and SQLite
# integers stop at 2**63 - 1. Query bounds are clamped here so a uint64 from the wire (a
# GetPriceHistory bound of 2**64 - 1) selects what it means instead of overflowing.
MINUTE_LIMIT = 2**62


def clamp_minute(minute: int) -> int:
    return max(-MINUTE_LIMIT, min(MINUTE_LIMIT, int(minute)))


def recover_cutoff(now: float, horizon: float) -> float:
    """Oldest candle minute `recover` returns: candles that closed at most `horizon` ago.

    The same rule as the aggregator's lateness check (a candle minute M closes at M + 60), so
    every observation the aggregator could still receive a resubmission for is reloaded.
    """
    return now - horizon - 60


def retention_cutoff(now: float, newest_minute: int | None, retention_days: int) -> float:
    """Rows older than this are pruned: `retention_days` before now, or before the newest data
    when that is older. A wall clock that jumps far ahead (a VM restored with a wrong clock, a
    bad NTP source) must never erase the recent history: pruning only follows data that exists.
    """
    reference = now if newest_minute is None else min(now, newest_minute + 60)
    return reference - retention_days * 86_400


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise HistoryRecordError(f"{name} must be a non-empty string of at most {_MAX_TEXT}")


def _check_mode(what: str, simulated: object, store_simulated: bool) -> None:
    if not isinstance(simulated, bool) or simulated != store_simulated:
        mode = "a SIMULATED" if store_simulated else "a real"
        raise HistoryRecordError(
            f"{what} has simulated={simulated!r} but this is {mode} history: simulated and real "
            "data never share a database"
        )


def check_observation(record: ObservationRecord, *, simulated: bool) -> None:
    """Refuse, before queueing, a record that could not be stored faithfully."""
    for name in ("exchange", "node_id", "base", "quote", "symbol"):
        _check_text(name, getattr(record, name))
    if not isinstance(record.minute, int) or isinstance(record.minute, bool) or record.minute < 0:
        raise HistoryRecordError("minute must be a non-negative integer (unix seconds)")
    if not isinstance(record.price, Decimal) or not record.price.is_finite() or record.price <= 0:
        raise HistoryRecordError("price must be a finite, positive Decimal")
    if not isinstance(record.received_at, float | int):
        raise HistoryRecordError("received_at must be unix seconds")
    for name in ("signature", "public_key"):
        value = getattr(record, name)
        if not isinstance(value, bytes) or len(value) > _MAX_BLOB:
            raise HistoryRecordError(f"{name} must be bytes of at most {_MAX_BLOB}")
    _check_mode(
        f"observation {record.exchange}/{record.node_id}@{record.minute}",
        record.simulated,
        simulated,
    )


def check_round(record: RoundRecord, *, simulated: bool) -> None:
    """The round's bytes must decode and agree with its indexed columns."""
    if not isinstance(record.minute, int) or isinstance(record.minute, bool) or record.minute < 0:
        raise HistoryRecordError("round minute must be a non-negative integer (unix seconds)")
    _check_mode(f"round {record.minute}", record.simulated, simulated)
    if not isinstance(record.round_proto, bytes) or len(record.round_proto) > _MAX_ROUND_BYTES:
        raise HistoryRecordError(f"round_proto must be bytes of at most {_MAX_ROUND_BYTES}")
    try:
        served = oracle_pb2.Round.FromString(record.round_proto)
    except DecodeError as error:
        raise HistoryRecordError(f"round {record.minute}: round_proto is not a Round") from error
    mismatches = [
        name
        for name, stored, column in (
            ("minute", served.minute, record.minute),
            ("status", served.status, record.status),
            ("simulated", served.simulated, record.simulated),
            ("closed", served.closed, True),
        )
        if stored != column
    ]
    if mismatches:
        raise HistoryRecordError(
            f"round {record.minute}: round_proto disagrees with the record on "
            f"{', '.join(mismatches)} (only closed rounds are stored)"
        )


def check_equivocation(first: ObservationRecord, second: ObservationRecord) -> None:
    if first.series != second.series or first.minute != second.minute:
        raise HistoryRecordError(
            "equivocation evidence needs two observations of one node, exchange, pair and minute"
        )
    if first.price == second.price:
        raise HistoryRecordError("equivocation evidence needs two different prices")
