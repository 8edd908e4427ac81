"""The committer's request errors, on the shared hierarchy (mapped to gRPC status in one place)."""

from __future__ import annotations

import grpc

from common.errors import OracleError


class BadRequestError(OracleError):
    """A malformed request: nothing was read or changed."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(OracleError):
    """The report, event or anchor asked for does not exist here."""

    status = grpc.StatusCode.NOT_FOUND


class NotReadyError(OracleError):
    """It exists but is not there yet (an event not attested, a report not anchored)."""

    status = grpc.StatusCode.FAILED_PRECONDITION
