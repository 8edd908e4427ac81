"""The USDT/USD rate a node collects after its BTC candle: what is sent, and what it can never cost.

Against the exchange simulator (Kraken USDTUSD, Coinbase USDT-USD in their real formats) and a
recording aggregator, on a fake clock: the rate goes out as a second observation of the same
minute with base USDT and quote USD; the BTC price is delivered before the rate is even asked for;
a rate that fails, hangs or is out of bounds costs the rate, never the BTC minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from common.errors import ConfigError
from oracle_node.candle import Candle
from oracle_node.config import Overrides, load_config
from oracle_node.fetcher import CandleFetcher
from oracle_node.node import OracleNode
from oracle_node.scheduler import MinuteScheduler, Tick
from oracle_node.submitter import Submitter
from tests.oracle_node.aggregators import FakeAggregator
from tests.oracle_node.fakes import SIM_URL, FakeClock, Simulator

T0 = 1_800_000_000 - 1_800_000_000 % 60


class RateFailing(httpx.AsyncBaseTransport):
    """The simulator, except that requests for the USDT pair fail as `answer` says."""

    def __init__(self, inner: httpx.AsyncBaseTransport, answer: str) -> None:
        self.inner = inner
        self.answer = answer
        self.hung = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "USDT" not in str(request.url):
            return await self.inner.handle_async_request(request)
        if self.answer == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        self.hung += 1
        await _forever()
        raise AssertionError("unreachable")


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.fixture
async def aggregator() -> AsyncIterator[FakeAggregator]:
    fake = FakeAggregator(simulated=True)
    await fake.start()
    yield fake
    await fake.stop()


class Minute:
    """One node of `venue` collecting one minute (T0) from the simulator, into `aggregator`."""

    def __init__(self, venue: str, aggregator: FakeAggregator, sim: Simulator) -> None:
        self.venue = venue
        self.aggregator = aggregator
        self.sim = sim
        self.logs: list[dict[str, object]] = []

    async def collect(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        config_path: Path | None = None,
    ) -> Candle | None:
        """Collect minute T0 at its boundary; the BTC candle, or None if it was not queued."""
        clock = self.sim.clock
        config = load_config(
            config_path,
            Overrides(
                exchange=self.venue,
                node_id=f"{self.venue}-node",
                aggregator_url=f"127.0.0.1:{self.aggregator.port}",
                api_url=SIM_URL,
                simulate=True,
            ),
        )
        async with httpx.AsyncClient(transport=transport or self.sim.transport) as client:
            fetcher = CandleFetcher(
                client, config.exchange, simulate=True, clock=clock, sleep=clock.sleep
            )
            submitter = Submitter(
                config.aggregator_target,
                config.node_id,
                simulated=True,
                call_timeout=2.0,
                retries=0,
            )
            scheduler = MinuteScheduler(clock=clock, sleep=clock.sleep)
            node = OracleNode(config, fetcher, submitter, scheduler, clock=clock)
            clock.now = T0 + 60.3
            try:
                with capture_logs() as self.logs:
                    return await node.collect(Tick(T0 + 60, T0, T0 + 60))
            finally:
                await submitter.close()

    def events(self) -> list[object]:
        return [entry["event"] for entry in self.logs]

    def received(self) -> list[tuple[str, int]]:
        return [(r.base, r.timestamp) for r in self.aggregator.servicer.received]


@pytest.mark.parametrize(("venue", "symbol"), [("kraken", "USDTUSD"), ("coinbase", "USDT-USD")])
async def test_the_rate_goes_out_after_the_btc_price_for_the_same_minute(
    venue: str, symbol: str, aggregator: FakeAggregator
) -> None:
    sim = Simulator(FakeClock(T0 + 30))
    minute = Minute(venue, aggregator, sim)
    assert await minute.collect() is not None
    btc, rate = aggregator.servicer.received
    assert (btc.base, btc.timestamp, btc.source) == ("BTC", T0, venue)
    assert Decimal(str(btc.price)) == sim.close(venue, T0)
    assert (rate.base, rate.quote, rate.symbol) == ("USDT", "USD", symbol)
    assert (rate.timestamp, rate.source, rate.node_id) == (T0, venue, f"{venue}-node")
    assert rate.simulated
    assert Decimal(str(rate.price)) == sim.close(venue, T0, asset="USDT")
    assert Decimal("0.99") < Decimal(str(rate.price)) < Decimal("1.01")
    events = minute.events()
    # The BTC price is delivered before the rate is asked for: a slow rate never delays it.
    assert events.index("price_submitted") < events.index("rate_fetch_started")
    assert events.index("rate_fetch_finished") < events.index("rate_submitted")


async def test_a_binance_node_collects_no_rate_by_default(aggregator: FakeAggregator) -> None:
    sim = Simulator(FakeClock(T0 + 30))
    minute = Minute("binance", aggregator, sim)
    await minute.collect()
    assert minute.received() == [("BTC", T0)]
    assert [request.url.params["symbol"] for request in sim.transport.requests] == ["BTCUSDT"]


async def test_a_failing_rate_costs_the_rate_never_the_btc_minute(
    aggregator: FakeAggregator,
) -> None:
    sim = Simulator(FakeClock(T0 + 30))
    minute = Minute("kraken", aggregator, sim)
    assert await minute.collect(transport=RateFailing(sim.transport, "refused")) is not None
    assert minute.received() == [("BTC", T0)]
    failed = [entry for entry in minute.logs if entry["event"] == "rate_fetch_failed"]
    assert len(failed) == 1
    assert "cannot reach Kraken" in str(failed[0]["error"])
    assert failed[0]["symbol"] == "USDTUSD"
    assert "cycle_failed" not in minute.events()


async def test_a_hanging_rate_is_cut_off_by_the_total_deadline(
    aggregator: FakeAggregator, tmp_path: Path
) -> None:
    # Each rate request never answers; every attempt is bounded by the (0.2 s) total deadline,
    # and the rate's polls end at its own deadline: the cycle ends, the BTC price is out.
    path = tmp_path / "node.toml"
    path.write_text("[kraken]\ntimeout = 0.2\nmax_retries = 1\n", encoding="utf-8")
    sim = Simulator(FakeClock(T0 + 30))
    hanging = RateFailing(sim.transport, "hang")
    minute = Minute("kraken", aggregator, sim)
    assert await minute.collect(transport=hanging, config_path=path) is not None
    assert minute.received() == [("BTC", T0)]
    assert hanging.hung == 2  # the first try and one retry, each cut off
    failed = next(entry for entry in minute.logs if entry["event"] == "rate_fetch_failed")
    assert "did not finish answering within 0.2 s" in str(failed["error"])


async def test_a_rate_outside_its_bounds_is_refused_by_its_own_bounds(
    aggregator: FakeAggregator,
) -> None:
    # Every close Kraken sends reads 5.0: a BTC price below the BTC bounds, a USDT/USD rate
    # above the rate's. Each is refused by its own bounds, neither is submitted.
    sim = Simulator(FakeClock(T0 + 30))
    sim.faults(venue="kraken", tamper={"op": "set", "field": "close", "value": "5.0"})
    minute = Minute("kraken", aggregator, sim)
    assert await minute.collect() is None
    rejected = {
        entry["event"]: str(entry["reason"])
        for entry in minute.logs
        if "rejected" in entry["event"]
    }
    assert "[0.5, 2]" in rejected["rate_candle_rejected"]
    assert "[1000, 10000000]" in rejected["candle_rejected"]
    assert minute.received() == []


def test_the_rate_symbol_defaults_per_exchange_and_is_checked(tmp_path: Path) -> None:
    defaults = {"binance": "", "coinbase": "USDT-USD", "kraken": "USDTUSD"}
    for venue, symbol in defaults.items():
        assert load_config(None, Overrides(exchange=venue)).exchange.usdt_rate_symbol == symbol
    path = tmp_path / "node.toml"
    for good, expected in (('""', ""), ('"USDTZUSD"', "USDTZUSD")):
        path.write_text(f"[kraken]\nusdt_rate_symbol = {good}\n", encoding="utf-8")
        config = load_config(path, Overrides(exchange="kraken"))
        assert config.exchange.usdt_rate_symbol == expected
    for bad in ('"XBTUSD"', '"USDTEUR"', '"ETHUSD"', "5"):
        path.write_text(f"[kraken]\nusdt_rate_symbol = {bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="usdt_rate_symbol"):
            load_config(path, Overrides(exchange="kraken"))
