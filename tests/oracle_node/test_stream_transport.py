"""The node's `transport = "stream"` against the real aggregator on loopback, and its fallback.

The submitter keeps one StreamPrices stream and reads the update answering each observation;
refusals come back per message and keep the stream; any break (the aggregator drains, or does not
offer StreamPrices at all) delivers that observation with unary SubmitPrice instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from aggregator.config import AggregatorConfig, AuthConfig
from aggregator.server import BoundServer, build_server
from common.metrics import MetricsSettings
from common.proto import oracle_pb2
from oracle_node.candle import Candle
from oracle_node.metrics import NodeMetrics
from oracle_node.submitter import Observation, Submitter
from tests.oracle_node.aggregators import FakeAggregator, RecordingServicer

T0 = 1_800_000_000 - 1_800_000_000 % 60


def observation(minute: int = T0, close: str = "100000.5", exchange: str = "kraken") -> Observation:
    price = Decimal(close)
    candle = Candle(exchange, "XBTUSD", "USD", minute, price, price, price, price)
    return Observation(candle=candle, collected_at=minute + 60.2)


async def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
async def aggregator() -> AsyncIterator[BoundServer]:
    config = AggregatorConfig(
        host="127.0.0.1",
        port=0,
        metrics=MetricsSettings(enabled=False),
        auth=AuthConfig(allow_unsigned=True),
    )
    bound = build_server(config, clock=lambda: T0 + 65.0)
    await bound.start()
    yield bound
    await bound.stop(1)


def stream_submitter(port: int, metrics: NodeMetrics | None = None) -> Submitter:
    return Submitter(
        f"127.0.0.1:{port}",
        "kraken-node",
        call_timeout=2.0,
        retries=0,
        sleep=no_sleep,
        transport="stream",
        metrics=metrics,
        clock=lambda: T0 + 66.0,
    )


def submissions(bound: BoundServer, transport: str, outcome: str = "accepted") -> float:
    counter = bound.servicer.streaming.metrics.submissions
    return counter.labels("kraken", outcome, transport)._value.get()


async def test_observations_go_over_one_stream_refusals_included(
    aggregator: BoundServer,
) -> None:
    metrics = NodeMetrics(exchange="kraken", node_id="kraken-node", simulated=False)
    submitter = stream_submitter(aggregator.port, metrics)
    try:
        submitter.enqueue(observation(T0 - 60, "100000.5"))
        submitter.enqueue(observation(T0 - 60, "100000.5"))  # a duplicate: stored once
        submitter.enqueue(observation(T0 - 60, "99999"))  # a conflicting price: refused
        submitter.enqueue(observation(T0, "100100"))
        assert await submitter.flush() == 4
        assert submitter.streaming
        assert submitter.pending == 0
    finally:
        await submitter.close()
    assert submissions(aggregator, "stream") == 2
    assert submissions(aggregator, "stream", "duplicate") == 1
    assert submissions(aggregator, "unary") == 0
    assert aggregator.servicer.price_answer("kraken").aggregated_price == 100100.0
    state = metrics.state
    assert state.last_accepted is not None
    assert state.last_accepted.minute == T0
    assert state.last_error is not None  # the refused one
    assert "rejected" in state.last_error.detail


async def test_a_draining_aggregator_ends_the_stream_and_delivery_goes_unary(
    aggregator: BoundServer,
) -> None:
    submitter = stream_submitter(aggregator.port)
    try:
        submitter.enqueue(observation(T0 - 60))
        assert await submitter.flush() == 1
        assert submitter.streaming
        # The aggregator starts draining its streams (as on SIGTERM) but still answers unary.
        aggregator.servicer.streaming.streams.close()
        await asyncio.sleep(0.2)  # the idle stream ends at once
        submitter.enqueue(observation(T0))
        with capture_logs() as logs:
            assert await submitter.flush() == 1
        assert not submitter.streaming
    finally:
        await submitter.close()
    assert submissions(aggregator, "stream") == 1
    assert submissions(aggregator, "unary") == 1
    broken = [entry for entry in logs if entry["event"] == "stream_broken_falling_back_to_unary"]
    assert broken
    assert "UNAVAILABLE" in broken[0]["detail"]


class _UnaryOnly(RecordingServicer):
    """An aggregator of before StreamPrices (this repository's main until issue 12)."""

    async def StreamPrices(
        self, request_iterator: object, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "StreamPrices is not implemented yet")
        yield oracle_pb2.AggregatedPriceUpdate()  # pragma: no cover (abort raised)


async def test_an_aggregator_without_stream_prices_gets_every_observation_unary() -> None:
    fake = FakeAggregator()
    fake.servicer = _UnaryOnly()
    await fake.start()
    submitter = stream_submitter(fake.port)
    try:
        for minute in (T0 - 120, T0 - 60, T0):
            submitter.enqueue(observation(minute))
        with capture_logs() as logs:
            assert await submitter.flush() == 3
    finally:
        await submitter.close()
        await fake.stop()
    assert [request.timestamp for request in fake.servicer.received] == [T0 - 120, T0 - 60, T0]
    # One failed attempt, then unary for the retry period: not one attempt per observation.
    broken = [entry for entry in logs if entry["event"] == "stream_broken_falling_back_to_unary"]
    assert len(broken) == 1
    assert "UNIMPLEMENTED" in broken[0]["detail"]
