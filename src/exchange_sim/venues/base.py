"""What a simulated venue is: its paths, its pairs, its answers and its ways of failing.

`SimApp` knows venues only through this protocol and the registry in `venues/__init__.py`, so a
venue's quirks (row order, numbers or strings, errors inside HTTP 200, the forming candle) live in
its own module and the app has no per-venue branches. Everything a candle answer depends on is in
the `CandleAsk`, so a venue's answer is a pure function of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from common.timeutil import MINUTE, minute_floor

from ..market import Candle, Market
from ..responses import Query, SimResponse
from ..tamper import RowFields, Tamper


@dataclass(frozen=True)
class CandleAsk:
    """One candles request as a venue sees it, with the simulator state it may read.

    `lag_seconds`: a closed minute is published only this long after its close (the forming minute
    is always there); `tamper`: damage to apply to the rows before they are encoded.
    """

    path: str
    query: Query
    headers: Mapping[str, str]
    now: float
    market: Market
    lag_seconds: float = 0.0
    tamper: Tamper | None = None

    def published(self, minute: int) -> bool:
        """Whether the candle of `minute` is in an answer given at `now`."""
        return minute == minute_floor(self.now) or minute + MINUTE + self.lag_seconds <= self.now

    def rows(
        self,
        series: str,
        minutes: Iterable[int],
        row: Callable[[Candle], list[object]],
        fields: RowFields,
    ) -> list[list[object]]:
        """The venue's rows (`row` of each candle) for the published ones of `minutes`, in that
        order, damaged by the tamper fault if one fired for this request."""
        rows = [
            row(self.market.candle(series, minute, self.now))
            for minute in minutes
            if self.published(minute)
        ]
        return rows if self.tamper is None else self.tamper.apply(rows, fields)


class SimVenue(Protocol):
    """One simulated exchange's HTTP API."""

    name: str
    default_lag_seconds: float

    def serves(self, path: str) -> bool:
        """True for this venue's candles path (the only one that faults apply to)."""
        ...

    def candles(self, ask: CandleAsk) -> SimResponse:
        """The candles answer, or the exact error answer the real venue gives for `ask`."""
        ...

    def info(self, path: str, now: float) -> SimResponse | None:
        """The venue's other public endpoints (server time, ping); None for paths it lacks."""
        ...

    def rate_limited(self, retry_after: int | str) -> SimResponse:
        """How the venue refuses a client that calls too often."""
        ...

    def banned(self, retry_after: int | str, now: float) -> SimResponse:
        """How the venue refuses a client it has banned (Binance's 418; else its rate limit)."""
        ...

    def geo_blocked(self) -> SimResponse:
        """How the venue refuses a client's location."""
        ...

    def server_error(self, status: int) -> SimResponse:
        """A 5xx as this venue (or the CDN in front of it) sends one."""
        ...

    def finish(self, response: SimResponse, now: float) -> SimResponse:
        """The venue's own headers on every candles answer (e.g. Binance's used weight)."""
        ...
