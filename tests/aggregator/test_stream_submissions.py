"""StreamPrices over a real loopback stream: one update per message, refusals that end nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from aggregator.stream_submissions import SubmissionStreams, status_number
from aggregator.streaming_settings import StreamingSettings
from common.proto import oracle_pb2, oracle_pb2_grpc
from tests.aggregator.streaming_fakes import Harness, price_request, start_harness

MINUTE = 1_794_999_960
_Call = grpc.aio.StreamStreamCall[oracle_pb2.PriceRequest, oracle_pb2.AggregatedPriceUpdate]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    started = await start_harness(StreamingSettings(max_streams=2))
    yield started
    started.streams.close()
    started.hub.close()
    await started.server.stop(None)


async def exchange(
    call: _Call, request: oracle_pb2.PriceRequest
) -> oracle_pb2.AggregatedPriceUpdate:
    await call.write(request)
    update = await call.read()
    assert isinstance(update, oracle_pb2.AggregatedPriceUpdate)
    return update


async def test_a_refused_message_in_the_middle_gets_its_own_refusal_and_the_rest_count(
    harness: Harness,
) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        call = oracle_pb2_grpc.OracleServiceStub(channel).StreamPrices()
        first = await exchange(call, price_request(100_000.0, source="kraken", node_id="k"))
        second = await exchange(call, price_request(101_000.0, source="coinbase", node_id="c"))

        before = harness.oracle.state()
        refused = await exchange(call, price_request(-5.0, source="binance", node_id="b"))
        assert harness.oracle.state() == before  # the refused message changed nothing

        third = await exchange(call, price_request(102_000.0, source="binance", node_id="b"))
        duplicate = await exchange(call, price_request(100_000.0, source="kraken", node_id="k"))
        conflict = await exchange(call, price_request(100_500.0, source="kraken", node_id="k"))
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK

    updates = [first, second, refused, third, duplicate, conflict]
    assert [update.sequence for update in updates] == [1, 2, 3, 4, 5, 6]
    assert [update.code for update in updates] == [
        0,
        0,
        status_number(grpc.StatusCode.INVALID_ARGUMENT),
        0,
        0,
        status_number(grpc.StatusCode.ALREADY_EXISTS),
    ]
    assert refused.message.startswith("price:")
    assert "already reported" in conflict.message
    assert duplicate.duplicate
    assert not third.duplicate
    # The aggregate counts the three valid exchanges only (mean of 100k, 101k, 102k).
    assert third.aggregated_price == 101_000.0
    assert third.data_points == 3
    assert harness.oracle.accepted == 3
    # Update fields come from the live view, refusals included.
    assert refused.aggregated_price == 100_500.0
    assert refused.simulated
    assert third.status == oracle_pb2.PRICE_STATUS_OK


async def test_updates_answer_requests_in_order_when_sent_all_at_once(harness: Harness) -> None:
    requests = [
        price_request(100_000.0 + index, node_id="k", minute=MINUTE - 60 * index)
        for index in range(50)
    ]
    requests[10].price = 0.0
    requests[30].source = "bitstamp"
    async with grpc.aio.insecure_channel(harness.target) as channel:
        call = oracle_pb2_grpc.OracleServiceStub(channel).StreamPrices(iter(requests))
        updates = [update async for update in call]
    assert [update.sequence for update in updates] == list(range(1, 51))
    refused = [update.sequence for update in updates if update.code != 0]
    assert refused == [11, 31]
    assert harness.oracle.accepted == 48


async def test_an_unexpected_error_in_one_message_is_answered_internal_and_the_stream_goes_on(
    harness: Harness,
) -> None:
    original = harness.oracle.submit
    calls = 0

    async def flaky(request: oracle_pb2.PriceRequest) -> oracle_pb2.PriceResponse:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("bug")
        return await original(request)

    streams = SubmissionStreams(StreamingSettings(), flaky)
    requests = [price_request(100_000.0, node_id=f"n{index}") for index in range(3)]
    updates = [update async for update in streams.answer(_aiter(requests))]
    assert [update.code for update in updates] == [0, status_number(grpc.StatusCode.INTERNAL), 0]
    assert "see the log" in updates[1].message
    # Without a live view the aggregate fields come from the PriceResponse.
    assert updates[2].aggregated_price == 100_000.0


async def test_a_drain_ends_an_idle_stream_at_once_with_unavailable(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        call = stub.StreamPrices()
        update = await exchange(call, price_request(100_000.0))
        assert update.code == 0
        harness.streams.close()  # the node is idle until its next minute
        async with asyncio.timeout(5):
            await harness.streams.wait_closed()
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await call.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "SubmitPrice" in (ended.value.details() or "")

        late = stub.StreamPrices()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await late.read()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_past_the_stream_limit_the_answer_is_resource_exhausted(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        open_calls = [stub.StreamPrices() for _ in range(2)]
        for index, call in enumerate(open_calls):
            await exchange(call, price_request(100_000.0, node_id=f"n{index}"))
        extra = stub.StreamPrices()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await extra.read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams" in (refused.value.details() or "")
        for call in open_calls:
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
        assert harness.streams.open_streams == 0


async def _aiter(
    requests: list[oracle_pb2.PriceRequest],
) -> AsyncIterator[oracle_pb2.PriceRequest]:
    for request in requests:
        yield request
