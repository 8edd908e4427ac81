"""Nodes against the exchange simulator and the real in-process aggregator, on a fake clock.

What a user would notice: the aggregator holds the close of the minute that just closed, a minute
collected while the aggregator restarts is delivered (in order) once it is back, a lagging
Coinbase minute is skipped rather than replaced by an older one, and three nodes give the mean.
The venues are the simulator's (its httpx transport, no socket), so the formats checked here are
the ones the simulate mode serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path

import grpc
import httpx
import pytest
from structlog.testing import capture_logs

from aggregator.config import AggregatorConfig, AuthConfig
from aggregator.server import create_server
from common.exchanges import EXCHANGES
from common.metrics import MetricsServer, MetricsSettings
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.timeutil import format_minute
from oracle_node.config import Overrides, load_config
from oracle_node.fetcher import CandleFetcher, Sleep
from oracle_node.metrics import NodeMetrics
from oracle_node.node import OracleNode
from oracle_node.rates import RATE_FETCH_WINDOW
from oracle_node.scheduler import MinuteScheduler, Tick
from oracle_node.submitter import Submitter
from tests.metrics_helpers import scrape, value
from tests.oracle_node.fakes import SIM_URL, FakeClock, FlakyTransport, Simulator
from tests.signing_helpers import key_for, write_allowlist

T0 = 1_800_000_000 - 1_800_000_000 % 60  # a minute boundary
NODE_IDS = ("oracle-node-1", "oracle-node-2", "oracle-node-3")


class Aggregator:
    """The lead's real aggregator, in-process, restartable on the same port."""

    def __init__(self, clock: FakeClock, allowlist: Path) -> None:
        self.clock = clock
        self.port = 0
        self.server: grpc.aio.Server | None = None
        self.allowlist = allowlist

    async def start(self) -> None:
        # The nodes sign (their keys are on the allowlist, so every signature is verified); the
        # tests' own hand-made requests are unsigned, hence allow_unsigned as well.
        auth = AuthConfig(allowlist=self.allowlist, allow_unsigned=True)
        config = AggregatorConfig(host="127.0.0.1", port=self.port, simulate=True, auth=auth)
        self.server, self.port = create_server(config, clock=self.clock)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None

    async def price(self, source: str = "") -> oracle_pb2.GetPriceResponse:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            request = oracle_pb2.GetPriceRequest(source_filter=source) if source else None
            return await stub.GetAggregatedPrice(request or oracle_pb2.GetPriceRequest())

    async def submit(self, request: oracle_pb2.PriceRequest) -> oracle_pb2.PriceResponse:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            return await oracle_pb2_grpc.OracleServiceStub(channel).SubmitPrice(request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 30)


@pytest.fixture
def exchange(clock: FakeClock) -> Simulator:
    return Simulator(clock)


@pytest.fixture
async def aggregator(clock: FakeClock, tmp_path: Path) -> AsyncIterator[Aggregator]:
    allowlist = write_allowlist(
        tmp_path / "allowlist.toml",
        [(node_id, key_for(node_id), EXCHANGES) for node_id in NODE_IDS],
    )
    server = Aggregator(clock, allowlist)
    await server.start()
    yield server
    await server.stop()


class Nodes:
    """Builds simulate-mode nodes wired to the simulator and the aggregator; closes them after."""

    def __init__(self, stack: AsyncExitStack, clock: FakeClock, exchange: Simulator) -> None:
        self.stack = stack
        self.clock = clock
        self.exchange = exchange

    async def make(
        self,
        venue: str,
        port: int,
        node_id: str,
        *,
        scheduler_sleep: Sleep | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: NodeMetrics | None = None,
    ) -> tuple[OracleNode, Submitter]:
        config = load_config(
            None,
            Overrides(
                exchange=venue,
                node_id=node_id,
                aggregator_url=f"http://127.0.0.1:{port}",
                api_url=SIM_URL,
                simulate=True,
            ),
        )
        client = await self.stack.enter_async_context(
            httpx.AsyncClient(transport=transport or self.exchange.transport)
        )
        fetcher = CandleFetcher(
            client, config.exchange, simulate=True, clock=self.clock, sleep=self.clock.sleep
        )
        submitter = Submitter(
            config.aggregator_target,
            node_id,
            simulated=True,
            call_timeout=1.0,
            retries=0,
            sleep=self.clock.sleep,
            metrics=metrics,
            clock=self.clock,
            signing_key=key_for(node_id),
        )
        self.stack.push_async_callback(submitter.close)
        scheduler = MinuteScheduler(clock=self.clock, sleep=scheduler_sleep or self.clock.sleep)
        node = OracleNode(config, fetcher, submitter, scheduler, clock=self.clock, metrics=metrics)
        return node, submitter


@pytest.fixture
async def nodes(clock: FakeClock, exchange: Simulator) -> AsyncIterator[Nodes]:
    async with AsyncExitStack() as stack:
        yield Nodes(stack, clock, exchange)


def tick_at(clock: FakeClock, boundary: int) -> Tick:
    clock.now = boundary + 0.3
    return Tick(boundary=boundary, minute=boundary - 60, due=boundary)


async def test_node_submits_the_close_of_the_minute_just_closed(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    node, submitter = await nodes.make("binance", aggregator.port, "oracle-node-1")
    tick = tick_at(clock, T0 + 60)
    candle = await node.collect(tick)
    assert candle is not None
    assert candle.close == exchange.close("binance", T0)
    assert submitter.pending == 0

    answer = await aggregator.price("binance")
    assert answer.success
    assert answer.simulated
    assert answer.aggregate_minute == T0
    assert Decimal(str(answer.aggregated_price)) == exchange.close("binance", T0)
    assert answer.recent_prices[0].node_id == "oracle-node-1"
    assert answer.recent_prices[0].quote == "USDT"


async def test_buffered_minute_survives_an_aggregator_restart(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    node, submitter = await nodes.make("kraken", aggregator.port, "oracle-node-3")
    assert await node.collect(tick_at(clock, T0 + 60)) is not None

    await aggregator.stop()
    with capture_logs() as down_logs:
        assert await node.collect(tick_at(clock, T0 + 120)) is not None
    assert submitter.pending == 2  # the minute's BTC price and its USDT/USD rate
    assert "Cannot connect to gRPC Aggregator" in {entry["event"] for entry in down_logs}

    await aggregator.start()  # same port, empty memory
    with capture_logs() as up_logs:
        await node.collect(tick_at(clock, T0 + 180))
    assert submitter.pending == 0
    delivered = [entry["minute"] for entry in up_logs if entry["event"] == "price_submitted"]
    assert delivered == [format_minute(T0 + 60), format_minute(T0 + 120)]

    # The aggregator really holds the minute collected while it was down.
    again = await aggregator.submit(
        oracle_pb2.PriceRequest(
            price=float(exchange.close("kraken", T0 + 60)),
            timestamp=T0 + 60,
            source="kraken",
            node_id="oracle-node-3",
            quote="USD",
            simulated=True,
        )
    )
    assert again.success
    assert again.duplicate


async def test_three_nodes_give_the_mean_of_the_three_exchanges(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    venues = ("binance", "coinbase", "kraken")
    made = [
        await nodes.make(venue, aggregator.port, f"oracle-node-{i + 1}")
        for i, venue in enumerate(venues)
    ]
    tick = tick_at(clock, T0 + 60)
    await asyncio.gather(*(node.collect(tick) for node, _ in made))

    answer = await aggregator.price()
    assert answer.success
    assert answer.data_points == 3
    assert answer.aggregate_minute == T0
    expected = sum(exchange.close(venue, T0) for venue in venues) / 3
    assert answer.aggregated_price == pytest.approx(float(expected), abs=1e-6)
    assert sorted(point.source for point in answer.recent_prices) == sorted(venues)


async def test_lagging_coinbase_minute_is_skipped_not_replaced(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    node, submitter = await nodes.make("coinbase", aggregator.port, "oracle-node-2")
    exchange.faults(venue="coinbase", lag={"seconds": 180})  # not out for the whole minute
    boundary = T0 + 60
    with capture_logs() as logs:
        assert await node.collect(tick_at(clock, boundary)) is None
    # Gave up at the configured deadline; the rate then had its few seconds, no more.
    assert clock.now <= boundary + 45 + RATE_FETCH_WINDOW
    assert "minute_skipped" in {entry["event"] for entry in logs}
    assert submitter.pending == 0
    assert not (await aggregator.price("coinbase")).success


async def test_the_loop_collects_at_each_boundary_and_stops_cleanly(
    clock: FakeClock, aggregator: Aggregator, nodes: Nodes
) -> None:
    stop = asyncio.Event()

    async def sleep_then_stop(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now >= T0 + 4 * 60:
            stop.set()

    node, _ = await nodes.make(
        "binance", aggregator.port, "oracle-node-1", scheduler_sleep=sleep_then_stop
    )
    with capture_logs() as logs:
        await asyncio.wait_for(node.run(stop), timeout=10)
    submitted = [entry["minute"] for entry in logs if entry["event"] == "price_submitted"]
    assert submitted == [format_minute(T0 + 60 * i) for i in range(3)]
    started = [entry for entry in logs if entry["event"] == "fetch_started"]
    assert all(entry["skew_ms"] == 0 for entry in started)
    assert logs[-1]["event"] == "node_stopped"
    answer = await aggregator.price("binance")
    assert answer.aggregate_minute == T0 + 120


async def test_shutdown_abandons_a_stuck_minute_within_the_grace_period(
    clock: FakeClock, aggregator: Aggregator, tmp_path: Path
) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[oracle]\nshutdown_grace_seconds = 0.2\n", encoding="utf-8")
    config = load_config(
        path,
        Overrides(aggregator_url=f"127.0.0.1:{aggregator.port}", api_url=SIM_URL, simulate=True),
    )
    never, asked = asyncio.Event(), asyncio.Event()

    async def hanging_exchange(_request: httpx.Request) -> httpx.Response:
        asked.set()
        await never.wait()  # an exchange that accepted the connection and never answers
        raise AssertionError("unreachable")

    stop = asyncio.Event()
    async with httpx.AsyncClient(transport=httpx.MockTransport(hanging_exchange)) as client:
        fetcher = CandleFetcher(
            client, config.exchange, simulate=True, clock=clock, sleep=clock.sleep
        )
        submitter = Submitter(config.aggregator_target, config.node_id, simulated=True)
        scheduler = MinuteScheduler(clock=clock, sleep=clock.sleep)
        node = OracleNode(config, fetcher, submitter, scheduler, clock=clock)
        with capture_logs() as logs:
            running = asyncio.ensure_future(node.run(stop))
            await asyncio.wait_for(asked.wait(), timeout=5)
            stop.set()
            await asyncio.wait_for(running, timeout=5)
        await submitter.close()
    events = [entry["event"] for entry in logs]
    assert "minute_abandoned_on_shutdown" in events
    assert events[-1] == "node_stopped"


async def test_an_unexpected_error_costs_one_minute_not_the_node(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    stop = asyncio.Event()
    broken_once = FlakyTransport(exchange.transport, [RuntimeError("an answer nobody foresaw")])

    async def sleep_then_stop(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now >= T0 + 3 * 60:
            stop.set()

    node, _ = await nodes.make(
        "binance",
        aggregator.port,
        "oracle-node-1",
        scheduler_sleep=sleep_then_stop,
        transport=broken_once,
    )
    with capture_logs() as logs:
        await asyncio.wait_for(node.run(stop), timeout=10)
    failed = [entry for entry in logs if entry["event"] == "cycle_failed"]
    assert [entry["minute"] for entry in failed] == [format_minute(T0)]
    assert "an answer nobody foresaw" in failed[0]["error"]
    submitted = [entry["minute"] for entry in logs if entry["event"] == "price_submitted"]
    assert submitted == [format_minute(T0 + 60)]
    assert logs[-1]["event"] == "node_stopped"


async def test_buffer_is_delivered_in_a_minute_whose_fetch_fails(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    node, submitter = await nodes.make("kraken", aggregator.port, "oracle-node-3")
    await aggregator.stop()
    assert await node.collect(tick_at(clock, T0 + 60)) is not None  # minute A, buffered
    assert submitter.pending == 2  # its BTC price and its USDT/USD rate

    await aggregator.start()
    exchange.faults(venue="kraken", http_5xx={})  # minute B: Kraken fails until the deadline
    with capture_logs() as logs:
        assert await node.collect(tick_at(clock, T0 + 120)) is None
    events = [entry["event"] for entry in logs]
    assert "fetch_failed" in events
    delivered = [entry["minute"] for entry in logs if entry["event"] == "price_submitted"]
    assert delivered == [format_minute(T0)]
    assert submitter.pending == 0


async def test_a_lagging_coinbase_minute_is_backfilled_in_order(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    node, submitter = await nodes.make("coinbase", aggregator.port, "oracle-node-2")
    exchange.faults(venue="coinbase", lag={"seconds": 180})  # minute A (T0) is not out in time
    with capture_logs() as skipped_logs:
        assert await node.collect(tick_at(clock, T0 + 60)) is None
    assert "minute_skipped" in {entry["event"] for entry in skipped_logs}

    exchange.faults(venue="coinbase", lag=None)  # caught up: A and B are in the next answer
    with capture_logs() as logs:
        candle = await node.collect(tick_at(clock, T0 + 120))
    assert candle is not None
    assert candle.minute == T0 + 60
    backfilled = [entry["minute"] for entry in logs if entry["event"] == "minute_backfilled"]
    assert backfilled == [format_minute(T0)]
    submitted = [entry["minute"] for entry in logs if entry["event"] == "price_submitted"]
    assert submitted == [format_minute(T0), format_minute(T0 + 60)]
    assert submitter.pending == 0

    late = await aggregator.submit(
        oracle_pb2.PriceRequest(
            price=float(exchange.close("coinbase", T0)),
            timestamp=T0,
            source="coinbase",
            node_id="oracle-node-2",
            quote="USD",
            simulated=True,
        )
    )
    assert late.duplicate  # the aggregator holds the late minute
    with capture_logs() as later_logs:
        await node.collect(tick_at(clock, T0 + 180))
    assert "minute_backfilled" not in {entry["event"] for entry in later_logs}


async def test_simulated_coinbase_lag_of_70_s_loses_no_minute(
    clock: FakeClock, aggregator: Aggregator, nodes: Nodes
) -> None:
    # Each minute appears 70 s after its close, 25 s past the fetch deadline: every minute is
    # skipped in its own cycle and taken from the next cycle's answer.
    sim = Simulator(clock, coinbase_lag_seconds=70.0)
    stop = asyncio.Event()

    async def sleep_then_stop(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now >= T0 + 5 * 60:
            stop.set()

    node, _ = await nodes.make(
        "coinbase",
        aggregator.port,
        "oracle-node-2",
        scheduler_sleep=sleep_then_stop,
        transport=sim.transport,
    )
    with capture_logs() as logs:
        await asyncio.wait_for(node.run(stop), timeout=10)
    events = [(entry["event"], entry.get("minute")) for entry in logs]
    skipped = [minute for event, minute in events if event == "minute_skipped"]
    backfilled = [minute for event, minute in events if event == "minute_backfilled"]
    submitted = [minute for event, minute in events if event == "price_submitted"]
    assert skipped == [format_minute(T0 + 60 * i) for i in range(4)]
    assert backfilled == skipped[:3]
    assert submitted == backfilled
    answer = await aggregator.price("coinbase")
    assert answer.success
    assert answer.aggregate_minute == T0 + 120
    assert Decimal(str(answer.aggregated_price)) == sim.close("coinbase", T0 + 120)


async def test_backfill_keeps_only_the_last_five_recent_skipped_minutes(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    node, _ = await nodes.make("coinbase", aggregator.port, "oracle-node-2")
    exchange.faults(venue="coinbase", lag={"seconds": 1800})
    for i in range(7):  # T0 .. T0+360 skipped
        assert await node.collect(tick_at(clock, T0 + 60 * (i + 1))) is None
    exchange.faults(venue="coinbase", lag=None)  # every one of them is in the next answer
    with capture_logs() as logs:
        await node.collect(tick_at(clock, T0 + 480))
    backfilled = [entry["minute"] for entry in logs if entry["event"] == "minute_backfilled"]
    assert backfilled == [format_minute(T0 + 60 * i) for i in range(2, 7)]


async def test_a_skipped_minute_too_old_for_the_aggregator_is_not_backfilled(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    node, _ = await nodes.make("coinbase", aggregator.port, "oracle-node-2")
    exchange.faults(venue="coinbase", lag={"seconds": 1800})
    assert await node.collect(tick_at(clock, T0 + 60)) is None  # T0 skipped
    exchange.faults(venue="coinbase", lag=None)
    with capture_logs() as logs:  # nine minutes later: T0 is in the answer but too old
        assert await node.collect(tick_at(clock, T0 + 600)) is not None
    assert "minute_backfilled" not in {entry["event"] for entry in logs}


async def test_the_node_metrics_endpoint_follows_a_collected_minute(
    clock: FakeClock, exchange: Simulator, aggregator: Aggregator, nodes: Nodes
) -> None:
    metrics = NodeMetrics(
        exchange="kraken", node_id="oracle-node-3", simulated=True, clock=clock, transport="unary"
    )
    node, _ = await nodes.make("kraken", aggregator.port, "oracle-node-3", metrics=metrics)
    endpoint = MetricsServer(metrics.registry, MetricsSettings(port=0), health=metrics.health)
    with endpoint:
        starting = await asyncio.to_thread(httpx.get, f"{endpoint.url}/healthz", timeout=5)
        assert starting.status_code == 200
        assert starting.json()["status"] == "starting"
        assert await node.collect(tick_at(clock, T0 + 60)) is not None
        samples = await asyncio.to_thread(scrape, endpoint.url)
        health = await asyncio.to_thread(httpx.get, f"{endpoint.url}/healthz", timeout=5)
    labels = {"exchange": "kraken"}
    assert value(samples, "oracle_node_fetches_total", outcome="ok", **labels) == 1
    # The BTC price and the USDT/USD rate of the minute (kraken lists one).
    assert value(samples, "oracle_node_submissions_total", outcome="accepted", **labels) == 2
    assert value(samples, "oracle_node_buffer_depth", **labels) == 0
    assert value(samples, "oracle_node_last_submit_success_timestamp_seconds", **labels) > 0
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["last_accepted_submission"]["minute"] == T0
