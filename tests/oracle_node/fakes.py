"""Test doubles for the node: a fake clock whose sleep advances time, and the exchange simulator.

The venues themselves are never faked here: every test that needs an exchange answer in a venue's
format gets it from the exchange simulator (`exchange_sim`, through its httpx transport), the one
fake of each venue's format, so what the node's tests check is what the simulate mode serves.
Answers no honest venue gives (a hostile body, a missing marker) are made by the tests that need
them; the reference bodies in `tests/fixtures/exchanges/` are real-format captures (data).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from exchange_sim.app import SimApp
from exchange_sim.config import SimConfig
from exchange_sim.transport import SimTransport

FIXTURES = Path(__file__).parents[1] / "fixtures" / "exchanges"

# The reference scenario: 2025-01-20T14:35:27Z; 14:34 is the newest closed minute.
SCENARIO_NOW = 1737383727.0
NEWEST_CLOSED = 1737383640
FORMING = 1737383700

SIM_URL = "http://exchange-sim.test"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class FakeClock:
    """Wall-clock seconds under test control; `sleep` advances them instead of waiting."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


class Simulator:
    """The exchange simulator on a fake clock, reached through its httpx transport.

    `skew`: the venues' clock runs this many seconds from the node's (negative: behind), for
    their candles and their `Date` alike. Coinbase's publication lag is 0 unless given.
    """

    def __init__(self, clock: FakeClock, *, skew: float = 0.0, **config: Any) -> None:
        config.setdefault("coinbase_lag_seconds", 0.0)
        self.clock = clock
        self.app = SimApp(SimConfig(**config), clock=lambda: clock() + skew)
        self.transport = SimTransport(self.app, sleep=clock.sleep)

    def client(self) -> httpx.AsyncClient:
        """A client whose every request goes to the simulator (any base URL)."""
        return httpx.AsyncClient(transport=self.transport)

    def faults(self, **faults: object) -> None:
        """Inject faults, as `POST /_sim/faults` does (`venue=` names the venue)."""
        answer = self.app.handle("POST", "/_sim/faults", {}, json.dumps(faults).encode())
        assert answer.status == 200, answer.body

    def clear(self) -> None:
        """Remove every fault."""
        self.app.handle("DELETE", "/_sim/faults", {})

    def close(self, venue: str, minute: int, asset: str = "BTC") -> Decimal:
        """The close the simulator serves for `venue`'s pair of `asset` at `minute`."""
        target = f"/_sim/close?venue={venue}&minute={minute}&asset={asset}"
        answer = self.app.handle("GET", target, {})
        return Decimal(json.loads(answer.body)["close"])

    def venue_requests(self, path_part: str) -> list[httpx.Request]:
        """The requests made so far whose path contains `path_part`."""
        return [request for request in self.transport.requests if path_part in request.url.path]


class FlakyTransport(httpx.AsyncBaseTransport):
    """Raises the given errors for the first requests, then hands every request to `inner`.

    For what no server can send: a refused connection, a read timeout, a bug in the client.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, errors: Iterable[Exception]) -> None:
        self.inner = inner
        self.errors = list(errors)
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return await self.inner.handle_async_request(request)
