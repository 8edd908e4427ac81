"""What an exchange adapter is: a request description and a pure parser, nothing that does I/O.

Each venue's module builds the HTTP request for "the candle that opened at `minute`" and turns the
response body into a `Candle`, so every quirk (row order, string vs number prices, the forming
candle, errors inside HTTP 200) lives in one small, offline-testable place. The fetcher owns the
network, the retries and the status codes common to every venue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Protocol

from oracle_node.candle import Candle
from oracle_node.errors import MalformedResponseError


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

    def parse(self, body: bytes, symbol: str, minute: int) -> Candle:
        """The closed candle that opened at `minute`; raises a `FetchError` subclass otherwise."""
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
