"""The one domain error hierarchy; each error knows its gRPC status, mapped once in the servicer.

Every error that reaches a client says which field or rule it broke, so an operator can fix the
caller without reading the aggregator's source.
"""

from __future__ import annotations

import grpc


class OracleError(Exception):
    """Base of every error the oracle raises on purpose."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidObservationError(OracleError):
    """A request is malformed or out of bounds; nothing was changed."""

    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConflictingObservationError(OracleError):
    """A node reported a different price for a minute it had already reported (equivocation)."""

    status = grpc.StatusCode.ALREADY_EXISTS


class PreconditionError(OracleError):
    """The request is well formed but not acceptable in the current state (e.g. simulated data)."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class CapacityError(OracleError):
    """A bounded table is full; the caller may retry once older entries expire."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class ConfigError(OracleError):
    """A configuration file, option or environment variable is missing or invalid."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class UnauthenticatedError(OracleError):
    """The caller could not be identified: unknown node, a key not its own, or a bad signature.

    `reason` is a short stable label (e.g. "unknown_node", "bad_signature") for refusal counters
    and rate-limited logs; the message says what to fix.
    """

    status = grpc.StatusCode.UNAUTHENTICATED

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDeniedError(OracleError):
    """The caller is authenticated but not allowed to do this (e.g. report for that exchange)."""

    status = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnavailableError(OracleError):
    """The service cannot take this call now (shutting down, draining); retry elsewhere or later."""

    status = grpc.StatusCode.UNAVAILABLE
