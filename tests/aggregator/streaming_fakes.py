"""A stand-in for the aggregator's submit path, and a servicer that drives the streaming parts.

`FakeOracle.submit` has SubmitPrice's shape: it refuses with the domain errors (a price that is
not positive, an unknown exchange, a conflicting resubmission), is idempotent per (node, minute),
keeps the newest price per exchange and their mean, and publishes each change to the hub: what
the real servicer will do once the streaming parts are wired in. `StreamingServicer` serves it
over a real loopback grpc.aio server: SubmitPrice, StreamPrices, SubscribePrices,
GetAggregatedPrice, plus grpc.health.v1 and reflection.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc

from aggregator.health import OracleHealth
from aggregator.reflection import enable_reflection
from aggregator.stream_submissions import SubmissionStreams
from aggregator.streaming_settings import StreamingSettings
from aggregator.subscriptions import SubscriptionHub
from common.errors import ConflictingObservationError, InvalidObservationError
from common.exchanges import EXCHANGES
from common.proto import oracle_pb2, oracle_pb2_grpc

_Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class FakeOracle:
    """Newest price per exchange, idempotent reports, refusals that change nothing."""

    now: float = 1_795_000_000.0
    reports: dict[tuple[str, int], Decimal] = field(default_factory=dict)
    latest: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    hub: SubscriptionHub | None = None
    accepted: int = 0

    def state(self) -> tuple[object, ...]:
        """Everything a submission may change, for before/after comparisons."""
        return (dict(self.reports), dict(self.latest), self.accepted)

    async def submit(self, request: oracle_pb2.PriceRequest) -> oracle_pb2.PriceResponse:
        if not math.isfinite(request.price) or request.price <= 0:
            raise InvalidObservationError("price", f"must be finite and > 0, got {request.price}")
        if request.source not in EXCHANGES:
            raise InvalidObservationError("source", f"unknown exchange {request.source!r}")
        if not request.node_id:
            raise InvalidObservationError("node_id", "must not be empty")
        price = Decimal(repr(request.price))
        key = (request.node_id, request.timestamp)
        known = self.reports.get(key)
        duplicate = known is not None
        if known is not None and known != price:
            raise ConflictingObservationError(
                f"node {request.node_id} already reported {known} for {request.timestamp}"
            )
        if not duplicate:
            self.reports[key] = price
            self.latest[request.source] = (request.timestamp, price)
            self.accepted += 1
            if self.hub is not None:
                self.hub.publish_price(
                    aggregate=self.answer(""),
                    exchanges={request.source: self.answer(request.source)},
                )
        response = oracle_pb2.PriceResponse(
            success=True,
            message="Duplicate submission ignored" if duplicate else "Price data received",
            timestamp=int(self.now),
            duplicate=duplicate,
        )
        mean = self.mean()
        if mean is not None:
            response.aggregated_price = float(mean)
            response.aggregate_minute = max(minute for minute, _ in self.latest.values())
            response.data_points = len(self.latest)
        return response

    def mean(self) -> Decimal | None:
        if not self.latest:
            return None
        return sum((price for _, price in self.latest.values()), Decimal(0)) / len(self.latest)

    def answer(self, source: str) -> oracle_pb2.GetPriceResponse:
        if source:
            if source not in self.latest:
                return oracle_pb2.GetPriceResponse(message=f"no fresh price from {source}")
            minute, price = self.latest[source]
            return oracle_pb2.GetPriceResponse(
                success=True, aggregated_price=float(price), aggregate_minute=minute, data_points=1
            )
        mean = self.mean()
        if mean is None:
            return oracle_pb2.GetPriceResponse(message="no aggregate yet")
        return oracle_pb2.GetPriceResponse(
            success=True,
            aggregated_price=float(mean),
            data_points=len(self.latest),
            aggregate_minute=max(minute for minute, _ in self.latest.values()),
            status=oracle_pb2.PRICE_STATUS_OK if len(self.latest) >= 2 else 2,
        )

    def live(self) -> oracle_pb2.AggregatedPriceUpdate:
        update = oracle_pb2.AggregatedPriceUpdate(simulated=True)
        answer = self.answer("")
        if answer.success:
            update.aggregated_price = answer.aggregated_price
            update.aggregate_minute = answer.aggregate_minute
            update.data_points = answer.data_points
            update.status = answer.status
        return update


class StreamingServicer(oracle_pb2_grpc.OracleServiceServicer):
    """The streaming parts wired over a FakeOracle, as the real servicer will wire them."""

    def __init__(
        self, oracle: FakeOracle, hub: SubscriptionHub, streams: SubmissionStreams
    ) -> None:
        self.oracle = oracle
        self.hub = hub
        self.streams = streams

    async def SubmitPrice(
        self, request: oracle_pb2.PriceRequest, context: _Context
    ) -> oracle_pb2.PriceResponse:
        try:
            return await self.oracle.submit(request)
        except (InvalidObservationError, ConflictingObservationError) as error:
            await context.abort(error.status, str(error))
            raise

    async def GetAggregatedPrice(
        self, request: oracle_pb2.GetPriceRequest, context: _Context
    ) -> oracle_pb2.GetPriceResponse:
        return self.oracle.answer(request.source_filter)

    async def StreamPrices(
        self, request_iterator: AsyncIterator[oracle_pb2.PriceRequest], context: _Context
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        async for update in self.streams.stream(request_iterator, context):
            yield update

    async def SubscribePrices(
        self, request: oracle_pb2.SubscribeRequest, context: _Context
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        async for update in self.hub.stream(request, context):
            yield update


@dataclass
class Harness:
    server: grpc.aio.Server
    port: int
    oracle: FakeOracle
    hub: SubscriptionHub
    streams: SubmissionStreams
    health: OracleHealth

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_harness(settings: StreamingSettings, **hub_options: Any) -> Harness:
    """A started loopback server on port 0 with every streaming part registered."""
    oracle = FakeOracle()
    hub = SubscriptionHub(settings, snapshot=oracle.answer, exchanges=EXCHANGES, **hub_options)
    oracle.hub = hub
    streams = SubmissionStreams(settings, oracle.submit, live=oracle.live)
    health = OracleHealth(settings)
    server = grpc.aio.server()
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(
        StreamingServicer(oracle, hub, streams), server
    )
    health.register(server)
    enable_reflection(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    hub.start()
    return Harness(server, port, oracle, hub, streams, health)


def price_request(
    price: float, *, source: str = "kraken", node_id: str = "kraken-node", minute: int = 0
) -> oracle_pb2.PriceRequest:
    return oracle_pb2.PriceRequest(
        price=price, timestamp=minute or 1_794_999_960, source=source, node_id=node_id
    )
