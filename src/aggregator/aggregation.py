"""Pure per-exchange combination: one price per exchange and minute from its nodes' reports.

No clock reads, no state. This is where the original's defect is fixed: it averaged per node, so
three nodes on one exchange weighed three times; here an exchange's nodes are first combined
(median) into one price, and each exchange counts once. Which exchange prices then count, and
how they combine into a published price, is `rounds.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from common.timeutil import MINUTE


@dataclass(frozen=True, slots=True)
class Report:
    """One node's report of one exchange's close for one minute, stored under its node id."""

    price: Decimal
    quote: str
    received_at: float
    symbol: str = ""
    signature: bytes = b""
    public_key: bytes = b""


@dataclass(frozen=True, slots=True)
class ExchangePrice:
    """An exchange's price for one minute: the median of its nodes' reports."""

    exchange: str
    minute: int
    price: Decimal
    quote: str
    node_ids: tuple[str, ...]
    received_at: float
    # The node reports combined here (node id, report), by node id: what a round records so
    # anyone can re-check it.
    reports: tuple[tuple[str, Report], ...] = ()

    def closed_age(self, now: float) -> float:
        """Seconds since this candle closed (negative for a minute that has not closed yet)."""
        return now - (self.minute + MINUTE)


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
    ordered = tuple(sorted(reports.items()))
    if len(ordered) == 1:  # the usual case: one node per exchange
        ((node_id, report),) = ordered
        return ExchangePrice(
            exchange, minute, report.price, report.quote, (node_id,), report.received_at, ordered
        )
    return ExchangePrice(
        exchange=exchange,
        minute=minute,
        price=median([report.price for _, report in ordered]),
        quote=ordered[0][1].quote,
        node_ids=tuple(node_id for node_id, _ in ordered),
        received_at=max(report.received_at for _, report in ordered),
        reports=ordered,
    )
