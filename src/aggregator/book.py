"""The aggregator's state: recent reports per exchange, the node table and the cached aggregate.

Every change goes through `submit`, which checks everything first and then mutates, so a refused
submission leaves the book exactly as it was. All memory is bounded: a window of reports per
exchange, a record of (exchange, minute, node) reports for the lateness horizon (idempotency), and
a capped node table. Time is passed in; the book never reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from aggregator.aggregation import (
    Aggregate,
    ExchangePrice,
    Report,
    aggregate,
    combine_reports,
    counted_price,
)
from aggregator.config import AggregatorConfig
from aggregator.validation import Observation
from common.errors import CapacityError, ConflictingObservationError
from common.proto import oracle_pb2
from common.timeutil import MINUTE

# Newest minutes held per exchange: the newest closed one plus those a clock-skew allowance of up
# to two minutes can date in the future.
_HELD_MINUTES = 4


class Outcome(Enum):
    """What a submission did to the book."""

    # Stored, and the exchange's newest minute (hence perhaps the aggregate) changed.
    COUNTED = "counted"
    # Stored for the record (a late or superseded minute); the aggregate did not change.
    STORED = "stored"
    # Stored, the exchange's newest minute, but its candle has not closed yet: it counts then.
    PENDING = "pending"
    # Exactly this report was already stored: nothing changed (idempotent resubmission).
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: Outcome
    # Set when this report is the second one for its exchange and minute: the node that reported
    # it first (the duplicate-exchange case, worth one warning).
    first_reporter: str | None = None
    # Rounds this submission closed (stand-in: the rounds work closes them; none here yet).
    closed_rounds: tuple[oracle_pb2.Round, ...] = ()


@dataclass(slots=True)
class NodeRecord:
    exchange: str
    last_seen: float
    submissions: int


class Book:
    """Recent observations and derived state; single-threaded (one asyncio loop)."""

    def __init__(self, config: AggregatorConfig) -> None:
        self._config = config
        # exchange -> minute -> node_id -> report; only minutes still in the window.
        self._reports: dict[str, dict[int, dict[str, Report]]] = {}
        # exchange -> (minute, node_id) in arrival order, bounded by config.window.
        self._window: dict[str, deque[tuple[int, str]]] = {}
        # (exchange, minute, node_id) -> price, for every minute still inside the lateness
        # horizon, even after the window dropped the report: resubmissions stay idempotent.
        self._seen: dict[tuple[str, int, str], Decimal] = {}
        self._seen_minutes: dict[int, list[tuple[str, int, str]]] = {}
        self._next_prune = 0.0
        # exchange -> its newest minutes' combined prices, newest first (a few: minutes dated in
        # the future wait there until they close, see aggregation.counted_price).
        self._latest: dict[str, list[ExchangePrice]] = {}
        # node_id -> record, least recently seen first; node_id -> last_seen of active nodes.
        self._nodes: OrderedDict[str, NodeRecord] = OrderedDict()
        self._active: OrderedDict[str, float] = OrderedDict()
        self._aggregate: Aggregate | None = None
        self._last_update = 0.0
        # Stand-in for the rounds work's closed rounds (TEAM.md seam): minute -> round.
        self._closed_rounds: dict[int, oracle_pb2.Round] = {}

    # -- reads -----------------------------------------------------------------------------

    def aggregate(self, now: float) -> Aggregate:
        """The current aggregate; recomputed only when an input went stale since last time."""
        current = self._aggregate
        if current is None or now > current.valid_until:
            current = aggregate(
                self._latest,
                now,
                staleness=self._config.staleness,
                quorum=self._config.quorum,
                close_skew=self._config.close_skew,
            )
            self._aggregate = current
        return current

    def exchange_price(self, exchange: str, now: float) -> ExchangePrice | None:
        """The exchange's newest closed price if still fresh."""
        price = counted_price(self._latest.get(exchange, ()), now, self._config.close_skew)
        if price is None or price.closed_age(now) > self._config.staleness:
            return None
        return price

    def active_nodes(self, now: float) -> list[str]:
        """Ids of nodes that submitted within the node timeout, least recent first."""
        self._expire_active(now)
        return list(self._active)

    def active_node_count(self, now: float) -> int:
        self._expire_active(now)
        return len(self._active)

    def node(self, node_id: str) -> NodeRecord | None:
        return self._nodes.get(node_id)

    @property
    def last_update(self) -> float:
        """Receive time of the newest stored report (0 before the first)."""
        return self._last_update

    def report_count(self, exchange: str) -> int:
        return len(self._window.get(exchange, ()))

    def snapshot(self) -> tuple[object, ...]:
        """A comparable image of the whole state: tests assert refusals change none of it."""
        return (
            {
                ex: {m: dict(nodes) for m, nodes in by_minute.items()}
                for ex, by_minute in self._reports.items()
            },
            {ex: list(window) for ex, window in self._window.items()},
            dict(self._seen),
            {exchange: list(prices) for exchange, prices in self._latest.items()},
            [
                (node_id, record.exchange, record.last_seen, record.submissions)
                for node_id, record in self._nodes.items()
            ],
            dict(self._active),
            self._last_update,
        )

    # -- the one write path ----------------------------------------------------------------

    # -- rounds (stand-in for the rounds work's API, TEAM.md; replaced when it merges) -----

    def close_due(self, now: float) -> list[oracle_pb2.Round]:
        return []

    def open_round(self, minute: int, now: float) -> oracle_pb2.Round | None:
        return None

    def closed_round(self, minute: int) -> oracle_pb2.Round | None:
        return self._closed_rounds.get(minute)

    def restore_closed_round(self, round_: oracle_pb2.Round) -> None:
        self._closed_rounds[int(round_.minute)] = round_

    def check(self, observation: Observation, now: float) -> None:
        """Raise exactly the refusals `submit` would; change nothing."""
        key = (observation.exchange, observation.minute, observation.node_id)
        previous = self._seen.get(key)
        if previous is not None:
            if previous == observation.price:
                return
            raise ConflictingObservationError(
                f"node {observation.node_id} already reported {observation.exchange} at minute "
                f"{observation.minute} with price {previous}; a different price "
                f"({observation.price}) for the same candle is refused, the first report stands"
            )
        if observation.node_id not in self._nodes and len(self._nodes) >= self._config.max_nodes:
            _oldest_id, oldest = next(iter(self._nodes.items()))
            if oldest.last_seen >= now - self._config.node_timeout:
                raise CapacityError(
                    f"node table full ({self._config.max_nodes} nodes active within "
                    f"{self._config.node_timeout:g} s); a new node_id is refused until one goes "
                    "quiet"
                )

    def submit(self, observation: Observation, now: float) -> SubmitResult:
        """Store a validated observation; raises before changing anything when it is refused."""
        self.check(observation, now)
        key = (observation.exchange, observation.minute, observation.node_id)
        if key in self._seen:
            return SubmitResult(Outcome.DUPLICATE)
        if observation.node_id not in self._nodes:
            self._make_room_for_node(now)

        # Checks are done: from here on the submission is accepted and the book changes.
        self._prune_seen(now)
        self._seen[key] = observation.price
        self._seen_minutes.setdefault(observation.minute, []).append(key)
        self._touch_node(observation, now)
        self._last_update = max(self._last_update, now)

        report = Report(observation.price, observation.quote, now)
        by_minute = self._reports.setdefault(observation.exchange, {})
        minute_reports = by_minute.setdefault(observation.minute, {})
        first_reporter = next(iter(minute_reports)) if len(minute_reports) == 1 else None
        minute_reports[observation.node_id] = report
        self._append_to_window(observation.exchange, observation.minute, observation.node_id)

        if not self._refresh_latest(observation.exchange, observation.minute, now):
            return SubmitResult(Outcome.STORED, first_reporter)
        if observation.minute + MINUTE > now + self._config.close_skew:
            return SubmitResult(Outcome.PENDING, first_reporter)
        return SubmitResult(Outcome.COUNTED, first_reporter)

    def _refresh_latest(self, exchange: str, minute: int, now: float) -> bool:
        """Recombine `minute` into the exchange's newest minutes; True if it is the newest.

        A minute older than every held one (a late report) is stored but not held here.
        """
        candidates = self._latest.setdefault(exchange, [])
        if len(candidates) >= _HELD_MINUTES and minute < candidates[-1].minute:
            return False
        combined = combine_reports(exchange, minute, self._reports[exchange][minute])
        # A minute older than the exchange's counted (newest closed) minute can never count, so
        # the aggregate stays valid; anything else may change it.
        counted = counted_price(candidates, now, self._config.close_skew)
        if counted is None or minute >= counted.minute:
            self._aggregate = None
        # Fast paths for the usual cases: another report for the newest minute, or a new minute.
        if candidates and candidates[0].minute == minute:
            candidates[0] = combined
            return True
        if not candidates or minute > candidates[0].minute:
            candidates.insert(0, combined)
            del candidates[_HELD_MINUTES:]
            return True
        kept = [price for price in candidates if price.minute != minute]
        kept.append(combined)
        kept.sort(key=lambda price: price.minute, reverse=True)
        self._latest[exchange] = kept[:_HELD_MINUTES]
        return False

    # -- bounded memory --------------------------------------------------------------------

    def _append_to_window(self, exchange: str, minute: int, node_id: str) -> None:
        window = self._window.setdefault(exchange, deque())
        window.append((minute, node_id))
        while len(window) > self._config.window:
            old_minute, old_node = window.popleft()
            by_minute = self._reports[exchange]
            old_reports = by_minute[old_minute]
            del old_reports[old_node]
            if not old_reports:
                del by_minute[old_minute]
            if any(price.minute == old_minute for price in self._latest[exchange]):
                # Rare: late reports for older minutes pushed out a held minute's report.
                self._latest[exchange] = [
                    combine_reports(exchange, minute, by_minute[minute])
                    for minute in sorted(by_minute, reverse=True)[:_HELD_MINUTES]
                ]
                self._aggregate = None

    def _prune_seen(self, now: float) -> None:
        # Submissions for minutes before the horizon are refused as too late, so they need no
        # record. Pruning once per minute of clock keeps at most one extra minute of records.
        if now < self._next_prune:
            return
        self._next_prune = now + MINUTE
        horizon = now - self._config.lateness - MINUTE
        for minute in [m for m in self._seen_minutes if m < horizon]:
            for key in self._seen_minutes.pop(minute):
                del self._seen[key]

    def _expire_active(self, now: float) -> None:
        cutoff = now - self._config.node_timeout
        while self._active:
            node_id, last_seen = next(iter(self._active.items()))
            if last_seen >= cutoff:
                break
            del self._active[node_id]

    def _make_room_for_node(self, now: float) -> None:
        # Only when full, and only inactive nodes (silent past the node timeout) are forgotten:
        # a burst of junk ids can then hold the table for one node timeout at most, never lock
        # out a real node that comes back after an aggregator restart. Counted first and
        # forgotten after the check, so a refused submission leaves the table as it was.
        if len(self._nodes) < self._config.max_nodes:
            return
        cutoff = now - self._config.node_timeout
        oldest_id, oldest = next(iter(self._nodes.items()))
        if oldest.last_seen >= cutoff:
            raise CapacityError(
                f"node table full ({self._config.max_nodes} nodes active within "
                f"{self._config.node_timeout:g} s); a new node_id is refused until one goes quiet"
            )
        del self._nodes[oldest_id]

    def _touch_node(self, observation: Observation, now: float) -> None:
        node_id = observation.node_id
        record = self._nodes.get(node_id)
        if record is None:
            self._nodes[node_id] = NodeRecord(observation.exchange, now, 1)
        else:
            record.exchange = observation.exchange
            record.last_seen = now
            record.submissions += 1
            self._nodes.move_to_end(node_id)
        self._active[node_id] = now
        self._active.move_to_end(node_id)
