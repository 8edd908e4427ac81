"""The real gRPC server on a loopback port: what a node or a monitoring client sees."""

import math

import grpc
import pytest

from aggregator.config import AggregatorConfig, AuthConfig, LimitsConfig
from aggregator.server import build_server
from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc

from .conftest import T0, FakeClock

# These tests are about validation and answers, not authentication (tests/aggregator/test_auth.py).
UNSIGNED = AuthConfig(allow_unsigned=True)
# The fake clock stands still, so no rate bucket refills: floods below need the limits lifted.
OPEN_LIMITS = LimitsConfig(rate=1e6, burst=1e6, global_rate=1e7, global_burst=1e7)


@pytest.fixture
async def running(clock):
    bound = build_server(
        AggregatorConfig(host="127.0.0.1", port=0, auth=UNSIGNED, limits=OPEN_LIMITS), clock=clock
    )
    await bound.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}")
    yield bound, oracle_pb2_grpc.OracleServiceStub(channel)
    await channel.close()
    await bound.server.stop(None)


def submit_request(source="binance", price=100000.0, node_id=None, timestamp=T0, **extra):
    return pb.PriceRequest(
        price=price,
        timestamp=timestamp,
        source=source,
        node_id=f"{source[:8]}-node" if node_id is None else node_id,
        **extra,
    )


async def test_three_exchanges_then_their_mean(running):
    _, stub = running
    for source, price in (("binance", 106170.10), ("coinbase", 106160.42), ("kraken", 106150.74)):
        response = await stub.SubmitPrice(submit_request(source, price))
        assert response.success
        assert response.message == "Price data received"
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert answer.success
    assert answer.aggregated_price == pytest.approx(106160.42)
    assert answer.data_points == 3
    assert answer.aggregate_minute == T0
    assert answer.active_nodes == 3
    assert sorted(p.source for p in answer.recent_prices) == ["binance", "coinbase", "kraken"]
    assert "BTC/USD 106160.42 from 3 exchange(s)" in answer.message
    assert not answer.simulated


async def test_fourth_node_on_existing_exchange_keeps_three_exchanges(running):
    _, stub = running
    # The second kraken node reports before coinbase completes (and so closes) the round.
    for source, price, node in (
        ("binance", 100100.0, None),
        ("kraken", 100300.0, None),
        ("kraken", 100300.0, "kraken-node-b"),
        ("coinbase", 100200.0, None),
    ):
        await stub.SubmitPrice(submit_request(source, price, node_id=node))
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert answer.data_points == 3
    assert answer.aggregated_price == pytest.approx(100200.0)
    assert answer.active_nodes == 4
    kraken = next(p for p in answer.recent_prices if p.source == "kraken")
    assert kraken.node_count == 2
    assert kraken.node_id == "kraken-node,kraken-node-b"


async def test_health_probe_is_not_counted_as_a_node(running):
    _, stub = running
    await stub.SubmitPrice(submit_request("kraken", 100000.0))
    await stub.SubmitPrice(submit_request("coinbase", 100010.0))
    for _ in range(3):
        health = await stub.HealthCheck(pb.HealthRequest(node_id="test-client"))
    assert health.active_nodes == 2
    assert health.healthy
    assert health.status == pb.PRICE_STATUS_OK
    assert health.version == "0.1.0"
    assert "OK: 2 exchange(s) fresh (coinbase, kraken)" in health.message


async def test_one_exchange_is_served_degraded_and_not_healthy(running):
    _, stub = running
    await stub.SubmitPrice(submit_request("kraken", 100000.0))
    health = await stub.HealthCheck(pb.HealthRequest())
    assert not health.healthy
    assert health.status == pb.PRICE_STATUS_DEGRADED
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert answer.success
    assert answer.status == pb.PRICE_STATUS_DEGRADED
    assert answer.aggregated_price == 100000.0
    assert answer.aggregated_price_e8 == 100000 * 10**8
    assert not answer.final
    assert "DEGRADED" in answer.message


async def test_health_without_data_is_unhealthy_with_reason(running):
    _, stub = running
    health = await stub.HealthCheck(pb.HealthRequest(node_id="probe"))
    assert not health.healthy
    assert health.status == pb.PRICE_STATUS_UNKNOWN
    assert "no prices submitted yet" in health.message


async def test_no_fresh_data_says_why(running, clock):
    _, stub = running
    await stub.SubmitPrice(submit_request("kraken", 100000.0))
    clock.now = T0 + 60 + 121
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert not answer.success
    assert answer.status == pb.PRICE_STATUS_UNKNOWN
    assert answer.aggregated_price == 0
    assert "no fresh prices" in answer.message


async def test_source_filter_returns_that_exchange(running):
    _, stub = running
    await stub.SubmitPrice(submit_request("binance", 100000.0))
    await stub.SubmitPrice(submit_request("kraken", 100300.0))
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest(source_filter="kraken"))
    assert answer.success
    assert answer.aggregated_price == 100300.0
    assert [p.source for p in answer.recent_prices] == ["kraken"]
    missing = await stub.GetAggregatedPrice(pb.GetPriceRequest(source_filter="coinbase"))
    assert not missing.success
    assert missing.message == "no fresh price from coinbase"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetAggregatedPrice(pb.GetPriceRequest(source_filter="bitstamp"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_resubmission_is_idempotent_and_conflict_refused(running):
    _, stub = running
    await stub.SubmitPrice(submit_request("kraken", 100000.0))
    again = await stub.SubmitPrice(submit_request("kraken", 100000.0))
    assert again.success
    assert again.duplicate
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await stub.SubmitPrice(submit_request("kraken", 100001.0))
    assert conflict.value.code() is grpc.StatusCode.ALREADY_EXISTS


BAD_REQUESTS = {
    "price zero": (submit_request(price=0.0), "price"),
    "price negative": (submit_request(price=-5.0), "price"),
    "price nan": (submit_request(price=math.nan), "price"),
    "price inf": (submit_request(price=math.inf), "price"),
    "price above ceiling": (submit_request(price=1e30), "price"),
    "price below floor": (submit_request(price=0.01), "price"),
    "price denormal": (submit_request(price=5e-324), "price"),
    "rate out of bounds": (submit_request(price=100000.0, base="USDT"), "price"),
    "rate not in USD": (submit_request(price=1.0, base="USDT", quote="USDT"), "quote"),
    "base unknown": (submit_request(base="ETH"), "base"),
    "timestamp missing": (submit_request(timestamp=0), "timestamp"),
    "timestamp not minute": (submit_request(timestamp=T0 + 7), "timestamp"),
    "timestamp far future": (submit_request(timestamp=T0 + 240), "timestamp"),
    "timestamp too late": (submit_request(timestamp=T0 - 660), "timestamp"),
    "node_id empty": (submit_request(node_id=""), "node_id"),
    "node_id too long": (submit_request(node_id="n" * 65), "node_id"),
    "node_id control chars": (submit_request(node_id="evil\nlevel=error"), "node_id"),
    "source empty": (pb.PriceRequest(price=100000.0, timestamp=T0, node_id="x"), "source"),
    "source too long": (submit_request(source="b" * 65), "source"),
    "source unknown": (submit_request(source="bitstamp"), "source"),
    "source wrong case": (submit_request(source="Binance"), "source"),
    "quote unknown": (submit_request(quote="EUR"), "quote"),
    "symbol hostile": (submit_request(symbol="BTC USD;drop"), "symbol"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
async def test_bad_input_is_refused_and_changes_nothing(running, case):
    bound, stub = running
    await stub.SubmitPrice(submit_request("coinbase", 100000.0))
    await stub.SubmitPrice(submit_request("kraken", 100010.0, timestamp=T0 - 60))
    state_before = bound.servicer.book.snapshot()
    answer_before = (await stub.GetAggregatedPrice(pb.GetPriceRequest())).SerializeToString()
    health_before = await stub.HealthCheck(pb.HealthRequest())

    request, field = BAD_REQUESTS[case]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SubmitPrice(request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(f"{field}:")

    assert bound.servicer.book.snapshot() == state_before
    answer_after = (await stub.GetAggregatedPrice(pb.GetPriceRequest())).SerializeToString()
    assert answer_after == answer_before
    health_after = await stub.HealthCheck(pb.HealthRequest())
    assert health_after.active_nodes == health_before.active_nodes


async def test_simulated_price_refused_by_real_aggregator(running):
    bound, stub = running
    before = bound.servicer.book.snapshot()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SubmitPrice(submit_request(simulated=True))
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert bound.servicer.book.snapshot() == before


async def test_simulate_mode_labels_everything_and_refuses_real_prices():
    clock = FakeClock(T0 + 65)
    bound = build_server(
        AggregatorConfig(host="127.0.0.1", port=0, simulate=True, auth=UNSIGNED), clock=clock
    )
    await bound.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SubmitPrice(submit_request())
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            response = await stub.SubmitPrice(submit_request(simulated=True))
            assert response.message.startswith("SIMULATED")
            answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
            assert answer.simulated
            assert answer.message.startswith("SIMULATED BTC/USD")
            health = await stub.HealthCheck(pb.HealthRequest())
            assert health.simulated
            assert health.message.startswith("SIMULATED")
    finally:
        await bound.server.stop(None)


async def test_unimplemented_rpcs_say_so(running):
    _, stub = running
    with pytest.raises(grpc.aio.AioRpcError) as update:
        await stub.UpdateConfig(pb.ConfigRequest(node_id="n", fetch_interval=30))
    assert update.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "not implemented" in update.value.details()
    # StreamPrices is built (tests/aggregator/test_streaming_wired.py): a stream with no message
    # ends at once, cleanly.
    call = stub.StreamPrices()
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK


async def test_oversized_request_is_refused(running):
    bound, stub = running
    before = bound.servicer.book.snapshot()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SubmitPrice(submit_request(signature="s" * 100_000))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert bound.servicer.book.snapshot() == before


async def test_taken_port_is_a_clear_error(running):
    bound, _ = running
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="port is taken"):
        build_server(AggregatorConfig(host="127.0.0.1", port=bound.port))


async def test_answer_follows_every_change_within_the_same_second(running):
    _, stub = running
    await stub.SubmitPrice(submit_request("binance", 100000.0))
    first = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    await stub.SubmitPrice(submit_request("kraken", 100100.0))
    second = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert (first.aggregated_price, first.data_points) == (100000.0, 1)
    assert (second.aggregated_price, second.data_points) == (100050.0, 2)
    assert second.confidence == 50.0
    assert second.active_nodes == 2


async def test_report_dated_in_the_future_neither_takes_over_nor_hides_the_exchange(running, clock):
    _, stub = running
    for source, price in (("binance", 100000.0), ("coinbase", 100010.0), ("kraken", 100020.0)):
        await stub.SubmitPrice(submit_request(source, price))
    before = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    # T0 + 120 opens 55 s after now: inside the clock-skew allowance, so accepted and stored.
    forged = await stub.SubmitPrice(
        submit_request("kraken", 1000.0, node_id="forger", timestamp=T0 + 120)
    )
    assert forged.success
    assert "has not closed yet" in forged.message
    after = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert after.aggregated_price == before.aggregated_price == pytest.approx(100010.0)
    assert after.aggregate_minute == T0
    # The honest kraken node's next closed minute still counts.
    clock.now = T0 + 125
    await stub.SubmitPrice(submit_request("kraken", 100030.0, timestamp=T0 + 60))
    latest = await stub.GetAggregatedPrice(pb.GetPriceRequest(source_filter="kraken"))
    assert latest.aggregated_price == 100030.0


async def test_three_hundred_late_reports_from_new_ids_leave_the_aggregator_healthy(running, clock):
    _, stub = running
    now_minute = T0 + 300
    for minute in range(T0, now_minute + 1, 60):
        clock.now = minute + 62
        for source, price in (("binance", 100000.0), ("coinbase", 100010.0), ("kraken", 100020.0)):
            await stub.SubmitPrice(submit_request(source, price, timestamp=minute))
    before = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    for index in range(300):
        late = await stub.SubmitPrice(
            submit_request("kraken", 90000.0, node_id=f"junk-{index}", timestamp=now_minute - 300)
        )
        assert "stored as late" in late.message
    health = await stub.HealthCheck(pb.HealthRequest())
    assert health.healthy
    after = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert (after.aggregated_price, after.aggregate_minute, after.status) == (
        before.aggregated_price,
        before.aggregate_minute,
        pb.PRICE_STATUS_OK,
    )
    honest = await stub.SubmitPrice(submit_request("kraken", 100020.0, timestamp=now_minute))
    assert honest.duplicate
