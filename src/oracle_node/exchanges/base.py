"""What an exchange adapter is: a request description and a pure parser, nothing that does I/O.

Each venue's module builds the HTTP request for "the candle that opened at `minute`" and turns the
response body into a `Candle`, so every quirk (row order, string vs number prices, the forming
candle, errors inside HTTP 200) lives in one small, offline-testable place. The fetcher owns the
network, the retries and the status codes common to every venue. What the venues share (finding the
row that opened at a minute, reading its prices as `Decimal`) is here, driven by each venue's
`RowLayout`.

Every answer is read as a hostile venue might write it: JSON nested deeper than any venue nests it,
non-standard constants (`NaN`, `Infinity`), prices that are not finite numbers or have absurdly
many digits, rows of the wrong length, in the wrong order, for the same minute twice or from the
future: each is a `MalformedResponseError` naming what was wrong, never a guess and never a
traceback. Quoted pieces of a bad answer are cut short (`preview`), so a hostile body cannot flood
the log.
"""

from __future__ import annotations

import itertools
import json
import reprlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Final, Protocol

from common.timeutil import MINUTE
from oracle_node.candle import Candle
from oracle_node.errors import CandleNotYetAvailableError, MalformedResponseError

# No venue nests its answer more than four levels deep (Kraken: object, result, pair, row).
MAX_JSON_DEPTH: Final = 16
# A price with more digits than this is not a price any venue quotes (Binance: 8 decimals).
MAX_PRICE_DIGITS: Final = 32

BTC: Final = "BTC"
USDT: Final = "USDT"
_BTC_NAMES: Final = ("XXBT", "XBT", "BTC")
_USD_NAMES: Final = ("USD", "ZUSD")

_preview = reprlib.Repr()
_preview.maxlevel = 3
_preview.maxstring = 80
_preview.maxother = 80
_preview.maxlist = 8
_preview.maxdict = 8


def preview(value: object) -> str:
    """A short, bounded repr of a piece of an answer, safe for any size or depth."""
    return _preview.repr(value)


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


def pair_of(symbol: str) -> tuple[str, str]:
    """(base, quote) of a venue symbol: `BTCUSDT` -> (BTC, USDT), `USDT-USD` -> (USDT, USD).

    The oracle prices two things: BTC in USD or USDT, and USDT in USD (the rate that converts
    USDT-quoted BTC prices). Any other pair is refused, so a mistyped symbol never yields a
    price of something else.
    """
    compact = symbol.replace("-", "").replace("/", "").upper()
    if compact.startswith(USDT):
        if compact[len(USDT) :] in _USD_NAMES:
            return USDT, "USD"
        raise ValueError(f"symbol {symbol!r} is not a USDT/USD pair")
    base = next((name for name in _BTC_NAMES if compact.startswith(name)), None)
    if base is None:
        raise ValueError(f"symbol {symbol!r} is not a BTC pair (BTC or XBT) nor USDT/USD")
    rest = compact[len(base) :]
    if rest in ("USDT", "ZUSDT"):
        return BTC, "USDT"
    if rest in _USD_NAMES:
        return BTC, "USD"
    raise ValueError(f"symbol {symbol!r} is not quoted in USD or USDT")


def quote_of(symbol: str) -> str:
    """The quote currency of a BTC pair symbol (`BTCUSDT`, `BTC-USD`, `XBTUSD`): USDT or USD.

    Binance's default pair is USDT-quoted while Coinbase and Kraken quote USD; the aggregator needs
    to know which, so a symbol with another quote (or of another asset) is refused at
    configuration time.
    """
    base, quote = pair_of(symbol)
    if base != BTC:
        raise ValueError(f"symbol {symbol!r} is not a BTC pair; a node's symbol prices BTC")
    return quote


def _no_constants(name: str) -> object:
    raise ValueError(f"non-standard JSON constant {name}")


def load_json(body: bytes, display_name: str) -> object:
    """Decode a body with numbers as `Decimal`, so Coinbase's JSON numbers never become floats.

    Refused: anything that is not JSON (with the start of the body, e.g. an HTML page), the
    constants `NaN`/`Infinity` that Python's parser would otherwise accept, and nesting deeper
    than `MAX_JSON_DEPTH` (deep enough to crash the parser is refused the same way).
    """
    try:
        decoded = json.loads(body, parse_float=Decimal, parse_constant=_no_constants)
    except RecursionError:
        raise MalformedResponseError(
            f"{display_name} answer is nested too deeply to be a candle answer (over "
            f"{MAX_JSON_DEPTH} levels)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        start = body[:80].decode("utf-8", errors="replace")
        raise MalformedResponseError(
            f"Failed to parse {display_name} JSON response ({exc}); body starts {start!r}; "
            "check network connection and API availability"
        ) from exc
    if json_depth(decoded) > MAX_JSON_DEPTH:
        raise MalformedResponseError(
            f"{display_name} answer is nested too deeply to be a candle answer (over "
            f"{MAX_JSON_DEPTH} levels)"
        )
    return decoded


def json_depth(value: object) -> int:
    """How deeply lists and objects nest in `value` (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: list[object] | None = None
        if isinstance(item, list):
            children = item
        elif isinstance(item, dict):
            children = list(item.values())
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def to_decimal(value: object, what: str, display_name: str) -> Decimal:
    """A price field as a finite `Decimal`, whether the venue sent a string or a JSON number."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise MalformedResponseError(f"{display_name} {what} is not a number: {preview(value)}")
    if isinstance(value, str) and len(value) > MAX_PRICE_DIGITS + 8:
        raise MalformedResponseError(f"{display_name} {what} is too long: {preview(value)}")
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise MalformedResponseError(
            f"{display_name} {what} is not a number: {preview(value)}"
        ) from exc
    if not number.is_finite():
        raise MalformedResponseError(
            f"{display_name} {what} is not a finite number: {preview(value)}"
        )
    if len(number.as_tuple().digits) > MAX_PRICE_DIGITS:
        raise MalformedResponseError(
            f"{display_name} {what} has more digits than any price: {preview(value)}"
        )
    return number


def to_int(value: object, what: str, display_name: str) -> int:
    """A time field as `int`; JSON booleans and fractions are refused rather than truncated."""
    if isinstance(value, bool):
        raise MalformedResponseError(f"{display_name} {what} is not an integer: {preview(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise MalformedResponseError(f"{display_name} {what} is not an integer: {preview(value)}")


@dataclass(frozen=True)
class RowLayout:
    """Where one venue's candle rows keep each field; column 0 is always the open time.

    `row` and `time` are the venue's own words for a row and for column 0, so an error names them
    as its documentation does; `length` is the exact number of columns its documentation gives
    (a row with another count means the layout changed or the answer is forged: reading its
    columns by position would be a guess); `time_unit` is what one second of open time counts
    (Binance: ms); `order` is +1 for rows oldest first, -1 for newest first; `max_rows` is the
    most rows the venue ever sends.
    """

    venue: str
    row: str
    time: str
    open: int
    high: int
    low: int
    close: int
    length: int
    time_unit: int = 1
    order: int = 1
    max_rows: int = 1000

    def find(
        self, rows: list[object], minute: int, exchange_time: float
    ) -> tuple[int, list[object]] | None:
        """The row that opened at `minute`, with its index; every row is checked first.

        Refused: too many rows, a row of the wrong shape or type, rows out of the venue's order
        or twice for one minute, and rows for minutes that have not begun on the venue's clock.
        """
        if len(rows) > self.max_rows:
            raise MalformedResponseError(
                f"{self.venue} sent {len(rows)} {self.row}s; it never sends more than "
                f"{self.max_rows}"
            )
        checked: list[list[object]] = []
        for row in rows:
            if not isinstance(row, list) or len(row) != self.length:
                raise MalformedResponseError(
                    f"{self.venue} {self.row} has the wrong shape (expected {self.length} "
                    f"fields): {preview(row)}"
                )
            checked.append(row)
        times = [to_int(row[0], self.time, self.venue) for row in checked]
        for earlier, later in itertools.pairwise(times):
            if (later - earlier) * self.order <= 0:
                word = "the same minute twice" if later == earlier else "rows out of order"
                raise MalformedResponseError(
                    f"{self.venue} answer has {word} ({self.time} {earlier} then {later}); "
                    f"its {self.row}s run {'oldest' if self.order > 0 else 'newest'} first"
                )
        newest_possible = (exchange_time + MINUTE) * self.time_unit
        if times and max(times) > newest_possible:
            raise MalformedResponseError(
                f"{self.venue} sent a {self.row} for a minute that has not begun yet "
                f"({self.time} {max(times)} at exchange time {exchange_time:.0f})"
            )
        wanted = minute * self.time_unit
        for index, (time, row) in enumerate(zip(times, checked, strict=True)):
            if time == wanted:
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
        base, quote = pair_of(symbol)
        return Candle(
            exchange=exchange,
            symbol=symbol,
            quote=quote,
            minute=minute,
            open=prices["open"],
            high=prices["high"],
            low=prices["low"],
            close=prices["close"],
            base=base,
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
        decoded = load_json(body, "venue")
    except MalformedResponseError:
        return body[:200].decode("utf-8", errors="replace").strip()
    if isinstance(decoded, dict):
        for key in ("msg", "message", "error"):
            if key in decoded:
                text = decoded[key]
                return text[:200] if isinstance(text, str) else preview(text)
    return preview(decoded)
