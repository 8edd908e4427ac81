"""The streaming parts wired into the real aggregator: its book, its servicer, its server.

Everything goes over a real loopback server built by `build_server` (port 0, metrics on port 0):
SubscribePrices fed by real submissions and round closes, StreamPrices through SubmitPrice's own
path, grpc.health.v1 following the price status and the drain, reflection, the metrics endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aggregator.config import AggregatorConfig, AuthConfig, LimitsConfig
from aggregator.health import ORACLE_SERVICE
from aggregator.server import BoundServer, build_server
from aggregator.stream_submissions import status_number
from aggregator.streaming_settings import StreamingSettings
from common.metrics import MetricsSettings
from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc
from tests.metrics_helpers import scrape, value

from .conftest import T0, FakeClock

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_Subscription = grpc.aio.UnaryStreamCall[pb.SubscribeRequest, pb.PriceUpdate]


def config(window: int = 100, **streaming: float) -> AggregatorConfig:
    return AggregatorConfig(
        host="127.0.0.1",
        port=0,
        window=window,
        streaming=StreamingSettings(**streaming),  # type: ignore[arg-type]
        metrics=MetricsSettings(port=0),
        auth=AuthConfig(allow_unsigned=True),  # the submissions below are unsigned
        # The fake clock stands still, so no rate bucket refills: the floods need no limit.
        limits=LimitsConfig(rate=1e6, burst=1e6, global_rate=1e7, global_burst=1e7),
    )


async def started(clock: FakeClock, window: int = 100, **streaming: float) -> BoundServer:
    bound = build_server(config(window, **streaming), clock=clock)
    await bound.start()
    return bound


@pytest.fixture
async def running(clock: FakeClock) -> AsyncIterator[tuple[BoundServer, grpc.aio.Channel]]:
    bound = await started(clock, max_subscribers=3, max_subscribers_per_peer=3)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}")
    yield bound, channel
    await channel.close()
    await bound.stop(1)


def submit_request(
    source: str = "binance", price: float = 100_000.0, node_id: str | None = None, minute: int = T0
) -> pb.PriceRequest:
    return pb.PriceRequest(
        price=price, timestamp=minute, source=source, node_id=node_id or f"{source}-node"
    )


async def wait_until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def next_update(call: _Subscription) -> pb.PriceUpdate:
    async with asyncio.timeout(5):
        update = await call.read()
    assert isinstance(update, pb.PriceUpdate)
    return update


async def until_end(call: _Subscription) -> AsyncIterator[pb.PriceUpdate]:
    while True:
        yield await next_update(call)


# -- SubscribePrices --------------------------------------------------------------------------


async def test_subscribers_get_the_current_state_then_each_change_and_each_round(
    running: tuple[BoundServer, grpc.aio.Channel],
) -> None:
    bound, channel = running
    stub = oracle_pb2_grpc.OracleServiceStub(channel)
    await stub.SubmitPrice(submit_request("binance", 100_000.0))
    aggregate = stub.SubscribePrices(pb.SubscribeRequest())
    kraken = stub.SubscribePrices(pb.SubscribeRequest(source_filter="kraken"))

    first = await next_update(aggregate)
    assert first.price.aggregated_price == 100_000.0
    assert first.price.success
    assert not (await next_update(kraken)).price.success  # no kraken price yet

    await stub.SubmitPrice(submit_request("kraken", 100_400.0))
    changed = await next_update(aggregate)
    assert changed.price.aggregated_price == 100_200.0
    assert changed.price.data_points == 2
    assert changed.price.status == pb.PRICE_STATUS_OK
    assert changed.sequence == first.sequence + 1
    assert (await next_update(kraken)).price.aggregated_price == 100_400.0

    # A binance report does not change kraken's price: the kraken subscriber hears nothing.
    await stub.SubmitPrice(submit_request("binance", 100_200.0, node_id="binance-b"))
    # binance: median(100,000, 100,200) = 100,100; the aggregate: mean(100,100, 100,400).
    assert (await next_update(aggregate)).price.aggregated_price == 100_250.0

    # A round close (as the rounds work's round clock reports it) goes to the aggregate only.
    closed = pb.Round(minute=T0, closed=True, price=100_250.0, status=pb.PRICE_STATUS_OK)
    for listener in bound.servicer.round_listeners:
        await listener(closed)
    assert (await next_update(aggregate)).round == closed
    await stub.SubmitPrice(submit_request("kraken", 100_600.0, node_id="kraken-b"))
    assert (await next_update(kraken)).price.aggregated_price == 100_500.0  # the median
    aggregate.cancel()
    kraken.cancel()


async def test_past_the_subscriber_limit_the_answer_is_resource_exhausted(
    running: tuple[BoundServer, grpc.aio.Channel],
) -> None:
    _, channel = running
    stub = oracle_pb2_grpc.OracleServiceStub(channel)
    calls = [stub.SubscribePrices(pb.SubscribeRequest()) for _ in range(3)]
    for call in calls:
        await next_update(call)
    refused = stub.SubscribePrices(pb.SubscribeRequest())
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await refused.read()
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_subscribers" in (error.value.details() or "")
    bad = stub.SubscribePrices(pb.SubscribeRequest(source_filter="bitstamp"))
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await bad.read()
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for call in calls:
        call.cancel()


async def test_a_subscriber_that_never_reads_delays_no_one_and_is_dropped(
    clock: FakeClock,
) -> None:
    # Every change fanned out at once, and a short lag limit, so the test takes seconds.
    bound = await started(
        clock,
        window=1000,  # 600 nodes report one exchange and minute below
        min_update_interval_seconds=0,
        update_interval_per_subscriber_seconds=0,
        max_lag_seconds=0.5,
    )
    target = f"127.0.0.1:{bound.port}"
    try:
        async with (
            # No BDP growth: the stalled client's window stays ~64 KiB, as a client that stops
            # reading leaves it.
            grpc.aio.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)]) as stalled_ch,
            grpc.aio.insecure_channel(target) as channel,
        ):
            stalled = oracle_pb2_grpc.OracleServiceStub(stalled_ch).SubscribePrices(
                pb.SubscribeRequest()
            )
            await stalled.initial_metadata()
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            reader = stub.SubscribePrices(pb.SubscribeRequest())
            received: list[pb.PriceUpdate] = []

            async def read_all() -> None:
                async for update in reader:
                    received.append(update)  # noqa: PERF401 - read while the test looks

            reading = asyncio.ensure_future(read_all())
            hub = bound.servicer.streaming.hub
            await wait_until(lambda: hub.attached == 2 and received)

            # Each new node of one exchange and minute moves the median: one update each.
            latencies = []
            for index in range(600):
                started_at = time.perf_counter()
                response = await stub.SubmitPrice(
                    submit_request("kraken", 100_000.0 + index, node_id=f"kraken-{index}")
                )
                latencies.append(time.perf_counter() - started_at)
                assert response.success
            newest = bound.servicer.price_answer("").aggregated_price
            await wait_until(lambda: received[-1].price.aggregated_price == newest)
            sequences = [update.sequence for update in received]
            assert sequences == sorted(set(sequences))
            # Submissions were not held up by the stalled subscriber.
            assert sorted(latencies)[len(latencies) // 2] < 0.05

            await wait_until(lambda: hub.attached == 1)
            with pytest.raises(grpc.aio.AioRpcError) as dropped:
                async for _update in stalled:
                    pass
            assert dropped.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_lag_seconds" in (dropped.value.details() or "")
            samples = scrape(bound.metrics.url if bound.metrics else "")
            assert value(samples, "oracle_aggregator_subscribers_dropped_total", reason="behind")
            reader.cancel()
            reading.cancel()
    finally:
        await bound.stop(1)


# -- StreamPrices ------------------------------------------------------------------------------


async def test_a_refused_stream_message_changes_nothing_and_the_stream_goes_on(
    running: tuple[BoundServer, grpc.aio.Channel],
) -> None:
    bound, channel = running
    book = bound.servicer.book
    call = oracle_pb2_grpc.OracleServiceStub(channel).StreamPrices()

    async def exchange(request: pb.PriceRequest) -> pb.AggregatedPriceUpdate:
        await call.write(request)
        update = await call.read()
        assert isinstance(update, pb.AggregatedPriceUpdate)
        return update

    first = await exchange(submit_request("binance", 100_000.0))
    before = book.snapshot()
    refused = await exchange(submit_request("coinbase", -1.0))
    assert book.snapshot() == before
    future = await exchange(submit_request("coinbase", 101_000.0, minute=T0 + 3600))
    assert book.snapshot() == before
    second = await exchange(submit_request("kraken", 100_400.0))
    duplicate = await exchange(submit_request("kraken", 100_400.0))
    conflict = await exchange(submit_request("kraken", 100_500.0))
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK

    updates = [first, refused, future, second, duplicate, conflict]
    assert [update.sequence for update in updates] == [1, 2, 3, 4, 5, 6]
    invalid = status_number(grpc.StatusCode.INVALID_ARGUMENT)
    assert [update.code for update in updates] == [
        0,
        invalid,
        invalid,
        0,
        0,
        status_number(grpc.StatusCode.ALREADY_EXISTS),
    ]
    assert refused.message.startswith("price")
    assert duplicate.duplicate
    # The aggregate counts the two valid exchanges only.
    assert second.aggregated_price == 100_200.0
    assert second.data_points == 2
    assert second.status == pb.PRICE_STATUS_OK
    assert conflict.aggregated_price == 100_200.0
    assert second.active_nodes == ["binance-node", "kraken-node"]

    # The same answers as unary SubmitPrice, counted by transport.
    samples = scrape(bound.metrics.url if bound.metrics else "")
    accepted = "oracle_aggregator_submissions_total"
    assert value(samples, accepted, exchange="kraken", outcome="accepted", transport="stream") == 1
    assert value(samples, accepted, exchange="kraken", outcome="duplicate", transport="stream") == 1


# -- grpc.health.v1, reflection -----------------------------------------------------------------


async def test_health_follows_the_price_status_and_the_drain_and_watch_reports_it(
    clock: FakeClock,
) -> None:
    bound = await started(clock)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=ORACLE_SERVICE))
        assert (await watch.read()).status == NOT_SERVING  # no price yet
        check = await health.Check(health_pb2.HealthCheckRequest())
        assert check.status == NOT_SERVING

        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        await stub.SubmitPrice(submit_request("binance", 100_000.0))
        # One exchange alone is DEGRADED: still not serving.
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == NOT_SERVING
        await stub.SubmitPrice(submit_request("kraken", 100_100.0))
        assert (await watch.read()).status == SERVING
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING

        # With time alone the price goes stale: the ticker turns health NOT_SERVING.
        clock.now = T0 + 60 + 121
        async with asyncio.timeout(5):
            assert (await watch.read()).status == NOT_SERVING
        # A fresh minute brings it back.
        await stub.SubmitPrice(submit_request("binance", 100_100.0, minute=T0 + 60))
        await stub.SubmitPrice(submit_request("kraken", 100_200.0, minute=T0 + 60))
        async with asyncio.timeout(5):
            assert (await watch.read()).status == SERVING

        bound.servicer.streaming.begin_drain()
        assert (await watch.read()).status == NOT_SERVING
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == NOT_SERVING
        await bound.stop(1)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await watch.read()
        assert ended.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_reflection_lists_the_oracle_service_and_health(
    running: tuple[BoundServer, grpc.aio.Channel],
) -> None:
    _, channel = running
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    (listed,) = [response async for response in call]
    names = {service.name for service in listed.list_services_response.service}
    assert {"oracle.OracleService", "grpc.health.v1.Health"} <= names


# -- drain --------------------------------------------------------------------------------------


async def test_on_stop_every_stream_ends_with_a_clean_status_before_the_server_stops(
    clock: FakeClock,
) -> None:
    bound = await started(clock)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        subscription = stub.SubscribePrices(pb.SubscribeRequest())
        await next_update(subscription)
        stream = stub.StreamPrices()
        await stream.write(submit_request())
        assert (await stream.read()).code == 0
        await bound.stop(2)
        with pytest.raises(grpc.aio.AioRpcError) as subscription_end:
            # What was pending (the submission's update) comes first, then the end.
            _ = [update async for update in until_end(subscription)]
        with pytest.raises(grpc.aio.AioRpcError) as stream_end:
            await stream.read()
    assert subscription_end.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (subscription_end.value.details() or "")
    assert stream_end.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "SubmitPrice" in (stream_end.value.details() or "")


# -- metrics ------------------------------------------------------------------------------------


async def test_the_metrics_endpoint_moves_with_submissions(
    running: tuple[BoundServer, grpc.aio.Channel],
) -> None:
    bound, channel = running
    assert bound.metrics is not None
    url = bound.metrics.url
    assert url.startswith("http://127.0.0.1:")
    before = await asyncio.to_thread(scrape, url)
    assert value(before, "oracle_aggregator_status", status="unknown") == 1
    stub = oracle_pb2_grpc.OracleServiceStub(channel)
    await stub.SubmitPrice(submit_request("binance", 100_000.0))
    await stub.SubmitPrice(submit_request("binance", 100_000.0))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.SubmitPrice(submit_request("kraken", -5.0))
    await stub.GetAggregatedPrice(pb.GetPriceRequest())
    after = await asyncio.to_thread(scrape, url)
    submissions = "oracle_aggregator_submissions_total"
    binance = {"exchange": "binance", "transport": "unary"}
    assert value(after, submissions, outcome="accepted", **binance) == 1
    assert value(after, submissions, outcome="duplicate", **binance) == 1
    assert value(after, "oracle_aggregator_refusals_total", reason="price") == 1
    assert value(after, "oracle_aggregator_price_usd", simulated="false") == 100_000.0
    # One exchange alone: a price, DEGRADED (min_sources = 2).
    assert value(after, "oracle_aggregator_status", status="degraded") == 1
    assert value(after, "oracle_aggregator_active_nodes") == 1
    rpcs = "oracle_aggregator_rpc_duration_seconds_count"
    assert value(after, rpcs, method="SubmitPrice", code="INVALID_ARGUMENT") == 1
    assert value(after, rpcs, method="SubmitPrice", code="OK") == 2
