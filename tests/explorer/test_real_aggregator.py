"""The explorer against the real aggregator (in process, port 0) fed known simulated observations.

What the aggregator on main serves today is checked exactly: the live aggregate of known prices
reaches `/api/price` as the exact mean, and the RPCs it does not build yet (SubscribePrices,
GetPriceHistory, GetRound, ListNodes) are said to be missing, by name, rather than faked. Each
check turns into the full one as soon as the aggregator implements the RPC.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import grpc
import pytest

from aggregator.config import AggregatorConfig, AuthConfig, DatabaseConfig
from aggregator.server import build_server
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.timeutil import minute_floor
from explorer.server import RunningExplorer, start_explorer
from tests.explorer.conftest import explorer_config, wait_for

KNOWN = {
    "binance": ("100010.50", "USDT", "oracle-node-1"),
    "coinbase": ("100000.25", "USD", "oracle-node-2"),
    "kraken": ("99990.00", "USD", "oracle-node-3"),
}


@dataclass
class RealSystem:
    server: grpc.aio.Server
    explorer: RunningExplorer
    http: aiohttp.ClientSession
    minute: int

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.explorer.url + path) as response:
            return response.status, await response.json()


@pytest.fixture
async def real() -> AsyncIterator[RealSystem]:
    # The real clock: the explorer and the aggregator must agree on what "now" is, and the
    # submitted minute is the last closed one, so nothing waits for a boundary.
    minute = minute_floor(time.time()) - 60
    # In memory: a test never writes the repository's data/ (nor holds its lock).
    config = AggregatorConfig(
        host="127.0.0.1",
        port=0,
        simulate=True,
        database=DatabaseConfig(enabled=False),
        auth=AuthConfig(allow_unsigned=True),  # the submissions below are unsigned
    )
    bound = build_server(config)
    await bound.server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        for exchange, (price, quote, node) in KNOWN.items():
            answer = await stub.SubmitPrice(
                oracle_pb2.PriceRequest(
                    price=float(price),
                    timestamp=minute,
                    source=exchange,
                    node_id=node,
                    quote=quote,
                    simulated=True,
                )
            )
            assert answer.success, answer.message
    explorer = await start_explorer(explorer_config(bound.port))
    http = aiohttp.ClientSession()
    system = RealSystem(bound.server, explorer, http, minute)
    await wait_for(lambda: explorer.feed.state.price is not None)
    yield system
    await http.close()
    await explorer.stop()
    await bound.server.stop(None)


async def test_the_live_aggregate_of_known_prices(real: RealSystem) -> None:
    status, document = await real.get("/api/price")
    assert status == 200
    mean = sum(Decimal(price) for price, _, _ in KNOWN.values()) / 3
    assert Decimal(document["price"]) == mean.quantize(Decimal("0.00000001"))
    assert document["simulated"] is True
    assert document["minute"] == real.minute
    assert document["status"] == "OK"
    inputs = {item["exchange"]: item for item in document["inputs"]}
    assert set(inputs) == set(KNOWN)
    for exchange, (price, quote, node) in KNOWN.items():
        assert Decimal(inputs[exchange]["price"]) == Decimal(price)
        assert inputs[exchange]["quote"] == quote
        assert inputs[exchange]["node_ids"] == [node]


async def test_the_page_shows_it_and_says_simulated(real: RealSystem) -> None:
    async with real.http.get(real.explorer.url + "/") as response:
        page = await response.text()
    _, document = await real.get("/api/price")
    assert f'data-exact="{document["price"]}"' in page
    assert 'id="simulated-banner" class="banner simulated" role="alert"' in page


async def test_rpcs_the_aggregator_lacks_are_named_not_faked(real: RealSystem) -> None:
    state = real.explorer.feed.state
    status, history = await real.get("/api/rounds")
    _, nodes = await real.get("/api/nodes")
    if status == 501:
        assert "GetPriceHistory" in history["error"]["message"]
        assert nodes["source"] == "live"
        assert {node["node_id"] for node in nodes["nodes"]} == {n for _, _, n in KNOWN.values()}
    else:  # the rounds work has landed: the known round is listed with its inputs
        assert status == 200
        assert real.minute in [round_["minute"] for round_ in history["rounds"]]
        assert nodes["source"] in ("ListNodes", "rounds")
    status, round_ = await real.get(f"/api/rounds/{real.minute}")
    if status == 501:
        assert "GetRound" in round_["error"]["message"]
    else:
        assert status == 200
        assert round_["minute"] == real.minute
    assert state.mode in ("poll", "subscribe")
