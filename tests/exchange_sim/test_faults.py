"""Every injected fault shows up the way the real venue would show it, and only where aimed."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from exchange_sim.faults import FaultBook, FaultSpecError, parse_fault_request

from .conftest import FORMING, NEWEST_CLOSED, NOW, Sim, fixture_json, make_sim

BINANCE = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3"
COINBASE = "/products/BTC-USD/candles?granularity=60"
KRAKEN = "/0/public/OHLC?pair=XBTUSD&interval=1&since=" + str(NEWEST_CLOSED - 120)
PATHS = {"binance": BINANCE, "coinbase": COINBASE, "kraken": KRAKEN}


def test_rate_limit_binance_and_coinbase_answer_429_with_retry_after(sim: Sim) -> None:
    assert (
        sim.post_faults(
            {"venues": ["binance", "coinbase"], "rate_limit": {"count": 2, "retry_after": 7}}
        ).status
        == 200
    )

    for _ in range(2):
        binance = sim.get(BINANCE)
        assert binance.status == 429
        assert dict(binance.headers)["Retry-After"] == "7"
        assert json.loads(binance.body) == fixture_json("binance_429.json")
        coinbase = sim.get(COINBASE)
        assert coinbase.status == 429
        assert dict(coinbase.headers)["Retry-After"] == "7"
        assert json.loads(coinbase.body) == fixture_json("coinbase_429.json")
    assert sim.get(BINANCE).status == 200  # the burst is over
    assert sim.get(COINBASE).status == 200
    assert sim.get(KRAKEN).status == 200  # never aimed at Kraken


def test_rate_limit_kraken_answers_http_200_with_an_eapi_error(sim: Sim) -> None:
    sim.post_faults({"venue": "kraken", "rate_limit": {}})
    for _ in range(3):  # no count: until cleared
        answer = sim.get(KRAKEN)
        assert answer.status == 200
        assert json.loads(answer.body) == fixture_json("kraken_error_rate_limit_eapi.json")
    assert sim.app.handle("DELETE", "/_sim/faults?venue=kraken", {}).status == 200
    assert json.loads(sim.get(KRAKEN).body)["error"] == []


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
def test_http_5xx_burst_of_n_answers_then_recovers(sim: Sim, venue: str) -> None:
    sim.post_faults({"venue": venue, "http_5xx": {"count": 3, "status": 502}})
    statuses = [sim.get(PATHS[venue]).status for _ in range(4)]
    assert statuses == [502, 502, 502, 200]


def test_kraken_5xx_is_a_cdn_page_not_a_kraken_body(sim: Sim) -> None:
    sim.post_faults({"venue": "kraken", "http_5xx": {"count": 1}})
    answer = sim.get(KRAKEN)
    assert answer.status == 503
    assert answer.content_type == "text/html"


def test_slow_delays_the_answer_and_nothing_else(sim: Sim) -> None:
    sim.post_faults({"venue": "coinbase", "slow": {"delay_seconds": 2.5, "count": 2}})
    answers = [sim.get(COINBASE) for _ in range(3)]
    sim.get(BINANCE)
    assert sim.sleep.delays == [2.5, 2.5]
    assert all(answer.status == 200 for answer in answers)


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
def test_malformed_answers_200_with_a_body_that_is_not_json(sim: Sim, venue: str) -> None:
    sim.post_faults({"venue": venue, "malformed": {"count": 1}})
    broken = sim.get(PATHS[venue])
    assert broken.status == 200
    assert broken.content_type == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.body)
    json.loads(sim.get(PATHS[venue]).body)  # next answer is fine again


def test_freeze_stops_the_price_from_the_current_minute_on(sim: Sim) -> None:
    before = {m: sim.close("kraken", m) for m in (NEWEST_CLOSED - 60, NEWEST_CLOSED)}
    sim.post_faults({"venue": "kraken", "freeze": True})

    for minutes_later in range(4):
        minute = FORMING + 60 * minutes_later
        assert sim.close("kraken", minute) == before[NEWEST_CLOSED]
    assert sim.close("kraken", NEWEST_CLOSED - 60) == before[NEWEST_CLOSED - 60]  # history kept
    sim.clock.now = FORMING + 185
    rows = sim.get_json(KRAKEN)["result"]["XXBTZUSD"]
    assert {row[4] for row in rows if row[0] >= FORMING} == {before[NEWEST_CLOSED]}
    # Other venues keep moving.
    assert len({sim.close("binance", FORMING + 60 * k) for k in range(4)}) > 1

    sim.post_faults({"venue": "kraken", "freeze": False})
    assert sim.close("kraken", FORMING + 120) != before[NEWEST_CLOSED]


def test_freezing_twice_keeps_the_first_frozen_price(sim: Sim) -> None:
    sim.post_faults({"venue": "binance", "freeze": True})
    frozen = sim.close("binance", FORMING)
    sim.clock.now = NOW + 600
    sim.post_faults({"venue": "binance", "freeze": True})
    assert sim.close("binance", FORMING + 600) == frozen


def test_jump_moves_the_price_by_x_percent_from_now_on(sim: Sim) -> None:
    base = {m: Decimal(sim.close("coinbase", m)) for m in (NEWEST_CLOSED, FORMING, FORMING + 60)}
    answer = sim.post_faults({"venue": "coinbase", "jump": {"percent": 5}})
    assert answer.status == 200

    assert Decimal(sim.close("coinbase", NEWEST_CLOSED)) == base[NEWEST_CLOSED]  # past untouched
    for minute in (FORMING, FORMING + 60):
        expected = (base[minute] * Decimal("1.05")).quantize(Decimal("0.01"))
        assert abs(Decimal(sim.close("coinbase", minute)) - expected) <= Decimal("0.01")
    sim.clock.now = FORMING + 60 + 10  # closed, and past the Coinbase lag
    rows = sim.get_json(COINBASE)
    served = next(row for row in rows if row[0] == FORMING)
    assert Decimal(str(served[4])) == Decimal(sim.close("coinbase", FORMING))


def test_startup_faults_from_config_apply_before_the_first_request() -> None:
    sim = make_sim(startup_faults=({"venue": "all", "http_5xx": {"count": 1}},))
    assert [sim.get(path).status for path in PATHS.values()] == [503, 503, 503]
    assert [sim.get(path).status for path in PATHS.values()] == [200, 200, 200]


def test_control_endpoints_are_never_faulted(sim: Sim) -> None:
    sim.post_faults({"venue": "all", "http_5xx": {}, "malformed": {}, "rate_limit": {}})
    assert sim.get("/_sim/health").status == 200
    assert sim.get(f"/_sim/close?venue=binance&minute={NEWEST_CLOSED}").status == 200
    faults = sim.get_json("/_sim/faults")["faults"]
    assert faults["kraken"]["rate_limit"] == {"count": None, "retry_after": 1}
    sim.app.handle("DELETE", "/_sim/faults", {})
    assert sim.get_json("/_sim/faults")["faults"] == {"binance": {}, "coinbase": {}, "kraken": {}}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "JSON object"),
        ({"rate_limit": {}}, "venue"),
        ({"venue": "bitstamp", "freeze": True}, "unknown 'bitstamp'"),
        ({"venue": "binance"}, "no fault"),
        ({"venue": "binance", "explode": True}, "unknown key"),
        ({"venue": "binance", "http_5xx": {"status": 404}}, "500 to 599"),
        ({"venue": "binance", "rate_limit": {"count": 0}}, "positive integer"),
        ({"venue": "binance", "slow": {}}, "delay_seconds"),
        ({"venue": "binance", "jump": {"percent": "lots"}}, "jump.percent"),
        ({"venue": "binance", "jump": {"percent": 1, "from_minute": 61}}, "multiple of 60"),
        ({"venue": "binance", "freeze": "yes"}, "freeze"),
    ],
)
def test_bad_fault_requests_are_refused_with_the_field_named(
    sim: Sim, payload: object, message: str
) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_fault_request(payload, NOW)
    answer = sim.post_faults(payload)
    assert answer.status == 400
    assert message in json.loads(answer.body)["error"]


def test_post_with_a_body_that_is_not_json_is_refused(sim: Sim) -> None:
    answer = sim.app.handle("POST", "/_sim/faults", {}, b"{nope")
    assert answer.status == 400


def test_only_the_fault_that_fired_is_counted_down() -> None:
    book = FaultBook()
    book.apply(
        parse_fault_request(
            {"venue": "binance", "rate_limit": {"count": 1}, "http_5xx": {"count": 1}}, NOW
        )
    )
    assert book.take("binance").failure == "rate_limit"
    assert book.take("binance").failure == "http_5xx"
    assert book.take("binance").failure is None
