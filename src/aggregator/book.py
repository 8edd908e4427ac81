"""The aggregator's state by candle minute: open rounds, recent closed rounds, nodes, live value.

Each candle minute is a round. It closes as soon as every expected exchange (`exchanges`) has
reported it (once its candle has closed), or `round_deadline` seconds after the candle closed;
a closed round never changes, and a report that arrives for it is stored as late (counted in
the round's `late_reports`, kept for idempotency) and counts nowhere.

Memory is bounded by time, not by arrival order, so no sequence of well-formed submissions can
push the minutes that count out of memory: open rounds exist only for minutes the validation
still accepts (the lateness horizon), each (minute, exchange) holds at most `window` node
reports, a late report keeps only its idempotency record, closed rounds are kept for the
horizon (or an hour, whichever is longer), and the node table is capped.

Every change goes through `submit`, which runs `check` first, so a refused submission leaves
the book exactly as it was. Time is passed in; the book never reads a clock.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from aggregator.aggregation import ExchangePrice, Report, combine_reports
from aggregator.config import AggregatorConfig
from aggregator.round_message import result_of_round, round_message
from aggregator.rounds import (
    LiveAggregate,
    RoundResult,
    Rules,
    Status,
    combined_rate,
    judge_round,
    pick_live,
)
from aggregator.validation import Observation
from common.errors import CapacityError, ConflictingObservationError
from common.proto import oracle_pb2
from common.timeutil import MINUTE, format_minute

# Closed rounds are kept in memory at least this long (GetRound, the live value, late reports).
_CLOSED_KEPT_SECONDS = 3600.0


class Outcome(Enum):
    """What a submission did to the book."""

    # Stored in its minute's open round, whose candle has closed: it counts now.
    COUNTED = "counted"
    # Stored in its open round, but the candle has not closed yet: it counts once it has.
    PENDING = "pending"
    # Its minute's round had closed: stored as late, counted nowhere, the round unchanged.
    LATE = "late"
    # Exactly this report was already stored: nothing changed (idempotent resubmission).
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: Outcome
    # Set when this report is the second one for its exchange and minute: the node that reported
    # it first (the duplicate-exchange case, worth one warning).
    first_reporter: str | None = None
    # Rounds this submission closed (all reported, or past their deadline), oldest first.
    closed_rounds: tuple[oracle_pb2.Round, ...] = ()


@dataclass(slots=True)
class NodeRecord:
    exchange: str
    last_seen: float
    submissions: int


@dataclass(slots=True)
class _OpenRound:
    """One minute still collecting: exchange -> node id -> report (BTC prices only)."""

    minute: int
    deadline: float
    reports: dict[str, dict[str, Report]] = field(default_factory=dict)


@dataclass(slots=True)
class _ClosedRound:
    message: oracle_pb2.Round
    result: RoundResult
    late_reports: int = 0

    def recorded(self, observation: Observation) -> bool:
        """True when the round itself holds this report (a replay at recovery, not a late one)."""
        return any(
            item.price.exchange == observation.exchange
            and item.price.minute == observation.minute
            and any(
                node_id == observation.node_id and report.price == observation.price
                for node_id, report in item.price.reports
            )
            for item in (*self.result.kept, *self.result.excluded)
        )


_SeenKey = tuple[str, str, int, str]  # (exchange, base, minute, node_id)


class Book:
    """Rounds by minute and derived state; single-threaded (one asyncio loop)."""

    def __init__(self, config: AggregatorConfig) -> None:
        self._config = config
        self._rules = Rules(
            max_deviation=config.max_deviation,
            max_flat_minutes=config.max_flat_minutes,
            method=config.method,
            min_sources=config.min_sources,
        )
        self._expected = frozenset(config.exchanges)
        self._open: dict[int, _OpenRound] = {}
        self._closed: dict[int, _ClosedRound] = {}
        # minute -> exchange -> node id -> USDT/USD rate report.
        self._rates: dict[int, dict[str, dict[str, Report]]] = {}
        # exchange -> minute -> its combined price: the recent closes the frozen rule and the
        # per-exchange answer read. Bounded by minutes (see _remember_close), not by count.
        self._closes: dict[str, dict[int, ExchangePrice]] = {}
        # (exchange, base, minute, node_id) -> price for every minute inside the lateness
        # horizon, late reports included: resubmissions stay idempotent, conflicts refused.
        self._seen: dict[_SeenKey, Decimal] = {}
        self._seen_minutes: dict[int, list[_SeenKey]] = {}
        self._next_prune = 0.0
        # node_id -> record, least recently seen first; node_id -> last_seen of active nodes.
        self._nodes: OrderedDict[str, NodeRecord] = OrderedDict()
        self._active: OrderedDict[str, float] = OrderedDict()
        self._live: LiveAggregate | None = None
        self._last_update = 0.0

    @property
    def rules(self) -> Rules:
        return self._rules

    # -- reads -----------------------------------------------------------------------------

    def aggregate(self, now: float) -> LiveAggregate:
        """The live value; recomputed only after a change or when a minute closed or aged."""
        current = self._live
        if current is None or now >= current.valid_until:
            current = self._compute_live(now)
            self._live = current
        return current

    def exchange_price(self, exchange: str, now: float) -> ExchangePrice | None:
        """The exchange's newest closed-candle price if still fresh."""
        for minute in sorted(self._closes.get(exchange, {}), reverse=True):
            price = self._closes[exchange][minute]
            if not self._candle_closed(minute, now):
                continue
            return None if price.closed_age(now) > self._config.staleness else price
        return None

    def open_round(self, minute: int, now: float) -> oracle_pb2.Round | None:
        """The round of `minute` as it stands (closed=False), or None when it is not open."""
        state = self._open.get(minute)
        if state is None:
            return None
        return self._render(self._judge(minute, state), closed=False, now=now, reason=0)

    def closed_round(self, minute: int) -> oracle_pb2.Round | None:
        """The closed round of `minute` if still in memory (with its late report count)."""
        closed = self._closed.get(minute)
        if closed is None:
            return None
        message = oracle_pb2.Round()
        message.CopyFrom(closed.message)
        message.late_reports = closed.late_reports
        return message

    def next_deadline(self) -> float | None:
        """When `close_due` next has something to close (None: no open round)."""
        times = [self._due_at(minute, state) for minute, state in self._open.items()]
        return min(times) if times else None

    def active_nodes(self, now: float) -> list[str]:
        """Ids of nodes that submitted within the node timeout, least recent first."""
        self._expire_active(now)
        return list(self._active)

    def active_node_count(self, now: float) -> int:
        self._expire_active(now)
        return len(self._active)

    def node(self, node_id: str) -> NodeRecord | None:
        return self._nodes.get(node_id)

    def nodes(self) -> list[tuple[str, NodeRecord]]:
        """Every remembered node, most recently seen first (for ListNodes)."""
        return list(reversed(self._nodes.items()))

    @property
    def last_update(self) -> float:
        """Receive time of the newest stored report (0 before the first)."""
        return self._last_update

    def report_count(self, exchange: str) -> int:
        """BTC reports of `exchange` held in open rounds."""
        return sum(len(state.reports.get(exchange, {})) for state in self._open.values())

    def snapshot(self) -> tuple[object, ...]:
        """A comparable image of the whole state: tests assert refusals change none of it."""
        return (
            {m: {ex: dict(r) for ex, r in s.reports.items()} for m, s in self._open.items()},
            {
                m: (c.message.SerializeToString(deterministic=True), c.late_reports)
                for m, c in self._closed.items()
            },
            {m: {ex: dict(r) for ex, r in by.items()} for m, by in self._rates.items()},
            {ex: dict(closes) for ex, closes in self._closes.items()},
            dict(self._seen),
            [
                (node_id, record.exchange, record.last_seen, record.submissions)
                for node_id, record in self._nodes.items()
            ],
            dict(self._active),
            self._last_update,
        )

    # -- checks (no change) ----------------------------------------------------------------

    def check(self, observation: Observation, now: float) -> None:
        """Raise exactly the refusal `submit` would raise; change nothing."""
        self._check(observation, now)

    def _check(self, observation: Observation, now: float) -> bool:
        """As `check`; True when the observation is an idempotent resubmission."""
        previous = self._seen.get(_key(observation))
        if previous is not None:
            if previous == observation.price:
                return True
            what = "USDT/USD rate" if observation.is_rate else "price"
            raise ConflictingObservationError(
                f"node {observation.node_id} already reported {observation.exchange} {what} at "
                f"minute {observation.minute} with {previous}; a different one "
                f"({observation.price}) for the same candle is refused, the first report stands"
            )
        if observation.node_id not in self._nodes:
            self._node_to_forget(now)
        held = self._held_reports(observation)
        if held is not None and len(held) >= self._config.window:
            raise CapacityError(
                f"{len(held)} nodes already reported {observation.exchange} for minute "
                f"{format_minute(observation.minute)} (window = {self._config.window}); "
                "further node ids are refused for this minute"
            )
        return False

    # -- the one write path ----------------------------------------------------------------

    def submit(self, observation: Observation, now: float) -> SubmitResult:
        """Store a validated observation; raises before changing anything when it is refused."""
        if self._check(observation, now):
            return SubmitResult(Outcome.DUPLICATE)
        # Checks are done: from here on the submission is accepted and the book changes.
        closed = self.close_due(now)
        if observation.node_id not in self._nodes:
            forget = self._node_to_forget(now)
            if forget is not None:
                del self._nodes[forget]
        self._prune(now)
        key = _key(observation)
        self._seen[key] = observation.price
        self._seen_minutes.setdefault(observation.minute, []).append(key)
        self._touch_node(observation, now)
        self._last_update = max(self._last_update, now)
        report = Report(
            observation.price,
            observation.quote,
            now,
            observation.symbol,
            observation.signature,
            observation.public_key,
        )
        minute = observation.minute
        pending = not self._candle_closed(minute, now)
        if observation.is_rate:
            by_exchange = self._rates.setdefault(minute, {})
            by_exchange.setdefault(observation.exchange, {})[observation.node_id] = report
            self._live = None
            outcome = Outcome.PENDING if pending else Outcome.COUNTED
            return SubmitResult(outcome, None, tuple(closed))

        closed_round = self._closed.get(minute)
        if closed_round is not None:
            if not closed_round.recorded(observation):
                closed_round.late_reports += 1
            return SubmitResult(Outcome.LATE, None, tuple(closed))
        state = self._open.get(minute)
        if state is None:
            # A minute first reported after its deadline (the aggregator restarted, a node
            # catches up) collects for round_deadline from that first report, so it is not
            # decided by whichever venue happened to arrive first.
            deadline = self._deadline(minute)
            if now >= deadline:
                deadline = now + self._config.round_deadline
            state = self._open[minute] = _OpenRound(minute, deadline)
        reports = state.reports.setdefault(observation.exchange, {})
        first_reporter = next(iter(reports)) if len(reports) == 1 else None
        reports[observation.node_id] = report
        self._remember_close(combine_reports(observation.exchange, minute, reports))
        self._live = None
        if not pending and self._all_reported(state):
            closed.append(self._close(state, now, deadline=False))
        outcome = Outcome.PENDING if pending else Outcome.COUNTED
        return SubmitResult(outcome, first_reporter, tuple(closed))

    def close_due(self, now: float) -> list[oracle_pb2.Round]:
        """Close every open round that is complete or past its deadline; oldest first."""
        closed: list[oracle_pb2.Round] = []
        for minute in sorted(self._open):
            state = self._open[minute]
            if now >= state.deadline:
                closed.append(self._close(state, now, deadline=True))
            elif self._candle_closed(minute, now) and self._all_reported(state):
                closed.append(self._close(state, now, deadline=False))
        return closed

    def restore_closed_round(self, round_message_: oracle_pb2.Round) -> None:
        """Mark a round recovered from history closed: a restart never re-closes or changes it."""
        minute = int(round_message_.minute)
        message = oracle_pb2.Round()
        message.CopyFrom(round_message_)
        self._open.pop(minute, None)
        self._closed[minute] = _ClosedRound(
            message, result_of_round(message, self._rules), int(message.late_reports)
        )
        restored = self._closed[minute].result
        for judged in (*restored.kept, *restored.excluded):
            if judged.price.minute == minute:  # not a stuck venue's older minute
                self._remember_close(judged.price)
        self._live = None

    # -- rounds ----------------------------------------------------------------------------

    def _deadline(self, minute: int) -> float:
        return minute + MINUTE + self._config.round_deadline

    def _candle_closed(self, minute: int, now: float) -> bool:
        return now >= minute + MINUTE - self._config.close_skew

    def _due_at(self, minute: int, state: _OpenRound) -> float:
        if self._all_reported(state):
            return min(minute + MINUTE - self._config.close_skew, state.deadline)
        return state.deadline

    def _all_reported(self, state: _OpenRound) -> bool:
        return self._expected.issubset(state.reports)

    def _rate_for(self, minute: int) -> Decimal | None:
        """The USDT/USD rate for `minute`: that minute's, else the newest within staleness."""
        oldest = minute - self._config.staleness
        for at in sorted((m for m in self._rates if oldest <= m <= minute), reverse=True):
            venues = self._rates[at]
            rate = combined_rate(
                [combine_reports(ex, at, reports).price for ex, reports in sorted(venues.items())]
            )
            if rate is not None:
                return rate
        return None

    def _judge(self, minute: int, state: _OpenRound) -> RoundResult:
        # Each exchange's combination is kept up to date in _closes as reports arrive.
        inputs = [
            self._closes.get(ex, {}).get(minute) or combine_reports(ex, minute, reports)
            for ex, reports in state.reports.items()
        ]
        stuck: list[ExchangePrice] = []
        for exchange in sorted(self._expected - set(state.reports)):
            older = [m for m in self._closes.get(exchange, {}) if m < minute]
            if older and minute - max(older) <= self._config.staleness + MINUTE:
                stuck.append(self._closes[exchange][max(older)])
        closes = {
            exchange: {m: price.price for m, price in by_minute.items() if m <= minute}
            for exchange, by_minute in self._closes.items()
        }
        return judge_round(
            minute,
            inputs,
            rules=self._rules,
            usdt_rate=self._rate_for(minute),
            closes=closes,
            stuck=stuck,
        )

    def _render(
        self, result: RoundResult, *, closed: bool, now: float, reason: int
    ) -> oracle_pb2.Round:
        return round_message(
            result,
            closed=closed,
            closed_at=now,
            close_reason=reason,
            simulated=self._config.simulate,
            expected=self._config.exchanges,
        )

    def _close(self, state: _OpenRound, now: float, *, deadline: bool) -> oracle_pb2.Round:
        result = self._judge(state.minute, state)
        reason = (
            oracle_pb2.ROUND_CLOSE_REASON_DEADLINE
            if deadline
            else oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED
        )
        message = self._render(result, closed=True, now=now, reason=reason)
        self._open.pop(state.minute, None)
        self._closed[state.minute] = _ClosedRound(message, result)
        self._live = None
        copy = oracle_pb2.Round()
        copy.CopyFrom(message)
        return copy

    def _compute_live(self, now: float) -> LiveAggregate:
        """The newest fresh closed-candle minute with the best status (rounds.pick_live)."""
        fresh = sorted(
            (
                m
                for m in {*self._open, *self._closed}
                if self._candle_closed(m, now) and now - (m + MINUTE) <= self._config.staleness
            ),
            reverse=True,
        )
        verdicts = [
            (self._closed[m].result, True)
            if m in self._closed
            else (self._judge(m, self._open[m]), False)
            for m in fresh
        ]
        picked = pick_live(verdicts)
        # Valid until a pending minute's candle closes or a fresh one goes stale.
        changes = [m + MINUTE - self._config.close_skew for m in self._open if m not in fresh]
        changes += [m + MINUTE + self._config.staleness + 1e-6 for m in fresh]
        valid_until = min(changes, default=math.inf)
        if picked is None:
            reason = (
                "no fresh prices: no round within the staleness window"
                if self._closes
                else "no prices submitted yet"
            )
            return LiveAggregate(None, False, reason, valid_until)
        chosen, final = picked
        reason = chosen.summary if chosen.status is Status.UNKNOWN else ""
        return LiveAggregate(chosen, final, reason, valid_until)

    def _remember_close(self, price: ExchangePrice) -> None:
        # Enough minutes for the frozen rule and the per-exchange answer; older ones go, by
        # minute, so no burst of reports can push out the newest ones.
        closes = self._closes.setdefault(price.exchange, {})
        closes[price.minute] = price
        newest = max(closes)
        keep_from = newest - (self._rules.max_flat_minutes + 2) * MINUTE
        for minute in [m for m in closes if m < keep_from]:
            del closes[minute]

    # -- bounded memory --------------------------------------------------------------------

    def _held_reports(self, observation: Observation) -> dict[str, Report] | None:
        if observation.is_rate:
            return self._rates.get(observation.minute, {}).get(observation.exchange)
        state = self._open.get(observation.minute)
        return None if state is None else state.reports.get(observation.exchange)

    def _prune(self, now: float) -> None:
        # Submissions for minutes before the horizon are refused as too late, so they need no
        # record. Pruning once per minute of clock keeps at most one extra minute of records.
        if now < self._next_prune:
            return
        self._next_prune = now + MINUTE
        horizon = now - self._config.lateness - MINUTE
        for minute in [m for m in self._seen_minutes if m < horizon]:
            for key in self._seen_minutes.pop(minute):
                del self._seen[key]
        for minute in [m for m in self._rates if m < horizon - self._config.staleness]:
            del self._rates[minute]
        kept_from = now - max(self._config.lateness + MINUTE, _CLOSED_KEPT_SECONDS) - MINUTE
        for minute in [m for m in self._closed if m < kept_from]:
            del self._closed[minute]

    def _expire_active(self, now: float) -> None:
        cutoff = now - self._config.node_timeout
        while self._active:
            node_id, last_seen = next(iter(self._active.items()))
            if last_seen >= cutoff:
                break
            del self._active[node_id]

    def _node_to_forget(self, now: float) -> str | None:
        # Only when full, and only inactive nodes (silent past the node timeout) are forgotten:
        # a burst of junk ids can then hold the table for one node timeout at most, never lock
        # out a real node that comes back after an aggregator restart. Decided in the check,
        # forgotten in submit, so a refused submission leaves the table as it was.
        if len(self._nodes) < self._config.max_nodes:
            return None
        cutoff = now - self._config.node_timeout
        oldest_id, oldest = next(iter(self._nodes.items()))
        if oldest.last_seen >= cutoff:
            raise CapacityError(
                f"node table full ({self._config.max_nodes} nodes active within "
                f"{self._config.node_timeout:g} s); a new node_id is refused until one goes quiet"
            )
        return oldest_id

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


def _key(observation: Observation) -> _SeenKey:
    return (observation.exchange, observation.base, observation.minute, observation.node_id)
