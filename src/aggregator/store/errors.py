"""Errors of the durable history, in the one hierarchy of `common.errors`.

A write that could not be committed is `HistoryUnavailableError` (UNAVAILABLE): nothing was
acknowledged, so the node keeps the observation in its buffer and redelivers it. Startup problems
with the database file are `common.errors.ConfigError`, always naming the path.
"""

from __future__ import annotations

import grpc

from common.errors import ConflictingObservationError, OracleError


class HistoryError(OracleError):
    """Base of the history's own errors."""

    status = grpc.StatusCode.INTERNAL


class HistoryUnavailableError(HistoryError):
    """The write was not committed (disk full, I/O error, writer stopped): retry later."""

    status = grpc.StatusCode.UNAVAILABLE


class HistoryClosedError(HistoryUnavailableError):
    """The store was closed (the aggregator is shutting down)."""


class HistoryRecordError(HistoryError, ValueError):
    """A record the caller should never have built (wrong mode, mismatched round bytes)."""


class DuplicateRoundError(HistoryError):
    """A round for this minute is already stored: a closed round is immutable."""

    def __init__(self, minute: int) -> None:
        super().__init__(
            f"round {minute} is already closed and stored; a closed round never changes"
        )
        self.minute = minute


class ObservationConflictError(ConflictingObservationError, HistoryError):
    """The history already holds a different price for this node, exchange, pair and minute."""

    status = grpc.StatusCode.ALREADY_EXISTS
