"""Kraken: `GET /0/public/OHLC?pair=XBTUSD&interval=1`.

The answer is `{"error": [], "result": {"XXBTZUSD": [[time, "open", "high", "low", "close", "vwap",
"volume", count], ...], "last": N}}`: the result key is Kraken's internal pair name, the last row is
ALWAYS the candle still forming (the original node submitted it: a defect), and errors such as
`EAPI:Rate limit exceeded` arrive with HTTP 200 inside `error`.
"""

from __future__ import annotations

from typing import Final

from oracle_node.candle import Candle
from oracle_node.errors import (
    CandleNotYetAvailableError,
    MalformedResponseError,
    PermanentFetchError,
    RateLimitedError,
    TransientFetchError,
)
from oracle_node.exchanges.base import (
    ExchangeRequest,
    RowLayout,
    error_text,
    load_json,
    preview,
    require_closed,
)

# `[time, "open", "high", "low", "close", "vwap", "volume", count]`
_ROW: Final = RowLayout(
    "Kraken", "OHLC row", "time", open=1, high=2, low=3, close=4, length=8, max_rows=720
)
_RATE_LIMIT_ERRORS: Final = ("EAPI:Rate limit exceeded", "EGeneral:Too many requests")
_TRANSIENT_PREFIXES: Final = ("EService:",)
# `since` is not documented as inclusive or exclusive, so ask from well before the minute; ten
# minutes also covers the skipped minutes within the node's backfill horizon (8 minutes).
_SINCE_MARGIN: Final = 10 * 60
# Kraken sends one or two error strings; more is not worth quoting.
_MAX_ERRORS: Final = 5


class KrakenAdapter:
    """Request and parser for Kraken public OHLC."""

    name = "kraken"
    display_name = "Kraken"
    default_api_url = "https://api.kraken.com"
    default_symbol = "XBTUSD"

    def request(self, symbol: str, minute: int) -> ExchangeRequest:
        """Rows since shortly before `minute`, so the answer is a handful of rows, not 720."""
        return ExchangeRequest(
            path="/0/public/OHLC",
            params={"pair": symbol, "interval": "1", "since": str(minute - _SINCE_MARGIN)},
        )

    def parse(self, body: bytes, symbol: str, minute: int, exchange_time: float) -> Candle:
        """The committed candle opened at `minute`; never the forming last row."""
        answer = load_json(body, self.display_name)
        if not isinstance(answer, dict):
            raise MalformedResponseError(f"Kraken OHLC answer is not an object: {preview(answer)}")
        raw_errors = answer.get("error") or []
        if not isinstance(raw_errors, list):
            raise MalformedResponseError(f"Kraken 'error' is not a list: {preview(raw_errors)}")
        errors = [
            error[:200] if isinstance(error, str) else preview(error)
            for error in raw_errors[:_MAX_ERRORS]
        ]
        if errors:
            _raise_kraken_error(errors)
        result = answer.get("result")
        if not isinstance(result, dict):
            raise MalformedResponseError("Failed to parse Kraken JSON response: no 'result' object")
        pair_rows = [value for key, value in result.items() if key != "last"]
        if len(pair_rows) != 1 or not isinstance(pair_rows[0], list):
            raise MalformedResponseError(
                f"Failed to parse Kraken JSON response: expected one pair in result, got "
                f"{preview(sorted(result))}"
            )
        rows = pair_rows[0]
        found = _ROW.find(rows, minute, exchange_time)
        if found is None:
            raise CandleNotYetAvailableError(
                f"Kraken has no committed candle for minute {minute} yet"
            )
        index, row = found
        require_closed(self.display_name, minute, exchange_time)
        if index == len(rows) - 1:
            raise CandleNotYetAvailableError(
                f"Kraken minute {minute} is still the forming (last) row"
            )
        return _ROW.candle(row, self.name, symbol, minute)

    def error_message(self, status: int, body: bytes) -> str:
        """A non-200 from Kraken means the request never reached it (Cloudflare, gateway)."""
        return f"Kraken answered HTTP {status}: {error_text(body)}"


def _raise_kraken_error(errors: list[str]) -> None:
    joined = ", ".join(errors)
    if any(error.startswith(_RATE_LIMIT_ERRORS) for error in errors):
        raise RateLimitedError(f"Kraken rate limit: {joined}")
    if any(error.startswith(_TRANSIENT_PREFIXES) for error in errors):
        raise TransientFetchError(f"Kraken service error: {joined}")
    raise PermanentFetchError(f"Kraken refused the request: {joined}")
