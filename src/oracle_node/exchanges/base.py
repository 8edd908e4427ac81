"""What an exchange adapter is: a request description and a pure parser, nothing that does I/O.

Each venue's module builds the HTTP request for "the candle that opened at `minute`" and turns the
response body into a `Candle`, so every quirk (row order, string vs number prices, the forming
candle, errors inside HTTP 200) lives in one small, offline-testable place. The fetcher owns the
network, the retries and the status codes common to every venue. What the venues share (finding the
row that opened at a minute, reading its prices as `Decimal`) is here, driven by each venue's
`RowLayout`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Protocol

from common.timeutil import MINUTE
from oracle_node.candle import Candle
from oracle_node.errors import CandleNotYetAvailableError, MalformedResponseError


@dataclass(frozen=True)
class ExchangeRequest:
    """A GET on `path` (appended to the configured base URL) with query parameters."""

    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class ExchangeAdapter(Protocol):
    """One venue's request builder and response parser."""

    name: str
    display_name: str
    default_api_url: str
    default_symbol: str

    def request(self, symbol: str, minute: int) -> ExchangeRequest:
        """The request whose answer contains the candle that opened at `minute`."""
        ...

    def parse(self, body: bytes, symbol: str, minute: int, exchange_time: float) -> Candle:
        """The closed candle that opened at `minute`; raises a `FetchError` subclass otherwise.

        `exchange_time` is the venue's clock when it answered (its HTTP `Date`): a row counts as
        closed only once that clock has reached the end of its minute.
        """
        ...

    def error_message(self, status: int, body: bytes) -> str:
        """An operator-facing explanation of a non-retryable HTTP error answer."""
        ...


def quote_of(symbol: str) -> str:
    """The quote currency of a BTC pair symbol (`BTCUSDT`, `BTC-USD`, `XBTUSD`): USDT or USD.

    Binance's default pair is USDT-quoted while Coinbase and Kraken quote USD; the aggregator needs
    to know which, so a symbol with another quote is refused at configuration time.
    """
    compact = symbol.replace("-", "").replace("/", "").upper()
    if compact.endswith("USDT"):
        return "USDT"
    if compact.endswith("USD"):
        return "USD"
    raise ValueError(f"symbol {symbol!r} is not quoted in USD or USDT")


def load_json(body: bytes, display_name: str) -> object:
    """Decode a body with numbers as `Decimal`, so Coinbase's JSON numbers never become floats."""
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedResponseError(
            f"Failed to parse {display_name} JSON response ({exc}); "
            "check network connection and API availability"
        ) from exc


def to_decimal(value: object, what: str, display_name: str) -> Decimal:
    """A price field as `Decimal`, whether the venue sent a string or a JSON number."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise MalformedResponseError(f"{display_name} {what} is not a number: {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise MalformedResponseError(f"{display_name} {what} is not a number: {value!r}") from exc


def to_int(value: object, what: str, display_name: str) -> int:
    """A time field as `int`; JSON booleans and fractions are refused rather than truncated."""
    if isinstance(value, bool):
        raise MalformedResponseError(f"{display_name} {what} is not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise MalformedResponseError(f"{display_name} {what} is not an integer: {value!r}")


@dataclass(frozen=True)
class RowLayout:
    """Where one venue's candle rows keep each field; column 0 is always the open time.

    `row` and `time` are the venue's own words for a row and for column 0, so an error names them
    as its documentation does; `length` is the fewest columns a row may have; `time_unit` is what
    one second of open time counts (Binance: ms).
    """

    venue: str
    row: str
    time: str
    open: int
    high: int
    low: int
    close: int
    length: int = 5
    time_unit: int = 1

    def find(self, rows: list[object], minute: int) -> tuple[int, list[object]] | None:
        """The first row that opened at `minute`, with its index; every row before it is checked."""
        wanted = minute * self.time_unit
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) < self.length:
                raise MalformedResponseError(
                    f"{self.venue} {self.row} has the wrong shape: {row!r:.200}"
                )
            if to_int(row[0], self.time, self.venue) == wanted:
                return index, row
        return None

    def candle(self, row: list[object], exchange: str, symbol: str, minute: int) -> Candle:
        """The candle in a row `find` returned, every price as `Decimal`.

        Prices are read in row order, so of several bad fields the error names the first one.
        """
        columns = sorted(
            [(self.open, "open"), (self.high, "high"), (self.low, "low"), (self.close, "close")]
        )
        prices = {what: to_decimal(row[column], what, self.venue) for column, what in columns}
        return Candle(
            exchange=exchange,
            symbol=symbol,
            quote=quote_of(symbol),
            minute=minute,
            open=prices["open"],
            high=prices["high"],
            low=prices["low"],
            close=prices["close"],
        )


def require_closed(venue: str, minute: int, exchange_time: float) -> None:
    """Refuse a minute the venue's own clock has not finished: its row can still change.

    The reference rule for every venue is "closed by time, not by position": a candle that opens at
    `t` is final once exchange time is at least `t + 60`. Coinbase sends the forming minute as its
    first row with no flag, so position alone cannot tell.
    """
    if exchange_time < minute + MINUTE:
        raise CandleNotYetAvailableError(
            f"{venue} minute {minute} is still forming at exchange time {exchange_time:.0f}"
        )


def error_text(body: bytes) -> str:
    """The venue's own error text from a JSON error body, or the start of a non-JSON body."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:200].decode("utf-8", errors="replace").strip()
    if isinstance(decoded, dict):
        for key in ("msg", "message", "error"):
            if key in decoded:
                return str(decoded[key])
    return str(decoded)[:200]
