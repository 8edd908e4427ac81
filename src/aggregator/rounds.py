"""Pure round rules: which inputs of one candle minute count, their price, status and confidence.

Beside `aggregation.py` (one price per exchange) and, like it, a function of its arguments only:
the book hands in one minute's exchange prices, the USDT/USD rate, each exchange's recent closes
and the exchanges that did not report, and gets back the verdict with a reason for every input
left out. The live aggregate and the closed rounds are judged by this one function, so what a
consumer reads live is what the round records once it closes (README, "Aggregation rules").

The rules, in order:
1. USDT-quoted inputs are converted to USD with the minute's USDT/USD rate; with no rate they are
   taken at par and the result says so (`usdt_at_par`), never silently.
2. Frozen: an input whose close has not changed for `max_flat_minutes` while another exchange's
   close moved in the same minutes is excluded ("frozen"). Stuck: an expected exchange that did
   not report this minute but an older one is named ("stuck") with its last minute.
3. Outliers: with three or more inputs, one further than `max_deviation` from the median of the
   minute's inputs (frozen ones included: see `_screen`) is excluded ("deviation") and named
   with its deviation.
4. Two inputs that disagree (further apart than `max_deviation`) cannot be told apart: nothing
   says which one is wrong, so publishing either (or their mean, a price neither venue quotes)
   would be a guess. Both are excluded ("disagreement") and the result is UNKNOWN: no price
   rather than a wrong one.
5. Status: OK with at least `min_sources` kept inputs, DEGRADED with fewer but at least one,
   UNKNOWN with none (and no price). Confidence is half the range of the kept inputs' USD prices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import Enum
from typing import Literal

from aggregator.aggregation import ExchangePrice, median
from common.timeutil import MINUTE, format_minute

Method = Literal["mean", "median"]
E8 = Decimal(10) ** 8


class Status(Enum):
    """Quality of a price; the names are PriceStatus's (proto/oracle.proto)."""

    OK = "OK"
    DEGRADED = "DEGRADED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings the rules read (from `[aggregator]`), frozen so one judgement uses one set."""

    max_deviation: Decimal = Decimal("0.01")
    max_flat_minutes: int = 5
    method: Method = "mean"
    min_sources: int = 2


@dataclass(frozen=True, slots=True)
class Judged:
    """One exchange's input with its USD price, deviation from the median and verdict."""

    price: ExchangePrice
    usd_price: Decimal
    deviation: Decimal
    # "" for a kept input; otherwise a stable code (see the module docstring) and an explanation.
    reason: str = ""
    detail: str = ""

    @property
    def exchange(self) -> str:
        return self.price.exchange

    @property
    def kept(self) -> bool:
        return not self.reason


@dataclass(frozen=True, slots=True)
class RoundResult:
    """The verdict for one minute: what is published for it and why."""

    minute: int
    status: Status
    price: Decimal | None  # USD; None exactly when status is UNKNOWN
    confidence: Decimal | None  # USD, half the kept range; None when UNKNOWN
    method: Method
    kept: tuple[Judged, ...]
    excluded: tuple[Judged, ...]
    usdt_rate: Decimal | None
    usdt_at_par: bool
    summary: str

    @property
    def usdt_converted(self) -> bool:
        """True when a USDT-quoted input was converted with a rate."""
        return self.usdt_rate is not None and any(
            item.price.quote == "USDT" for item in (*self.kept, *self.excluded)
        )


def to_e8(value: Decimal) -> int:
    """Integer fixed-point with 8 decimals, rounded half to even (the contract's `*_e8`)."""
    return int((value * E8).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def percent(fraction: Decimal) -> str:
    return f"{fraction * 100:.2f} %"


def usd_value(price: ExchangePrice, rate: Decimal | None) -> Decimal:
    """The input in USD: USDT times the rate, or at par when there is no rate."""
    if price.quote == "USDT" and rate is not None:
        return price.price * rate
    return price.price


def frozen_detail(
    exchange: str,
    minute: int,
    closes: Mapping[str, Mapping[int, Decimal]],
    max_flat_minutes: int,
) -> str | None:
    """Why `exchange` counts as frozen at `minute`, or None.

    Frozen: its closes at `minute` and `max_flat_minutes` minutes earlier (and every one it
    reported in between) are equal, while some other exchange's closes in the same span differ.
    The second condition keeps a genuinely quiet market (every venue flat) from losing all its
    inputs; one venue flat while others move is a venue whose feed stopped.
    """
    own = closes.get(exchange, {})
    start = minute - max_flat_minutes * MINUTE
    if minute not in own or start not in own:
        return None
    span = [price for at, price in own.items() if start <= at <= minute]
    if len(set(span)) != 1:
        return None
    for other, other_closes in closes.items():
        if other == exchange:
            continue
        moved = {price for at, price in other_closes.items() if start <= at <= minute}
        if len(moved) > 1:
            return (
                f"close {own[minute]} unchanged for {max_flat_minutes} minutes while {other} moved"
            )
    return None


def _combine(values: Sequence[Decimal], method: Method) -> Decimal:
    if method == "median":
        return median(values)
    return sum(values, Decimal(0)) / len(values)


def judge_round(
    minute: int,
    inputs: Sequence[ExchangePrice],
    *,
    rules: Rules,
    usdt_rate: Decimal | None = None,
    closes: Mapping[str, Mapping[int, Decimal]] | None = None,
    stuck: Sequence[ExchangePrice] = (),
) -> RoundResult:
    """The verdict for `minute` from its inputs (one per exchange, all of that minute).

    `closes` is each exchange's recent closes by minute (for the frozen rule); `stuck` the
    newest older minute of each expected exchange that did not report `minute`, to be named.
    """
    closes = closes or {}
    excluded: list[Judged] = []
    for late in stuck:
        # One minute behind is a venue that publishes late (Coinbase) or has not reported yet;
        # further behind, its feed is stuck on an old minute.
        behind = (minute - late.minute) // MINUTE
        excluded.append(
            Judged(
                late,
                usd_value(late, usdt_rate),
                Decimal(0),
                "behind" if behind <= 1 else "stuck",
                f"no report for {format_minute(minute)}; newest is {format_minute(late.minute)}, "
                f"{behind} minute(s) behind",
            )
        )
    kept, screened, summary = _screen(minute, inputs, rules, usdt_rate, closes)
    excluded.extend(screened)
    at_par = usdt_rate is None and any(
        item.price.quote == "USDT" for item in (*kept, *excluded) if item.price.minute == minute
    )
    excluded.sort(key=lambda item: item.exchange)
    if not kept:
        return RoundResult(
            minute,
            Status.UNKNOWN,
            None,
            None,
            rules.method,
            (),
            tuple(excluded),
            usdt_rate,
            at_par,
            summary or "no input kept: " + _reasons(excluded, "no exchange reported"),
        )
    values = [item.usd_price for item in kept]
    published = _combine(values, rules.method)
    confidence = (max(values) - min(values)) / 2
    if len(kept) >= rules.min_sources:
        status = Status.OK
    else:
        status = Status.DEGRADED
        summary = f"{len(kept)} input(s) kept, {rules.min_sources} needed for OK" + (
            f"; {_reasons(excluded, '')}" if excluded else ""
        )
    return RoundResult(
        minute,
        status,
        published,
        confidence,
        rules.method,
        tuple(kept),
        tuple(excluded),
        usdt_rate,
        at_par,
        summary,
    )


def _screen(
    minute: int,
    inputs: Sequence[ExchangePrice],
    rules: Rules,
    usdt_rate: Decimal | None,
    closes: Mapping[str, Mapping[int, Decimal]],
) -> tuple[list[Judged], list[Judged], str]:
    """The frozen, outlier and two-input rules: (kept, excluded, why nothing could be kept).

    The median is taken over all of the minute's inputs, frozen ones included: a venue frozen
    for a few minutes is still close to the market and helps tell which of the others moved
    away (one frozen, one jumping, one healthy: the jump is the outlier), but it is not kept.
    """
    if not inputs:
        return [], [], ""
    ordered = sorted(inputs, key=lambda item: item.exchange)
    values = [usd_value(price, usdt_rate) for price in ordered]
    middle = median(values)
    kept: list[Judged] = []
    excluded: list[Judged] = []
    rest: list[Judged] = []
    for price, usd in zip(ordered, values, strict=True):
        deviation = abs(usd - middle) / middle
        frozen = frozen_detail(price.exchange, minute, closes, rules.max_flat_minutes)
        if frozen is not None:
            excluded.append(Judged(price, usd, deviation, "frozen", frozen))
        else:
            rest.append(Judged(price, usd, deviation))
    if len(ordered) == 2 and len(rest) == 2:
        low, high = sorted(item.usd_price for item in rest)
        gap = (high - low) / middle
        if gap > rules.max_deviation:
            names = " and ".join(item.exchange for item in rest)
            summary = (
                f"disagreement: {names} differ by {percent(gap)} (> "
                f"{percent(rules.max_deviation)}) and nothing says which is right"
            )
            excluded.extend(
                Judged(item.price, item.usd_price, item.deviation, "disagreement", summary)
                for item in rest
            )
            return [], excluded, summary
    for item in rest:
        if len(ordered) >= 3 and item.deviation > rules.max_deviation:
            detail = (
                f"{percent(item.deviation)} from the median {middle:.2f} (> "
                f"{percent(rules.max_deviation)})"
            )
            excluded.append(Judged(item.price, item.usd_price, item.deviation, "deviation", detail))
        else:
            kept.append(item)
    return kept, excluded, ""


def _reasons(excluded: Sequence[Judged], empty: str) -> str:
    if not excluded:
        return empty
    return "; ".join(f"{item.exchange} {item.reason}: {item.detail}" for item in excluded)


def combined_rate(rates: Sequence[Decimal]) -> Decimal | None:
    """One USDT/USD rate from the venues' rates for a minute: their median (None for none)."""
    return median(rates) if rates else None


@dataclass(frozen=True, slots=True)
class LiveAggregate:
    """What GetAggregatedPrice serves: one minute's verdict, and whether its round is final.

    A live value is always one round's value (never inputs of two minutes under one label):
    `result.minute` says which, `final` whether that round has closed (the value can no longer
    change) or is still open.
    """

    result: RoundResult | None  # None: no fresh minute at all
    final: bool
    reason: str  # why there is no price (UNKNOWN), or ""
    # The answer stays right until this time unless a report arrives or a round closes.
    valid_until: float

    @property
    def status(self) -> Status:
        return Status.UNKNOWN if self.result is None else self.result.status

    @property
    def price(self) -> Decimal | None:
        return None if self.result is None else self.result.price

    @property
    def minute(self) -> int | None:
        return None if self.result is None else self.result.minute

    @property
    def inputs(self) -> tuple[ExchangePrice, ...]:
        """The kept inputs (the original's `recent_prices`)."""
        return () if self.result is None else tuple(item.price for item in self.result.kept)

    @property
    def available(self) -> bool:
        return self.price is not None


_RANK = {Status.OK: 2, Status.DEGRADED: 1, Status.UNKNOWN: 0}


def pick_live(verdicts: Sequence[tuple[RoundResult, bool]]) -> tuple[RoundResult, bool] | None:
    """The minute to serve live: (verdict, closed) of the fresh, closed-candle minutes, newest
    first.

    The newest closed round is the reference: it is final and says the truth about its minute
    (a venue just found frozen makes it DEGRADED, and that is served, not an older OK minute).
    A newer open round replaces it once its status is at least as good, so while the next
    minute has only its fastest venue in, consumers keep the final OK value instead of a
    one-venue price; as soon as the open minute is as good, it wins. With no closed round, the
    best of the open ones, newest first.
    """
    closed = next((item for item in verdicts if item[1]), None)
    floor = _RANK[closed[0].status] if closed is not None else 0
    best: tuple[RoundResult, bool] | None = None
    for verdict, is_closed in verdicts:
        if closed is not None and verdict.minute <= closed[0].minute:
            break
        rank = _RANK[verdict.status]
        if rank >= floor and (best is None or rank > _RANK[best[0].status]):
            best = (verdict, is_closed)
    return best if best is not None else closed
