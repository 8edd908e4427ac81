"""The standard gRPC health service (grpc.health.v1.Health) answering from the price status.

Kubernetes gRPC probes, grpc-health-probe, Envoy and client-side health checking speak this
protocol, so the aggregator answers it for "" (the server) and `oracle.OracleService`: SERVING
only while the live price status is OK and the aggregator is not draining; NOT_SERVING while it
is DEGRADED, UNKNOWN (or not known yet) or draining. Health comes from data, not from "the
process is up". The original HealthCheck RPC is unchanged beside it.

The wire protocol and its generated code are grpcio-health-checking's; the servicer is ours.
The package's reference `grpc_health.v1.health.aio.HealthServicer` writes to a Watch stream while
holding the lock that `set()` needs, so one watcher that stops reading blocks every later status
change (and whoever awaits `set`). Here `update()` is synchronous and never waits: each watcher
holds only the newest status (conflation) and is woken; a stalled watcher stalls only itself.
Watch streams are bounded (`max_health_watchers`) and end with UNAVAILABLE on `close()`.

`update(status, draining)` is what the server calls: after each change of the live aggregate,
on a timer (a status can turn with time alone, as inputs go stale) and when draining starts.
Repeated calls with the same outcome cost one comparison.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.streaming_settings import StreamingSettings
from common.logsetup import get_logger
from common.proto import oracle_pb2

_log = get_logger(service="aggregator")

_Context = grpc.aio.ServicerContext[Any, Any]
_ServingStatus: TypeAlias = health_pb2.HealthCheckResponse.ServingStatus

ORACLE_SERVICE: Final = oracle_pb2.DESCRIPTOR.services_by_name["OracleService"].full_name
# "" is the whole server, by the protocol's convention.
HEALTH_SERVICES: Final = ("", ORACLE_SERVICE)

SERVING: Final = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN: Final = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def serving_status(status: oracle_pb2.PriceStatus, *, draining: bool) -> _ServingStatus:
    """The one rule: SERVING exactly when the price status is OK and the server is not draining."""
    if status == oracle_pb2.PRICE_STATUS_OK and not draining:
        return SERVING
    return NOT_SERVING


class _Watcher:
    __slots__ = ("changed", "service")

    def __init__(self, service: str) -> None:
        self.service = service
        self.changed = asyncio.Event()


class OracleHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health: Check and Watch over the statuses that `update` sets."""

    def __init__(self, settings: StreamingSettings) -> None:
        self._max_watchers = settings.max_health_watchers
        # Nothing is known before the first update: not serving.
        self._statuses: dict[str, _ServingStatus] = dict.fromkeys(HEALTH_SERVICES, NOT_SERVING)
        self._watchers: set[_Watcher] = set()
        self._closed = False

    def register(self, server: grpc.aio.Server) -> None:
        # The package's generated registration function carries no annotations.
        health_pb2_grpc.add_HealthServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def status_of(self, service: str) -> _ServingStatus | None:
        return self._statuses.get(service)

    def update(self, status: oracle_pb2.PriceStatus, draining: bool) -> bool:
        """Set every service's status from the price status; True when it changed."""
        serving = serving_status(status, draining=draining)
        if self._statuses[""] == serving:
            return False
        for service in HEALTH_SERVICES:
            self._statuses[service] = serving
        _log.info(
            "health_changed",
            status=health_pb2.HealthCheckResponse.ServingStatus.Name(serving),
            price_status=oracle_pb2.PriceStatus.Name(status),
            draining=draining,
        )
        for watcher in self._watchers:
            watcher.changed.set()
        return True

    def close(self) -> None:
        """Shutdown: every Watch stream sends what is current, then ends with UNAVAILABLE."""
        self._closed = True
        for watcher in self._watchers:
            watcher.changed.set()

    async def Check(  # noqa: N802 (the protocol's method name)
        self, request: health_pb2.HealthCheckRequest, context: _Context
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            # The protocol: NOT_FOUND for a service the server does not know.
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(  # noqa: N802 (the protocol's method name)
        self, request: health_pb2.HealthCheckRequest, context: _Context
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        if self._closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        if len(self._watchers) >= self._max_watchers:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"health watcher limit reached ({self._max_watchers}, [streaming] "
                "max_health_watchers); use Check",
            )
        watcher = _Watcher(request.service)
        self._watchers.add(watcher)
        try:
            sent: _ServingStatus | None = None
            while True:
                watcher.changed.clear()
                # The protocol: SERVICE_UNKNOWN for an unknown service, and keep watching.
                current = self._statuses.get(request.service, SERVICE_UNKNOWN)
                if current != sent:
                    sent = current
                    yield health_pb2.HealthCheckResponse(status=current)
                    continue  # it may have changed while the write waited
                if self._closed:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
                await watcher.changed.wait()
        finally:
            self._watchers.discard(watcher)
