"""The hostile faults: each venue's answer with one thing wrong, as a broken or hostile venue sends.

These are the faults the node's own tests attack it with (tests/oracle_node/test_hostile.py), so
each must be exactly what it says: the venue's real format but for the one damage, a ban or a
geo-block in the venue's own words, an HTML page, a gzip bomb, a dripping body, a lag, a clock
that is off.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest
from click.testing import CliRunner

from exchange_sim.app import SimApp
from exchange_sim.cli import main as sim_main
from exchange_sim.config import SimConfig
from exchange_sim.faults import FaultSpecError, parse_fault_request
from exchange_sim.responses import json_response
from exchange_sim.server import SimServer
from exchange_sim.transport import SimTransport

from .conftest import FORMING, NEWEST_CLOSED, NOW, Sim, fixture_json, make_sim

BINANCE = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3"
COINBASE = "/products/BTC-USD/candles?granularity=60"
KRAKEN = f"/0/public/OHLC?pair=XBTUSD&interval=1&since={NEWEST_CLOSED - 120}"
PATHS = {"binance": BINANCE, "coinbase": COINBASE, "kraken": KRAKEN}


def rows_of(venue: str, body: bytes) -> list[list[object]]:
    decoded = json.loads(body)
    return decoded["result"]["XXBTZUSD"] if venue == "kraken" else decoded


def test_binance_ban_is_a_418_in_binances_words(sim: Sim) -> None:
    sim.post_faults({"venue": "binance", "ban": {"count": 1, "retry_after": 300}})
    banned = sim.get(BINANCE)
    assert banned.status == 418
    assert banned.header("Retry-After") == "300"
    body = json.loads(banned.body)
    assert body["code"] == fixture_json("binance_418_banned.json")["code"]
    assert f"IP banned until {int((NOW + 300) * 1000)}" in body["msg"]
    assert sim.get(BINANCE).status == 200


def test_a_retry_after_given_as_text_is_sent_verbatim(sim: Sim) -> None:
    header = "Fri, 31 Dec 9999 23:59:59 GMT"
    sim.post_faults({"venue": "binance", "rate_limit": {"retry_after": header}})
    assert sim.get(BINANCE).header("Retry-After") == header


@pytest.mark.parametrize("venue", ["coinbase", "kraken"])
def test_venues_without_a_ban_status_answer_their_rate_limit(sim: Sim, venue: str) -> None:
    sim.post_faults({"venue": venue, "ban": {"count": 1}})
    banned, limited = sim.get(PATHS[venue]), None
    sim.post_faults({"venue": venue, "rate_limit": {"count": 1, "retry_after": 120}})
    limited = sim.get(PATHS[venue])
    assert (banned.status, banned.body) == (limited.status, limited.body)


def test_binance_geo_block_is_the_real_451(sim: Sim) -> None:
    sim.post_faults({"venue": "binance", "geo_block": {"count": 1}})
    blocked = sim.get(BINANCE)
    assert blocked.status == 451
    assert json.loads(blocked.body) == fixture_json("binance_451_restricted_location.json")


@pytest.mark.parametrize("venue", ["coinbase", "kraken"])
def test_other_geo_blocks_are_a_cdn_page(sim: Sim, venue: str) -> None:
    sim.post_faults({"venue": venue, "geo_block": {}})
    blocked = sim.get(PATHS[venue])
    assert (blocked.status, blocked.content_type) == (403, "text/html")


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
def test_html_instead_of_the_api(sim: Sim, venue: str) -> None:
    sim.post_faults({"venue": venue, "html": {"count": 1, "status": 200}})
    page = sim.get(PATHS[venue])
    assert (page.status, page.content_type) == (200, "text/html")
    assert page.body.startswith(b"<!DOCTYPE html>")
    assert b"SIMULATED" in page.body


def test_a_bomb_is_small_on_the_wire_and_huge_inflated(sim: Sim) -> None:
    sim.post_faults({"venue": "kraken", "bomb": {"count": 1, "inflated_bytes": 8_000_000}})
    bomb = sim.get(KRAKEN)
    assert bomb.status == 200
    assert bomb.header("Content-Encoding") == "gzip"
    assert len(bomb.body) < 20_000
    assert len(gzip.decompress(bomb.body)) == 8_000_000


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
def test_tamper_set_writes_a_literal_verbatim_in_the_venues_row(sim: Sim, venue: str) -> None:
    sim.clock.now = FORMING + 30
    sim.post_faults(
        {
            "venue": venue,
            "tamper": {"op": "set", "minute": NEWEST_CLOSED, "literal": "NaN", "count": 1},
        }
    )
    body = sim.get(PATHS[venue]).body
    assert body.count(b"NaN") == 1
    rows = rows_of(venue, body)  # Python's parser takes NaN; that is the point of the attack
    time_unit = 1000 if venue == "binance" else 1
    [hit] = [row for row in rows if row[0] == NEWEST_CLOSED * time_unit]
    assert hit[4] != hit[4]  # NaN, in the close column (index 4 in every venue's row)
    assert b"NaN" not in sim.get(PATHS[venue]).body  # count 1: the next answer is honest


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
def test_tamper_row_operations(sim: Sim, venue: str) -> None:
    sim.clock.now = FORMING + 30
    honest = rows_of(venue, sim.get(PATHS[venue]).body)
    unit = 1000 if venue == "binance" else 1

    def tampered(op: dict[str, object]) -> list[list[object]]:
        sim.post_faults({"venue": venue, "tamper": {**op, "count": 1}})
        return rows_of(venue, sim.get(PATHS[venue]).body)

    assert tampered({"op": "reverse"}) == honest[::-1]
    doubled = tampered({"op": "duplicate"})
    assert [row[0] for row in doubled] == [row[0] for row in honest for _ in (1, 2)]
    assert doubled[0][4] != doubled[1][4]  # two different candles for one minute
    shifted = tampered({"op": "shift", "minutes": 60})
    assert [row[0] for row in shifted] == [int(row[0]) + 3600 * unit for row in honest]
    dropped = tampered({"op": "drop", "field": "close"})
    assert all(len(row) == len(honest[0]) - 1 for row in dropped)
    typed = tampered({"op": "set", "field": "time", "value": "soon"})
    assert {row[0] for row in typed} == {"soon"}


def test_lag_withholds_the_newest_closed_minutes_on_any_venue(sim: Sim) -> None:
    sim.clock.now = FORMING + 1
    sim.post_faults({"venue": "binance", "lag": {"seconds": 90}})
    minutes = [row[0] // 1000 for row in sim.get_json(BINANCE)]
    assert minutes == [NEWEST_CLOSED - 120, NEWEST_CLOSED - 60, FORMING][-len(minutes) :]
    assert NEWEST_CLOSED not in minutes
    sim.post_faults({"venue": "binance", "lag": None})
    assert NEWEST_CLOSED in [row[0] // 1000 for row in sim.get_json(BINANCE)]


def test_clock_skew_moves_the_date_header_only(sim: Sim) -> None:
    honest = sim.get(KRAKEN)
    sim.post_faults({"venue": "kraken", "clock_skew": {"seconds": -7200}})
    skewed = sim.get(KRAKEN)
    date = parsedate_to_datetime(skewed.header("Date") or "").timestamp()
    assert date == pytest.approx(NOW - 7200, abs=1)
    assert skewed.body == honest.body
    assert sim.get_json("/_sim/faults")["faults"]["kraken"]["clock_skew"] == {"seconds": -7200.0}


def test_every_answer_says_simulated_and_has_a_date(sim: Sim) -> None:
    for target in (BINANCE, COINBASE, KRAKEN, "/_sim/health", "/nope", "/api/v3/time"):
        answer = sim.get(target)
        assert answer.header("X-Oracle-Simulated") == "1", target
        assert answer.header("Date"), target


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"venue": "kraken", "tamper": {"op": "explode"}}, "tamper.op"),
        ({"venue": "kraken", "tamper": {"op": "set"}}, "value or a literal"),
        ({"venue": "kraken", "tamper": {"op": "set", "field": "volume", "value": 1}}, "field"),
        ({"venue": "kraken", "tamper": {"op": "shift"}}, "minutes"),
        ({"venue": "kraken", "tamper": {"op": "set", "literal": "x" * 5000}}, "literal"),
        ({"venue": "kraken", "bomb": {"inflated_bytes": 0}}, "inflated_bytes"),
        ({"venue": "kraken", "drip": {"interval_seconds": 0}}, "interval_seconds"),
        ({"venue": "kraken", "lag": {"seconds": -1}}, "lag.seconds"),
        ({"venue": "kraken", "clock_skew": {"minutes": 5}}, "clock_skew"),
        ({"venue": "kraken", "html": {"status": 99}}, "html.status"),
        ({"venue": "kraken", "ban": {"retry_after": -5}}, "retry_after"),
        ({"venue": "kraken", "ban": {"retry_after": True}}, "retry_after"),
    ],
)
def test_bad_hostile_faults_are_refused_with_the_field_named(
    payload: dict[str, object], message: str
) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_fault_request(payload, NOW)


def test_the_transport_waits_through_its_sleep_and_drips() -> None:
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    app = SimApp(SimConfig(), clock=lambda: NOW)
    app.faults.apply(
        parse_fault_request(
            {"venue": "kraken", "slow": {"delay_seconds": 7, "count": 1}, "drip": {"count": 1}},
            NOW,
        )
    )
    transport = SimTransport(app, sleep=nap)

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            response = await client.get(KRAKEN)
            await response.aread()
            return response

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert response.headers["X-Oracle-Simulated"] == "1"
    assert naps[0] == 7
    assert len(naps) == 1 + len(response.content)  # one pause per dripped byte
    assert json.loads(response.content)["error"] == []


def test_the_real_server_drips_one_byte_at_a_time(live_server: SimServer) -> None:
    live_server.app.faults.apply(
        parse_fault_request({"venue": "kraken", "drip": {"interval_seconds": 0.02}}, time.time())
    )
    url = f"http://127.0.0.1:{live_server.port}/0/public/OHLC?pair=XBTUSD&since=2000000000"
    started = time.monotonic()
    with httpx.Client(timeout=5) as client, client.stream("GET", url) as answer:
        chunks = list(answer.iter_raw())
    elapsed = time.monotonic() - started
    body = b"".join(chunks)
    # The server's pace is the property: one byte per interval, so the body takes at least
    # (bytes - 1) intervals. A loaded client may read two or three dripped bytes at once.
    assert len(body) > 10
    assert elapsed >= (len(body) - 1) * 0.02 * 0.9
    assert len(chunks) > len(body) // 2


def test_any_fault_is_a_startup_flag() -> None:
    result = CliRunner().invoke(sim_main, ["--fault", "{nope"])
    assert result.exit_code == 2
    assert "--fault" in result.output
    bad = CliRunner().invoke(sim_main, ["--fault", '{"venue":"kraken","tamper":{"op":"x"}}'])
    assert bad.exit_code == 2
    assert "tamper.op" in bad.output


def test_a_new_venue_needs_only_its_module_and_a_registry_entry() -> None:
    sim = make_sim()

    class Toy:
        name = "toy"
        default_lag_seconds = 0.0

        def serves(self, path: str) -> bool:
            return path == "/toy/candles"

        def candles(self, ask: object) -> object:
            return json_response(200, {"toy": True})

        def info(self, path: str, now: float) -> None:
            return None

        def finish(self, response: object, now: float) -> object:
            return response

    sim.app.venues["toy"] = Toy()  # type: ignore[assignment]
    sim.app.faults._venues["toy"] = sim.app.faults._venues["kraken"]
    answer = sim.get("/toy/candles")
    assert json.loads(answer.body) == {"toy": True}
    assert answer.header("X-Oracle-Simulated") == "1"
