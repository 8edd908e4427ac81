"""The oracle node's own adapters read the simulator's answers and get the simulator's closes.

This is the contract the simulate mode and the end-to-end test rest on: the request each node
adapter builds is understood here, and the candle it parses is the close `/_sim/close` reports.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

import pytest

from oracle_node.exchanges import get_adapter

from .conftest import FORMING, NEWEST_CLOSED, Sim, make_sim

SYMBOLS = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "XBTUSD"}


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
def test_node_adapter_parses_the_closed_minute_the_simulator_serves(venue: str) -> None:
    sim: Sim = make_sim(seed=3)
    sim.clock.now = FORMING + 20  # past the Coinbase lag
    adapter = get_adapter(venue)
    request = adapter.request(SYMBOLS[venue], NEWEST_CLOSED)
    answer = sim.get(f"{request.path}?{urlencode(request.params)}")
    assert answer.status == 200

    candle = adapter.parse(answer.body, SYMBOLS[venue], NEWEST_CLOSED, sim.clock.now)

    assert candle.minute == NEWEST_CLOSED
    assert candle.close == Decimal(sim.close(venue, NEWEST_CLOSED))
