"""Fixtures: a fake aggregator on a loopback port and a real explorer in process, on port 0."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import grpc
import pytest

from common.timeutil import minute_floor
from explorer.anchors import AnchorSource
from explorer.config import ExplorerConfig
from explorer.server import RunningExplorer, start_explorer
from tests.explorer.fake_aggregator import (
    FakeAggregator,
    node_table,
    price_from_round,
    simulated_history,
    start_fake,
)

# Fast intervals: tests wait for the feed by polling, never by sleeping through real periods.
FAST = {
    "poll_interval": 0.2,
    "health_interval": 0.5,
    "reconnect_max": 0.5,
    "resubscribe_interval": 30.0,
    "rpc_timeout": 2.0,
}


@dataclass
class System:
    fake: FakeAggregator
    server: grpc.aio.Server
    aggregator_port: int
    explorer: RunningExplorer
    http: aiohttp.ClientSession
    now: float

    @property
    def url(self) -> str:
        return self.explorer.url


def explorer_config(aggregator_port: int, **overrides: object) -> ExplorerConfig:
    values: dict[str, object] = {
        "port": 0,
        "aggregator_target": f"127.0.0.1:{aggregator_port}",
        **FAST,
        **overrides,
    }
    return ExplorerConfig(**values)  # type: ignore[arg-type]


def populated_fake(now: float, **flags: bool) -> FakeAggregator:
    fake = FakeAggregator(**flags)
    rounds = simulated_history(minute_floor(now) - 60, 90)
    fake.add_rounds(rounds)
    fake.set_price(price_from_round(rounds[-1], now))
    fake.nodes = node_table(now)
    return fake


async def wait_for(predicate: object, within: float = 5.0) -> None:
    """Poll `predicate()` (sync or async) until true; fail with a clear message otherwise."""
    import asyncio
    import inspect

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = predicate()  # type: ignore[operator]
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {within} s")


async def make_system(
    fake: FakeAggregator, now: float, *, anchors: AnchorSource | None = None, **overrides: object
) -> System:
    server, port = await start_fake(fake)
    explorer = await start_explorer(explorer_config(port, **overrides), anchors=anchors)
    http = aiohttp.ClientSession()
    system = System(fake, server, port, explorer, http, now)
    await wait_for(lambda: explorer.feed.state.price is not None)
    return system


async def close_system(system: System) -> None:
    await system.http.close()
    await system.explorer.stop()
    await system.server.stop(None)


@pytest.fixture
async def system() -> AsyncIterator[System]:
    """Every RPC implemented, 90 simulated rounds, a node table."""
    now = time.time()
    built = await make_system(populated_fake(now), now)
    yield built
    await close_system(built)


@pytest.fixture
async def old_system() -> AsyncIterator[System]:
    """An aggregator without SubscribePrices and ListNodes (what main answers before they land)."""
    now = time.time()
    built = await make_system(populated_fake(now, subscribe=False, list_nodes=False), now)
    yield built
    await close_system(built)
