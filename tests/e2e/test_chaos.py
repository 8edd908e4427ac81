"""Chaos: three real nodes against the simulator's faults and the real aggregator, on fake time.

One venue frozen (Binance), one jumping 5 % (Kraken), one rate-limited every minute (Coinbase,
whose node retries and gets through). What a consumer must see: the published price stays
within 0.1 % of the healthy venue's price, and the status says the truth: DEGRADED, with the
frozen and the jumping venue named, once the frozen one has been flat for `max_flat_minutes`.
Fake time and the simulator's in-process transport keep it to a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from decimal import Decimal

import grpc
import httpx
import pytest

from aggregator.config import AggregatorConfig, AuthConfig
from aggregator.server import build_server
from common.proto import oracle_pb2, oracle_pb2_grpc
from oracle_node.config import Overrides, load_config
from oracle_node.fetcher import CandleFetcher
from oracle_node.node import OracleNode
from oracle_node.scheduler import MinuteScheduler, Tick
from oracle_node.submitter import Submitter
from tests.oracle_node.fakes import SIM_URL, FakeClock, Simulator

pytestmark = pytest.mark.e2e

T0 = 1_800_000_000 - 1_800_000_000 % 60
VENUES = ("binance", "coinbase", "kraken")
MINUTES = 9


@pytest.fixture
async def system() -> AsyncIterator[tuple[FakeClock, Simulator, list[OracleNode], object]]:
    clock = FakeClock(T0 + 30)
    exchange = Simulator(clock)
    bound = build_server(
        AggregatorConfig(
            host="127.0.0.1", port=0, simulate=True, auth=AuthConfig(allow_unsigned=True)
        ),
        clock=clock,
    )
    await bound.server.start()
    async with AsyncExitStack() as stack:
        nodes = []
        for index, venue in enumerate(VENUES, start=1):
            config = load_config(
                None,
                Overrides(
                    exchange=venue,
                    node_id=f"oracle-node-{index}",
                    aggregator_url=f"http://127.0.0.1:{bound.port}",
                    api_url=SIM_URL,
                    simulate=True,
                ),
            )
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=exchange.transport)
            )
            fetcher = CandleFetcher(
                client, config.exchange, simulate=True, clock=clock, sleep=clock.sleep
            )
            submitter = Submitter(
                config.aggregator_target,
                config.node_id,
                simulated=True,
                call_timeout=2.0,
                retries=0,
                sleep=clock.sleep,
            )
            stack.push_async_callback(submitter.close)
            scheduler = MinuteScheduler(clock=clock, sleep=clock.sleep)
            nodes.append(OracleNode(config, fetcher, submitter, scheduler, clock=clock))
        try:
            yield clock, exchange, nodes, bound
        finally:
            await bound.server.stop(None)


async def live_price(port: int) -> oracle_pb2.GetPriceResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        return await stub.GetAggregatedPrice(oracle_pb2.GetPriceRequest())


async def test_frozen_jumping_and_rate_limited_venues_cannot_move_the_price(system) -> None:
    clock, exchange, nodes, bound = system
    exchange.faults(venue="binance", freeze=True)
    exchange.faults(venue="kraken", jump={"percent": 5.0})
    answers: list[tuple[int, oracle_pb2.GetPriceResponse]] = []
    for index in range(1, MINUTES + 1):
        boundary = T0 + 60 * index
        exchange.faults(venue="coinbase", rate_limit={"count": 1, "retry_after": 1})
        clock.now = boundary + 0.3
        tick = Tick(boundary=boundary, minute=boundary - 60, due=boundary)
        await asyncio.gather(*(node.collect(tick) for node in nodes))
        answers.append((boundary - 60, await live_price(bound.port)))

    for minute, answer in answers:
        assert answer.simulated
        assert answer.aggregate_minute == minute  # every minute's round completed and closed
        assert answer.final
        healthy = exchange.close("coinbase", minute)  # Coinbase quotes USD
        published = Decimal(answer.aggregated_price_e8) / 10**8
        assert abs(published - healthy) / healthy < Decimal("0.001"), (minute, answer.message)
        reasons = {item.source: item.excluded_reason for item in answer.excluded}
        assert reasons.get("kraken") == "deviation"

    # Once Binance has been flat for max_flat_minutes (5) while Coinbase moved, it is named
    # frozen and the answer says only one venue is left: DEGRADED, not OK.
    for minute, answer in answers[5:]:
        reasons = {item.source: item.excluded_reason for item in answer.excluded}
        assert reasons == {"binance": "frozen", "kraken": "deviation"}, minute
        assert answer.status == oracle_pb2.PRICE_STATUS_DEGRADED
        assert answer.data_points == 1
        assert [point.source for point in answer.recent_prices] == ["coinbase"]
    health_answer = await bound.servicer.HealthCheck(oracle_pb2.HealthRequest(), None)
    assert not health_answer.healthy
    assert health_answer.status == oracle_pb2.PRICE_STATUS_DEGRADED
