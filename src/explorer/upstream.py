"""The explorer's gRPC client of the aggregator: one channel, deadlines on every call, and the
gRPC status codes turned into the explorer's errors here, once.

The explorer meets the aggregator only over proto/oracle.proto; it never reads its files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

import grpc

from common.grpc_client import aio_channel
from common.proto import oracle_pb2, oracle_pb2_grpc
from explorer.errors import (
    BadRequestError,
    ExplorerError,
    NotFoundError,
    UnsupportedError,
    UpstreamError,
    UpstreamUnavailableError,
)

PROBE_ID = "probe:oracle-explorer"
_UNAVAILABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)


def translate(error: grpc.aio.AioRpcError, target: str, rpc: str) -> ExplorerError:
    """The explorer error for a failed call (the only place status codes are interpreted)."""
    code = error.code()
    details = error.details() or code.name
    if code in _UNAVAILABLE:
        return UpstreamUnavailableError(
            f"cannot reach the aggregator at {target} ({code.name.lower()}: {details})"
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return UnsupportedError(f"the aggregator at {target} does not implement {rpc} yet")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequestError(details)
    return UpstreamError(f"{rpc} at {target} answered {code.name}: {details}")


class AggregatorClient:
    """Typed, deadline-bound calls to the aggregator; raises only `ExplorerError`s."""

    def __init__(self, target: str, *, timeout: float) -> None:
        self.target = target
        self._timeout = timeout
        self._channel = aio_channel(target)
        self._stub = oracle_pb2_grpc.OracleServiceStub(self._channel)

    def _fail(self, error: grpc.aio.AioRpcError, rpc: str) -> NoReturn:
        raise translate(error, self.target, rpc) from error

    async def health(self) -> oracle_pb2.HealthResponse:
        try:
            return await self._stub.HealthCheck(
                oracle_pb2.HealthRequest(node_id=PROBE_ID), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            self._fail(error, "HealthCheck")

    async def price(self) -> oracle_pb2.GetPriceResponse:
        try:
            return await self._stub.GetAggregatedPrice(
                oracle_pb2.GetPriceRequest(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            self._fail(error, "GetAggregatedPrice")

    async def round(self, minute: int) -> oracle_pb2.Round:
        try:
            return await self._stub.GetRound(
                oracle_pb2.GetRoundRequest(minute=minute), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            self._fail(error, "GetRound")

    async def history(
        self, *, from_minute: int, to_minute: int, limit: int, page_token: str
    ) -> oracle_pb2.GetPriceHistoryResponse:
        request = oracle_pb2.GetPriceHistoryRequest(
            from_minute=from_minute, to_minute=to_minute, limit=limit, page_token=page_token
        )
        try:
            return await self._stub.GetPriceHistory(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            self._fail(error, "GetPriceHistory")

    async def nodes(self, limit: int) -> oracle_pb2.ListNodesResponse:
        try:
            return await self._stub.ListNodes(
                oracle_pb2.ListNodesRequest(limit=limit), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            self._fail(error, "ListNodes")

    async def subscribe(self) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        """The SubscribePrices stream (no deadline: it lives as long as the aggregator)."""
        call = self._stub.SubscribePrices(oracle_pb2.SubscribeRequest())
        try:
            async for update in call:
                yield update
        except grpc.aio.AioRpcError as error:
            self._fail(error, "SubscribePrices")
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close(grace=None)
