"""Shared fakes for the simulator tests: settable clock, recording sleep, app, live server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exchange_sim.app import SimApp
from exchange_sim.config import SimConfig
from exchange_sim.responses import SimResponse
from exchange_sim.server import SimServer, serving

FIXTURES = Path(__file__).parents[1] / "fixtures" / "exchanges"

# 2025-01-20T14:35:27Z, the reference fixtures' "now": 14:35 is forming, 14:34 the newest closed.
NOW = 1737383727.0
FORMING = 1737383700
NEWEST_CLOSED = FORMING - 60

UA = {"user-agent": "tests/1.0"}


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class FakeClock:
    """Wall clock the test sets by hand; nothing ever waits for a real minute."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingSleep:
    """Records requested delays instead of sleeping."""

    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class Sim:
    """An in-process simulator driven through `SimApp.handle` (no sockets)."""

    app: SimApp
    clock: FakeClock
    sleep: RecordingSleep

    def get(self, target: str, headers: dict[str, str] | None = None) -> SimResponse:
        return self.app.handle("GET", target, UA if headers is None else headers)

    def get_json(self, target: str, headers: dict[str, str] | None = None) -> Any:
        response = self.get(target, headers)
        return json.loads(response.body)

    def post_faults(self, payload: object) -> SimResponse:
        return self.app.handle("POST", "/_sim/faults", {}, json.dumps(payload).encode())

    def close(self, venue: str, minute: int) -> str:
        answer = self.get_json(f"/_sim/close?venue={venue}&minute={minute}")
        return str(answer["close"])


def make_sim(**config: Any) -> Sim:
    clock, sleep = FakeClock(), RecordingSleep()
    return Sim(SimApp(SimConfig(**config), clock=clock, sleep=sleep), clock, sleep)


@pytest.fixture
def sim() -> Sim:
    return make_sim()


@pytest.fixture
def live_server() -> Iterator[SimServer]:
    """The real threaded HTTP server on 127.0.0.1:0 with the real clock."""
    with serving(SimApp(SimConfig(port=0))) as server:
        yield server
