"""The USDT/USD pairs: Kraken USDTUSD and Coinbase USDT-USD in their venues' real formats.

Same shape as each venue's BTC answer (Kraken's rows under its own result key `USDTZUSD`, five
decimals; Coinbase's JSON numbers newest first), a seeded rate close to 1 with its own walk, and
untouched by the BTC price faults.
"""

from __future__ import annotations

import json
from decimal import Decimal

from .conftest import FORMING, NEWEST_CLOSED, Sim, make_sim

KRAKEN_USDT = "/0/public/OHLC?pair=USDTUSD&interval=1"
COINBASE_USDT = "/products/USDT-USD/candles?granularity=60"
BINANCE_US_USDT = "/api/v3/klines?symbol=USDTUSD&interval=1m&limit=5"


def test_kraken_usdtusd_answers_under_its_own_result_key(sim: Sim) -> None:
    answer = sim.get_json(KRAKEN_USDT)
    assert answer["error"] == []
    assert set(answer["result"]) == {"USDTZUSD", "last"}
    rows = answer["result"]["USDTZUSD"]
    assert len(rows) == 720
    assert rows[-1][0] == FORMING  # the last row is forming, as for every Kraken pair
    for row in rows:
        assert [type(value) for value in row] == [int, str, str, str, str, str, str, int]
        assert all(len(row[i].split(".")[1]) == 5 for i in (1, 2, 3, 4))  # 0.99987
        assert Decimal(row[3]) <= Decimal(row[4]) <= Decimal(row[2])
    closed = rows[-2]
    assert (
        closed[4]
        == sim.get_json(f"/_sim/close?venue=kraken&asset=USDT&minute={NEWEST_CLOSED}")["close"]
    )
    # Kraken's other names for the pair answer the same.
    assert sim.get_json("/0/public/OHLC?pair=USDT/USD&interval=1") == answer


def test_coinbase_usdt_usd_is_numbers_newest_first(sim: Sim) -> None:
    sim.clock.now = FORMING + 30  # past the publication lag
    body = sim.get(COINBASE_USDT).body.decode()
    rows = json.loads(body, parse_float=Decimal)
    assert '"' not in body
    assert rows[0][0] == FORMING
    assert [row[0] for row in rows] == sorted((row[0] for row in rows), reverse=True)
    low, high, _open, close = rows[1][1:5]
    assert low <= close <= high
    assert (
        str(close)
        == sim.get_json(f"/_sim/close?venue=coinbase&asset=USDT&minute={NEWEST_CLOSED}")["close"]
    )


def test_binance_us_usdtusd_is_binances_kline_format(sim: Sim) -> None:
    rows = sim.get_json(BINANCE_US_USDT)
    assert len(rows) == 5
    assert all(len(row) == 12 and len(row[4].split(".")[1]) == 8 for row in rows)


def test_the_rate_stays_close_to_one_and_moves(sim: Sim) -> None:
    for venue in ("kraken", "coinbase"):
        closes = [
            Decimal(sim.get_json(f"/_sim/close?venue={venue}&asset=USDT&minute={minute}")["close"])
            for minute in range(NEWEST_CLOSED - 24 * 3600, NEWEST_CLOSED, 600)
        ]
        assert all(Decimal("0.995") < close < Decimal("1.005") for close in closes)
        assert len(set(closes)) > 20  # a walk, not a constant


def test_the_rate_is_seeded_and_not_the_btc_walk() -> None:
    first, again, other = make_sim(seed=9), make_sim(seed=9), make_sim(seed=10)
    url = f"/_sim/close?venue=kraken&asset=USDT&minute={NEWEST_CLOSED}"
    assert first.get_json(url) == again.get_json(url)
    assert first.get_json(url)["close"] != other.get_json(url)["close"]


def test_btc_price_faults_leave_the_rate_alone(sim: Sim) -> None:
    url = f"/_sim/close?venue=kraken&asset=USDT&minute={FORMING + 60}"
    before = sim.get_json(url)["close"]
    sim.post_faults({"venue": "kraken", "jump": {"percent": 50}, "freeze": True})
    assert sim.get_json(url)["close"] == before


def test_a_venue_without_a_usdt_pair_says_so(sim: Sim) -> None:
    answer = sim.get(f"/_sim/close?venue=kraken&asset=ETH&minute={NEWEST_CLOSED}")
    assert answer.status == 400
    assert "no ETH/USD pair" in json.loads(answer.body)["error"]
