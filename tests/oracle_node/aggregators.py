"""A stand-in aggregator for the node's tests: records what it is sent, refuses on demand.

The node meets the aggregator only over gRPC, so a servicer that stores each request (and can be
told to answer with a status code) is the honest fake for delivery order, buffering and what a
submission carries on the wire. It runs in-process on a free loopback port.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from common.proto import oracle_pb2, oracle_pb2_grpc


class RecordingServicer(oracle_pb2_grpc.OracleServiceServicer):
    """Stores what it is sent; `refuse` makes SubmitPrice abort with that status instead.

    `health_delay` makes HealthCheck answer only after that many seconds (a hung aggregator).
    """

    def __init__(self, *, simulated: bool = False) -> None:
        self.received: list[oracle_pb2.PriceRequest] = []
        self.refuse: grpc.StatusCode | None = None
        self.success = True
        self.simulated = simulated
        self.health_delay = 0.0
        self.health_asked = asyncio.Event()

    async def SubmitPrice(
        self, request: oracle_pb2.PriceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> oracle_pb2.PriceResponse:
        if self.refuse is not None:
            await context.abort(self.refuse, "refused by the test")
        self.received.append(request)
        return oracle_pb2.PriceResponse(success=self.success, message="Price data received")

    async def HealthCheck(
        self, request: oracle_pb2.HealthRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> oracle_pb2.HealthResponse:
        self.health_asked.set()
        if self.health_delay:
            await asyncio.sleep(self.health_delay)
        return oracle_pb2.HealthResponse(healthy=True, version="test", simulated=self.simulated)


class FakeAggregator:
    """The recording servicer on 127.0.0.1, restartable on the same port."""

    def __init__(self, *, simulated: bool = False) -> None:
        self.servicer = RecordingServicer(simulated=simulated)
        self.port = 0
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        oracle_pb2_grpc.add_OracleServiceServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None
