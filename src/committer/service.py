"""The CommitterService servicer: read-only, every domain error mapped to a gRPC status once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

import grpc

from committer import views
from committer.app import Committer, Subscriber
from common.errors import CapacityError, OracleError
from common.logsetup import get_logger
from common.proto import committer_pb2, committer_pb2_grpc

_log = get_logger(service="committer")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Context = grpc.aio.ServicerContext[Any, Any]
_Handler = Callable[["CommitterServicer", _Req, _Context], Coroutine[Any, Any, _Resp]]
REPLAY_PAGE = 500


def _maps_errors(method: _Handler[_Req, _Resp]) -> _Handler[_Req, _Resp]:
    @wraps(method)
    async def wrapper(self: CommitterServicer, request: _Req, context: _Context) -> _Resp:
        try:
            return await method(self, request, context)
        except OracleError as error:
            await context.abort(error.status, str(error))
            raise  # unreachable: abort raises
        except Exception:
            _log.exception("request_failed", rpc=method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed; see the log")
            raise

    return wrapper


class CommitterServicer(committer_pb2_grpc.CommitterServiceServicer):
    def __init__(self, committer: Committer) -> None:
        self.committer = committer

    @_maps_errors
    async def GetOracleInfo(
        self, request: committer_pb2.GetOracleInfoRequest, context: _Context
    ) -> committer_pb2.OracleInfo:
        return views.oracle_info(self.committer)

    @_maps_errors
    async def GetRoundReport(
        self, request: committer_pb2.GetRoundReportRequest, context: _Context
    ) -> committer_pb2.RoundReport:
        return views.get_report(self.committer, request.minute)

    async def StreamRoundReports(
        self, request: committer_pb2.StreamRoundReportsRequest, context: _Context
    ) -> AsyncIterator[committer_pb2.RoundReport]:
        committer = self.committer
        if len(committer.subscribers) >= committer.config.committer.max_subscribers:
            error = CapacityError("too many report subscribers; try again later")
            await context.abort(error.status, str(error))
        subscriber = Subscriber(asyncio.Queue(maxsize=committer.config.committer.stream_queue))
        committer.subscribers.add(subscriber)  # before the replay: nothing falls in between
        try:
            replayed: set[int] = set()
            if request.from_minute:
                cursor = request.from_minute
                while True:
                    rows = committer.store.reports_from(cursor, REPLAY_PAGE)
                    for row in rows:
                        yield committer.report_message(row)
                        replayed.add(row.minute)
                    if len(rows) < REPLAY_PAGE:
                        break
                    cursor = rows[-1].minute + 1
            while True:
                message = await subscriber.queue.get()
                if message is None:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "subscriber fell behind; reconnect with from_minute = last minute + 60",
                    )
                    return
                # A report signed during the replay may have been replayed already; one that
                # fills an older gap (a late round) was not, and is sent.
                if message.minute not in replayed:
                    yield message
        finally:
            committer.subscribers.discard(subscriber)

    @_maps_errors
    async def ListAnnouncements(
        self, request: committer_pb2.ListAnnouncementsRequest, context: _Context
    ) -> committer_pb2.ListAnnouncementsResponse:
        return views.list_announcements(
            self.committer, request.from_maturity, request.to_maturity, request.limit
        )

    @_maps_errors
    async def GetAnnouncement(
        self, request: committer_pb2.GetEventRequest, context: _Context
    ) -> committer_pb2.Announcement:
        return views.get_announcement(self.committer, request.event_id)

    @_maps_errors
    async def GetAttestation(
        self, request: committer_pb2.GetEventRequest, context: _Context
    ) -> committer_pb2.Attestation:
        return views.get_attestation(self.committer, request.event_id)

    @_maps_errors
    async def ListAnchors(
        self, request: committer_pb2.ListAnchorsRequest, context: _Context
    ) -> committer_pb2.ListAnchorsResponse:
        return views.list_anchors(self.committer, request.limit)

    @_maps_errors
    async def GetInclusionProof(
        self, request: committer_pb2.GetRoundReportRequest, context: _Context
    ) -> committer_pb2.InclusionProof:
        return views.inclusion_proof(self.committer, request.minute)
