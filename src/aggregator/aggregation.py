"""Pure aggregation: one price per exchange, then the mean over exchanges, as a function of `now`.

No clock reads, no state: the book hands in each exchange's newest reports and the time, and gets
back the aggregate with the reasons for every exchange left out. This is where the original's
defect is fixed: it averaged per node, so three nodes on one exchange weighed three times; here an
exchange's nodes are first combined (median) into one price, and each exchange counts once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from common.timeutil import MINUTE


@dataclass(frozen=True, slots=True)
class Report:
    """One node's report of one exchange's close for one minute, stored under its node id."""

    price: Decimal
    quote: str
    received_at: float


@dataclass(frozen=True, slots=True)
class ExchangePrice:
    """An exchange's price for one minute: the median of its nodes' reports."""

    exchange: str
    minute: int
    price: Decimal
    quote: str
    node_ids: tuple[str, ...]
    received_at: float

    def closed_age(self, now: float) -> float:
        """Seconds since this candle closed (negative for a minute that has not closed yet)."""
        return now - (self.minute + MINUTE)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The result of one aggregation, with why each left-out exchange was left out."""

    price: Decimal | None
    minute: int | None
    inputs: tuple[ExchangePrice, ...]
    excluded: tuple[tuple[str, str], ...]
    reason: str
    # The aggregate stays exactly right until this time unless a new report arrives; after it,
    # an input has gone stale and the aggregate must be recomputed.
    valid_until: float

    @property
    def available(self) -> bool:
        return self.price is not None


def median(values: Iterable[Decimal]) -> Decimal:
    """The median; the mean of the two middle values for an even count."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def combine_reports(exchange: str, minute: int, reports: Mapping[str, Report]) -> ExchangePrice:
    """One exchange's price for `minute` from all of its nodes' reports (node id -> report).

    The median rather than the mean: one faulty node among three of an exchange cannot move
    the exchange's price.
    """
    if not reports:
        raise ValueError(f"no reports for {exchange} at minute {minute}")
    if len(reports) == 1:  # the usual case: one node per exchange
        ((node_id, report),) = reports.items()
        return ExchangePrice(
            exchange, minute, report.price, report.quote, (node_id,), report.received_at
        )
    values = reports.values()
    return ExchangePrice(
        exchange=exchange,
        minute=minute,
        price=median([report.price for report in values]),
        quote=next(iter(values)).quote,
        node_ids=tuple(sorted(reports)),
        received_at=max(report.received_at for report in values),
    )


def counted_price(
    candidates: Sequence[ExchangePrice], now: float, close_skew: float
) -> ExchangePrice | None:
    """The newest of an exchange's minutes (newest first) whose candle has closed by `now`.

    A minute that has not closed yet (its open time is allowed up to the aggregator's future
    limit, for clock skew) is kept but does not count: one report dated in the future can then
    neither take over the aggregate nor hide the exchange's real, closed minutes.
    """
    for price in candidates:
        if price.closed_age(now) >= -close_skew:
            return price
    return None


def aggregate(
    latest: Mapping[str, Sequence[ExchangePrice]],
    now: float,
    *,
    staleness: float,
    quorum: int = 1,
    close_skew: float = 0.0,
) -> Aggregate:
    """The mean of each exchange's newest fresh closed price.

    `latest` holds each exchange's newest minutes, newest first. An exchange counts when its
    newest closed minute closed at most `staleness` seconds ago and is at most one minute older
    than the newest counted minute of any exchange (so a venue that publishes late, like
    Coinbase, still counts, but a venue stuck on an old minute does not drag the price).
    """
    excluded: list[tuple[str, str]] = []
    fresh: list[ExchangePrice] = []
    # The aggregate must be recomputed when a minute held back as not closed yet closes.
    next_close = math.inf
    for exchange, candidates in sorted(latest.items()):
        price = counted_price(candidates, now, close_skew)
        if candidates and candidates[0] is not price:
            next_close = min(next_close, candidates[0].minute + MINUTE - close_skew)
        if price is None:
            excluded.append((exchange, "not closed yet: only minutes still forming were reported"))
            continue
        age = price.closed_age(now)
        if age > staleness:
            excluded.append((exchange, f"stale: candle closed {age:.0f} s ago (> {staleness:g} s)"))
        else:
            fresh.append(price)
    if not fresh:
        reason = (
            "no fresh prices: no exchange has a closed candle within the staleness window"
            if latest
            else "no prices submitted yet"
        )
        return Aggregate(None, None, (), tuple(excluded), reason, next_close)

    newest_minute = max(price.minute for price in fresh)
    inputs: list[ExchangePrice] = []
    for price in fresh:
        if price.minute < newest_minute - MINUTE:
            lag_minutes = (newest_minute - price.minute) // MINUTE
            excluded.append((price.exchange, f"behind: {lag_minutes} minutes older than newest"))
        else:
            inputs.append(price)

    valid_until = min(next_close, *(price.minute + MINUTE + staleness for price in inputs))
    if len(inputs) < quorum:
        reason = f"below quorum: {len(inputs)} fresh exchange(s), {quorum} required"
        return Aggregate(None, None, tuple(inputs), tuple(excluded), reason, valid_until)

    mean = sum((price.price for price in inputs), Decimal(0)) / len(inputs)
    return Aggregate(mean, newest_minute, tuple(inputs), tuple(excluded), "", valid_until)
