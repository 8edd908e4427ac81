"""The explorer's errors, each with the HTTP status it is answered with (mapped once, in `app`).

The explorer is a client: most of its errors say what the aggregator (or committer) answered, or
that it could not be reached. A user-facing message never carries a traceback or internal detail
beyond the upstream's own status text.
"""

from __future__ import annotations


class ExplorerError(Exception):
    """Base of every error the explorer raises on purpose."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ExplorerError):
    """A malformed path or query parameter; nothing was asked of the aggregator."""

    http_status = 400
    code = "bad_request"


class NotFoundError(ExplorerError):
    """The aggregator has no such round (or the path names nothing)."""

    http_status = 404
    code = "not_found"


class UpstreamUnavailableError(ExplorerError):
    """The aggregator (or committer) cannot be reached or did not answer in time."""

    http_status = 503
    code = "upstream_unavailable"


class UnsupportedError(ExplorerError):
    """The upstream answered UNIMPLEMENTED: it is older than the RPC the explorer needs."""

    http_status = 501
    code = "not_supported_by_aggregator"


class UpstreamError(ExplorerError):
    """The upstream refused the call for another reason (its status text is passed on)."""

    http_status = 502
    code = "upstream_error"


class TooManyStreamsError(ExplorerError):
    """The bound on concurrent event streams is reached."""

    http_status = 503
    code = "too_many_streams"
