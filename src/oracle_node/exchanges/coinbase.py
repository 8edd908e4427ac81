"""Coinbase Exchange: `GET /products/BTC-USD/candles?granularity=60`.

Rows are `[time, low, high, open, close, volume]` (note the order), JSON numbers, newest first.
Coinbase answers HTTP 400 without a User-Agent, and its newest closed minutes often appear one or
more minutes late, so "not there yet" is normal and is polled for rather than treated as failure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from oracle_node.candle import Candle
from oracle_node.errors import CandleNotYetAvailableError, MalformedResponseError
from oracle_node.exchanges.base import (
    ExchangeRequest,
    RowLayout,
    error_text,
    load_json,
    preview,
    require_closed,
    to_int,
)

# `[time, low, high, open, close, volume]`: note the order.
_ROW: Final = RowLayout(
    "Coinbase", "row", "time", low=1, high=2, open=3, close=4, length=6, order=-1, max_rows=300
)
# A few minutes of context either side of the wanted one: small answers, the window still holds
# the minute when Coinbase interprets start/end loosely, and skipped minutes up to the node's
# backfill horizon (8 minutes) can be taken late from the same answer.
_WINDOW_BEFORE: Final = 10 * 60
_WINDOW_AFTER: Final = 2 * 60


def _iso(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CoinbaseAdapter:
    """Request and parser for Coinbase Exchange product candles."""

    name = "coinbase"
    display_name = "Coinbase"
    default_api_url = "https://api.exchange.coinbase.com"
    default_symbol = "BTC-USD"

    def request(self, symbol: str, minute: int) -> ExchangeRequest:
        """A short window around `minute` (ISO 8601 start/end, as ccxt sends them)."""
        return ExchangeRequest(
            path=f"/products/{symbol}/candles",
            params={
                "granularity": "60",
                "start": _iso(minute - _WINDOW_BEFORE),
                "end": _iso(minute + _WINDOW_AFTER),
            },
        )

    def parse(self, body: bytes, symbol: str, minute: int, exchange_time: float) -> Candle:
        """The candle opened at `minute` once Coinbase's clock has closed it.

        Absent means Coinbase has not published it yet. Present is not enough: the newest (first)
        row may be the minute still forming, with no flag, so closedness is decided by time.
        """
        rows = load_json(body, self.display_name)
        if isinstance(rows, dict) and "message" in rows:
            raise MalformedResponseError(f"Coinbase answered an error: {preview(rows['message'])}")
        if not isinstance(rows, list):
            raise MalformedResponseError(f"Coinbase candles answer is not a list: {preview(rows)}")
        found = _ROW.find(rows, minute, exchange_time)
        if found is not None:
            require_closed(self.display_name, minute, exchange_time)
            return _ROW.candle(found[1], self.name, symbol, minute)
        # Every row was checked by `find`: a list whose first field is an integer time.
        newest = max(
            (to_int(row[0], "time", self.display_name) for row in rows if isinstance(row, list)),
            default=None,
        )
        raise CandleNotYetAvailableError(
            f"Coinbase has not published minute {minute} yet (newest row: {newest})"
        )

    def error_message(self, status: int, body: bytes) -> str:
        """Coinbase's `{"message"}` text."""
        return f"Coinbase answered HTTP {status}: {error_text(body)}"
