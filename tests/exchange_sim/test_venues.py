"""Each venue answers in its real wire format, with its real quirks and its real error bodies."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

from .conftest import FORMING, NEWEST_CLOSED, NOW, Sim, fixture_json

BINANCE = "/api/v3/klines?symbol=BTCUSDT&interval=1m"
COINBASE = "/products/BTC-USD/candles?granularity=60"
KRAKEN = "/0/public/OHLC?pair=XBTUSD&interval=1"


def _types(row: list[Any]) -> list[type]:
    return [type(value) for value in row]


def _coinbase_types(row: list[Any]) -> list[str]:
    # Coinbase sends every field as a JSON number; integral prices may come without a fraction.
    return ["int" if index == 0 else "number" for index, _ in enumerate(row)]


# --- Binance -----------------------------------------------------------------------------------


def test_binance_rows_have_the_real_shape_oldest_first_with_forming_last(sim: Sim) -> None:
    reference = fixture_json("binance_klines_ok.json")
    rows = sim.get_json(BINANCE + "&limit=5")

    assert len(rows) == 5
    assert [_types(row) for row in rows] == [_types(row) for row in reference]
    assert [row[0] for row in rows] == [(FORMING - 60 * k) * 1000 for k in range(4, -1, -1)]
    assert rows == sorted(rows, key=lambda row: row[0])
    for row in rows:
        assert row[6] == row[0] + 59_999  # closeTime
        assert all(len(row[i].split(".")[1]) == 8 for i in (1, 2, 3, 4, 5, 7, 9, 10))
        low, high = Decimal(row[3]), Decimal(row[2])
        assert low <= Decimal(row[1]) <= high
        assert low <= Decimal(row[4]) <= high
    assert rows[-1][0] == FORMING * 1000  # the forming minute is the last row


def test_binance_forming_close_is_not_the_final_close(sim: Sim) -> None:
    forming_row = sim.get_json(BINANCE + "&limit=2")[-1]
    final = sim.close("binance", FORMING)

    assert Decimal(forming_row[4]) != Decimal(final)
    sim.clock.now = FORMING + 60.5  # once the minute has closed, the row shows the final close
    closed_row = sim.get_json(BINANCE + "&limit=2")[0]
    assert closed_row[0] == FORMING * 1000
    assert Decimal(closed_row[4]) == Decimal(final)


def test_binance_closed_rows_match_the_control_close(sim: Sim) -> None:
    rows = sim.get_json(BINANCE + "&limit=10")
    for row in rows[:-1]:
        assert Decimal(row[4]) == Decimal(sim.close("binance", row[0] // 1000))
    # Each candle opens where the previous one closed.
    for previous, current in itertools.pairwise(rows):
        assert current[1] == previous[4]


def test_binance_limit_default_and_cap(sim: Sim) -> None:
    assert len(sim.get_json(BINANCE)) == 500
    assert len(sim.get_json(BINANCE + "&limit=5000")) == 1000


def test_binance_start_and_end_time_select_rows_like_the_real_api(sim: Sim) -> None:
    start_ms = (NEWEST_CLOSED - 600) * 1000 + 1  # not on a minute: first row is the next minute
    rows = sim.get_json(BINANCE + f"&startTime={start_ms}&limit=3")
    assert [row[0] // 1000 for row in rows] == [NEWEST_CLOSED - 540 + 60 * k for k in range(3)]

    end_ms = (NEWEST_CLOSED - 120) * 1000 + 30_000
    rows = sim.get_json(BINANCE + f"&endTime={end_ms}&limit=2")
    assert [row[0] // 1000 for row in rows] == [NEWEST_CLOSED - 180, NEWEST_CLOSED - 120]

    rows = sim.get_json(
        BINANCE + f"&startTime={NEWEST_CLOSED * 1000}&endTime={NEWEST_CLOSED * 1000}"
    )
    assert [row[0] // 1000 for row in rows] == [NEWEST_CLOSED]

    rows = sim.get_json(BINANCE + f"&startTime={(FORMING + 600) * 1000}")
    assert rows == []  # nothing from the future


def test_binance_errors_are_the_real_bodies(sim: Sim) -> None:
    bad_symbol = sim.get("/api/v3/klines?symbol=BTCUSDX&interval=1m")
    assert bad_symbol.status == 400
    assert json.loads(bad_symbol.body) == fixture_json("binance_error_invalid_symbol.json")

    bad_interval = sim.get("/api/v3/klines?symbol=BTCUSDT&interval=1min")
    assert bad_interval.status == 400
    assert json.loads(bad_interval.body) == fixture_json("binance_error_invalid_interval.json")

    missing = sim.get("/api/v3/klines?interval=1m")
    assert missing.status == 400
    assert json.loads(missing.body)["code"] == -1102

    bad_limit = sim.get(BINANCE + "&limit=abc")
    assert (bad_limit.status, json.loads(bad_limit.body)["code"]) == (400, -1100)

    reversed_range = sim.get(BINANCE + "&startTime=2000&endTime=1000")
    assert json.loads(reversed_range.body)["code"] == -1023


def test_binance_reports_used_weight_and_server_time(sim: Sim) -> None:
    first = sim.get(BINANCE + "&limit=1")
    second = sim.get(BINANCE + "&limit=1")
    assert dict(first.headers)["x-mbx-used-weight-1m"] == "2"
    assert dict(second.headers)["x-mbx-used-weight-1m"] == "4"
    assert sim.get_json("/api/v3/time") == {"serverTime": int(NOW * 1000)}


# --- Coinbase ----------------------------------------------------------------------------------


def test_coinbase_rows_have_the_real_shape_newest_first_with_forming_first(sim: Sim) -> None:
    reference = fixture_json("coinbase_candles_ok.json")
    sim.clock.now = NOW + 30  # past the lag, so the newest closed minute is published
    rows = sim.get_json(COINBASE + "&start=2025-01-20T14:31:00Z&end=2025-01-20T14:35:00Z")

    assert [row[0] for row in rows] == [row[0] for row in reference]
    assert [_coinbase_types(row) for row in rows] == [_coinbase_types(row) for row in reference]
    for row in rows:
        assert isinstance(row[0], int)
        assert all(isinstance(value, int | float) for value in row[1:])
        low, high, open_, close = (Decimal(str(v)) for v in row[1:5])
        assert (
            low <= min(open_, close) <= max(open_, close) <= high
        )  # [time, low, high, open, close]
    forming = rows[0]
    assert forming[0] == FORMING
    assert Decimal(str(forming[4])) != Decimal(sim.close("coinbase", FORMING))
    assert Decimal(str(rows[1][4])) == Decimal(sim.close("coinbase", NEWEST_CLOSED))


def test_coinbase_prices_are_json_numbers_that_keep_their_cents(sim: Sim) -> None:
    sim.clock.now = NOW + 30
    body = sim.get(COINBASE).body.decode()
    rows = json.loads(body, parse_float=Decimal)
    closed = rows[1]
    assert closed[4] == Decimal(sim.close("coinbase", closed[0]))
    assert '"' not in body


def test_coinbase_lag_hides_the_just_closed_minute_until_it_has_passed() -> None:
    from .conftest import make_sim

    sim = make_sim(coinbase_lag_seconds=7)
    sim.clock.now = FORMING + 3  # 14:35:03: 14:34 closed 3 s ago, the lag is 7 s
    times = [row[0] for row in sim.get_json(COINBASE)]
    assert times[0] == FORMING  # the forming minute is already there...
    assert NEWEST_CLOSED not in times  # ...but the minute that just closed is not
    assert times[1] == NEWEST_CLOSED - 60

    sim.clock.now = FORMING + 7
    times = [row[0] for row in sim.get_json(COINBASE)]
    assert times[:2] == [FORMING, NEWEST_CLOSED]


def test_coinbase_without_lag_publishes_at_the_close() -> None:
    from .conftest import make_sim

    sim = make_sim(coinbase_lag_seconds=0)
    sim.clock.now = FORMING
    times = [row[0] for row in sim.get_json(COINBASE)]
    assert times[:2] == [FORMING, NEWEST_CLOSED]
    assert len(times) == 300


def test_coinbase_errors_are_the_real_bodies(sim: Sim) -> None:
    no_agent = sim.get(COINBASE, headers={})
    assert no_agent.status == 400
    assert json.loads(no_agent.body) == fixture_json("coinbase_error_user_agent.json")

    granularity = sim.get("/products/BTC-USD/candles?granularity=120")
    assert granularity.status == 400
    assert json.loads(granularity.body) == fixture_json(
        "coinbase_error_unsupported_granularity.json"
    )

    too_many = sim.get(COINBASE + "&start=2025-01-20T00:00:00Z&end=2025-01-20T14:35:00Z")
    assert too_many.status == 400
    assert json.loads(too_many.body) == fixture_json("coinbase_error.json")

    unknown = sim.get("/products/BTC-USDX/candles?granularity=60")
    assert unknown.status == 404
    assert json.loads(unknown.body) == fixture_json("coinbase_error_not_found.json")


def test_coinbase_accepts_unix_second_bounds(sim: Sim) -> None:
    sim.clock.now = NOW + 30
    rows = sim.get_json(COINBASE + f"&start={NEWEST_CLOSED - 60}&end={NEWEST_CLOSED}")
    assert [row[0] for row in rows] == [NEWEST_CLOSED, NEWEST_CLOSED - 60]


# --- Kraken ------------------------------------------------------------------------------------


def test_kraken_answer_has_the_real_shape_with_forming_last(sim: Sim) -> None:
    reference = fixture_json("kraken_ohlc_ok.json")
    answer = sim.get_json(KRAKEN)

    assert answer.keys() == reference.keys()
    assert answer["error"] == []
    assert answer["result"].keys() == reference["result"].keys()  # XXBTZUSD, not what was sent
    rows = answer["result"]["XXBTZUSD"]
    reference_types = [_types(row) for row in reference["result"]["XXBTZUSD"]]
    assert {tuple(_types(row)) for row in rows} == {tuple(t) for t in reference_types}
    assert len(rows) == 720
    assert [row[0] for row in rows] == list(range(FORMING - 719 * 60, FORMING + 1, 60))
    assert answer["result"]["last"] == NEWEST_CLOSED
    assert all(len(row[4].split(".")[1]) == 1 for row in rows)  # XBTUSD quotes tenths

    forming = rows[-1]
    assert forming[0] == FORMING
    assert Decimal(forming[4]) != Decimal(sim.close("kraken", FORMING))
    assert Decimal(rows[-2][4]) == Decimal(sim.close("kraken", NEWEST_CLOSED))


def test_kraken_since_returns_newer_rows_and_always_the_forming_one(sim: Sim) -> None:
    rows = sim.get_json(KRAKEN + f"&since={NEWEST_CLOSED - 120}")["result"]["XXBTZUSD"]
    assert [row[0] for row in rows] == [NEWEST_CLOSED - 60, NEWEST_CLOSED, FORMING]

    rows = sim.get_json(KRAKEN + f"&since={int(NOW)}")["result"]["XXBTZUSD"]
    assert [row[0] for row in rows] == [FORMING]


def test_kraken_errors_come_in_http_200_bodies(sim: Sim) -> None:
    unknown = sim.get("/0/public/OHLC?pair=XBTUSDX&interval=1")
    assert unknown.status == 200
    assert json.loads(unknown.body) == fixture_json("kraken_error_unknown_pair.json")

    bad_interval = sim.get("/0/public/OHLC?pair=XBTUSD&interval=2")
    assert bad_interval.status == 200
    assert json.loads(bad_interval.body) == fixture_json("kraken_error_invalid_arguments.json")


# --- all venues --------------------------------------------------------------------------------


def test_the_three_venues_differ_a_little_but_not_much(sim: Sim) -> None:
    for minute in range(NEWEST_CLOSED - 3600, NEWEST_CLOSED + 1, 600):
        answer = sim.get_json(f"/_sim/close?minute={minute}")
        closes = [Decimal(close) for close in answer["closes"].values()]
        assert len(set(closes)) == 3
        assert max(closes) - min(closes) < Decimal("0.002") * min(closes)
        assert Decimal(answer["mean"]) == sum(closes) / 3


def test_unknown_paths_and_methods_are_refused(sim: Sim) -> None:
    assert sim.get("/api/v3/depth").status == 404
    assert sim.app.handle("POST", BINANCE, {}).status == 405
