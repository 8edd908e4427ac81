"""Why fetching a candle failed, split by what the node should do next.

The fetcher's retry policy reads one attribute, `retryable`: transient and rate-limit errors are
retried with backoff, a not-yet-published minute is polled until the minute's deadline, and
everything else (an invalid symbol, a geo-block, a simulated/real mismatch) fails at once,
because asking again cannot help. A hostile answer (too large, too slow, nested too deeply, a
price that is not a number) is a `MalformedResponseError`: another try may meet an honest
answer, and every try is bounded in bytes and in time, so at worst the minute is lost.
"""

from __future__ import annotations

from common.errors import OracleError


class FetchError(OracleError):
    """A candle could not be obtained; the message says why and, where known, what to do.

    `retryable`: whether asking the venue again within the minute's deadline can help.
    """

    retryable = False


class TransientFetchError(FetchError):
    """Network error, timeout, 5xx or an exchange-side outage: may succeed on a later attempt."""

    retryable = True


class MalformedResponseError(TransientFetchError):
    """The body was not the documented JSON (truncated, an HTML error page, a hostile answer)."""


class ResponseTooLargeError(MalformedResponseError):
    """The answer, on the wire or once decompressed, is larger than any honest venue sends."""


class RateLimitedError(TransientFetchError):
    """HTTP 429/418 or Kraken's rate-limit error; `retry_after` is the venue's own hint, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CandleNotYetAvailableError(FetchError):
    """The minute is not published yet (Coinbase lag) or is still forming on the venue's clock.

    Not a failure of the request: the node polls again until the minute's deadline, then skips.
    """

    retryable = True


class PermanentFetchError(FetchError):
    """A 4xx such as an invalid symbol, a geo-block or a simulated/real mismatch: never retried."""


class InvalidCandleError(OracleError):
    """A candle that parsed but must not be submitted (bounds, low > high, close outside range)."""
