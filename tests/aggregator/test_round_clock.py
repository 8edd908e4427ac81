"""Rounds through the servicer: listeners hear every close, the clock closes at the deadline."""

import asyncio
import time

import grpc
import pytest
from structlog.testing import capture_logs

from aggregator.config import AggregatorConfig, AuthConfig
from aggregator.server import build_server
from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc
from common.timeutil import minute_floor

from .conftest import T0


@pytest.fixture
async def running(clock):
    bound = build_server(
        AggregatorConfig(host="127.0.0.1", port=0, auth=AuthConfig(allow_unsigned=True)),
        clock=clock,
    )
    await bound.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}")
    yield bound, oracle_pb2_grpc.OracleServiceStub(channel)
    await channel.close()
    await bound.server.stop(None)


def request(source: str, price: float, minute: int = T0, **extra) -> pb.PriceRequest:
    return pb.PriceRequest(
        price=price, timestamp=minute, source=source, node_id=f"{source}-node", **extra
    )


async def test_listeners_hear_each_close_and_each_change_of_the_live_value(running, clock):
    bound, stub = running
    servicer = bound.servicer
    rounds: list[pb.Round] = []
    changes: list[float] = []

    async def on_round(round_: pb.Round) -> None:
        rounds.append(round_)

    servicer.round_listeners.append(on_round)
    servicer.aggregate_listeners.append(changes.append)
    with capture_logs() as logs:
        await stub.SubmitPrice(request("binance", 100000.0))
        await stub.SubmitPrice(request("coinbase", 100010.0))
        assert rounds == []
        await stub.SubmitPrice(request("kraken", 100020.0))
    assert [r.close_reason for r in rounds] == [pb.ROUND_CLOSE_REASON_ALL_REPORTED]
    assert len(changes) == 3
    closed_events = [entry for entry in logs if entry["event"] == "round_closed"]
    assert len(closed_events) == 1
    assert closed_events[0]["mode"] == "real"
    assert closed_events[0]["status"] == "OK"
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert answer.final
    assert answer.status == pb.PRICE_STATUS_OK
    assert answer.confidence_e8 == 10 * 10**8
    assert answer.aggregated_price_e8 == 100010 * 10**8
    assert answer.method == pb.AGGREGATION_METHOD_MEAN
    # A late report changes nothing a consumer sees and tells no listener anything.
    late = await stub.SubmitPrice(
        pb.PriceRequest(price=100900.0, timestamp=T0, source="kraken", node_id="kraken-late")
    )
    assert "stored as late" in late.message
    assert len(rounds) == 1
    assert len(changes) == 3
    after = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert after.active_nodes == answer.active_nodes + 1  # the late node is a node like any
    after.active_nodes = answer.active_nodes
    assert after == answer


async def test_the_deadline_closes_an_incomplete_round(running, clock):
    bound, stub = running
    rounds: list[pb.Round] = []

    async def on_round(round_: pb.Round) -> None:
        rounds.append(round_)

    bound.servicer.round_listeners.append(on_round)
    await stub.SubmitPrice(request("binance", 100000.0))
    await stub.SubmitPrice(request("kraken", 100050.0))
    clock.now = T0 + 60 + 44
    assert await bound.servicer.close_due() == []
    clock.now = T0 + 60 + 45
    (closed,) = await bound.servicer.close_due()
    assert closed.close_reason == pb.ROUND_CLOSE_REASON_DEADLINE
    assert rounds == [closed]
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert answer.final
    assert answer.aggregated_price == 100025.0


async def test_excluded_inputs_and_usdt_handling_are_in_the_answer(running):
    _, stub = running
    await stub.SubmitPrice(request("binance", 105000.0, quote="USDT"))
    await stub.SubmitPrice(request("coinbase", 100010.0))
    await stub.SubmitPrice(request("kraken", 100000.0))
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert answer.status == pb.PRICE_STATUS_OK
    assert answer.aggregated_price == 100005.0
    assert answer.usdt_at_par
    assert not answer.usdt_converted
    (excluded,) = answer.excluded
    assert (excluded.source, excluded.excluded_reason) == ("binance", "deviation")
    assert excluded.deviation == pytest.approx(0.0499, abs=1e-4)
    assert "excluded binance (deviation)" in answer.message
    assert "USDT taken at par" in answer.message


async def test_a_usdt_rate_converts_binance_in_the_answer(running):
    _, stub = running
    rate = pb.PriceRequest(
        price=0.999, timestamp=T0, source="kraken", node_id="kraken-node", base="USDT"
    )
    assert (await stub.SubmitPrice(rate)).success
    await stub.SubmitPrice(request("binance", 100100.0, quote="USDT"))
    await stub.SubmitPrice(request("kraken", 100000.0))
    answer = await stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert answer.usdt_converted
    assert answer.usdt_usd_rate == 0.999
    assert not answer.usdt_at_par
    binance = next(p for p in answer.recent_prices if p.source == "binance")
    assert binance.price == 100100.0
    assert binance.usd_price == pytest.approx(100000.0 - 0.1)


async def test_the_round_clock_closes_exactly_at_the_deadline():
    now = time.time()
    minute = minute_floor(now) - 60
    # A deadline about a second from now, whatever the second of the minute.
    deadline_seconds = max(1.0, now - (minute + 60) + 1.0)
    config = AggregatorConfig(
        host="127.0.0.1",
        port=0,
        round_deadline=deadline_seconds,
        auth=AuthConfig(allow_unsigned=True),
    )
    bound = build_server(config)
    closed_at: list[float] = []

    async def on_round(round_: pb.Round) -> None:
        closed_at.append(time.time())

    bound.servicer.round_listeners.append(on_round)
    await bound.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            await stub.SubmitPrice(request("binance", 100000.0, minute=minute))
            for _ in range(100):
                if closed_at:
                    break
                await asyncio.sleep(0.05)
    finally:
        await bound.server.stop(None)
    assert len(closed_at) == 1
    # Never early; late only by the event loop's wake-up (generous: 2 shared cores under load).
    assert 0 <= closed_at[0] - (minute + 60 + deadline_seconds) < 0.5
    assert bound.round_clock.running is False
