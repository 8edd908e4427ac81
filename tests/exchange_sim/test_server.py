"""The real threaded HTTP server: every answer is marked simulated, faults arrive over the wire."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import httpx

from exchange_sim.app import SimApp
from exchange_sim.config import SimConfig
from exchange_sim.server import SimServer, create_server, run_in_thread

from .conftest import NOW, FakeClock

PATHS = [
    "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2",
    "/products/BTC-USD/candles?granularity=60",
    "/0/public/OHLC?pair=XBTUSD&interval=1",
    "/api/v3/klines?symbol=NOPE&interval=1m",
    "/no/such/path",
    "/_sim/health",
]


def _client(server: SimServer) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5.0)


def test_every_answer_carries_the_simulated_header(live_server: SimServer) -> None:
    with _client(live_server) as client:
        for path in PATHS:
            response = client.get(path)
            assert response.headers["X-Oracle-Simulated"] == "1", path
        client.post("/_sim/faults", json={"venue": "binance", "rate_limit": {"count": 1}})
        limited = client.get(PATHS[0])
        assert limited.status_code == 429
        assert limited.headers["X-Oracle-Simulated"] == "1"
        assert limited.headers["Retry-After"] == "1"


def test_faults_set_over_http_and_cleared_with_delete(live_server: SimServer) -> None:
    with _client(live_server) as client:
        posted = client.post("/_sim/faults", json={"venue": "coinbase", "http_5xx": {"count": 5}})
        assert posted.status_code == 200
        assert posted.json()["faults"]["coinbase"]["http_5xx"] == {"count": 5, "status": 503}
        assert client.get(PATHS[1]).status_code == 503
        assert client.delete("/_sim/faults").status_code == 200
        assert client.get(PATHS[1]).status_code == 200
        refused = client.post("/_sim/faults", json={"venue": "coinbase"})
        assert refused.status_code == 400
        assert "no fault" in refused.json()["error"]


def test_a_slow_venue_does_not_stall_the_others(live_server: SimServer) -> None:
    with _client(live_server) as client:
        client.post("/_sim/faults", json={"venue": "kraken", "slow": {"delay_seconds": 1.0}})

    def timed(path: str) -> float:
        with _client(live_server) as client:
            started = time.monotonic()
            assert client.get(path).status_code == 200
            return time.monotonic() - started

    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(timed, PATHS[2])
        fast = pool.submit(timed, PATHS[0])
        assert fast.result() < 0.8
        assert slow.result() >= 1.0


def test_close_endpoint_matches_what_the_venue_served(live_server: SimServer) -> None:
    with _client(live_server) as client:
        rows = client.get("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3").json()
        minute = rows[0][0] // 1000
        close = client.get("/_sim/close", params={"venue": "binance", "minute": minute}).json()
        assert close == {
            "venue": "binance",
            "asset": "BTC",
            "minute": minute,
            "close": close["close"],
            "closed": True,
        }
        assert rows[0][4].startswith(close["close"])
        assert client.get("/_sim/close", params={"minute": minute + 1}).status_code == 400
        assert client.get("/_sim/close").status_code == 400
        assert client.get("/_sim/close", params={"venue": "x", "minute": 60}).status_code == 400


def test_the_date_header_is_the_simulator_clock() -> None:
    # Nodes decide "closed" by the venue's HTTP Date, so it must follow the simulated clock.
    clock = FakeClock(NOW)
    server = create_server(SimApp(SimConfig(port=0), clock=clock), "127.0.0.1", 0)
    run_in_thread(server)
    try:
        with _client(server) as client:
            for path in PATHS:
                response = client.get(path)
                assert response.headers["Date"] == formatdate(NOW, usegmt=True), path
    finally:
        server.shutdown()
        server.server_close()
