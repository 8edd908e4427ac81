"""The pure conversions: exact decimal strings, statuses, derived nodes (no I/O, time passed in)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from common.proto import oracle_pb2
from explorer import views
from tests.explorer.fake_aggregator import Excluded, make_round, price_from_round

MINUTE = 1_796_220_000
PRICE_KEYS = {"price", "usd_price", "confidence"}


def _price_values(document: Any) -> list[Any]:
    found = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key in PRICE_KEYS:
                found.append(value)
            found.extend(_price_values(value))
    elif isinstance(document, list):
        for item in document:
            found.extend(_price_values(item))
    return found


def test_e8_text_is_exact_with_eight_decimals() -> None:
    assert views.e8_text(10637512345678) == "106375.12345678"
    assert views.e8_text(5) == "0.00000005"
    assert views.e8_text(100_000 * 10**8) == "100000.00000000"
    assert views.to_e8("106375.12345678") == 10637512345678


def test_decimal_text_prefers_the_e8_field_and_flags_a_double() -> None:
    assert views.decimal_text(10637512345678, 1.5) == ("106375.12345678", True)
    # An older aggregator sends only the double: rounded half to even, and said to be inexact.
    assert views.decimal_text(0, 106375.125) == ("106375.12500000", False)
    assert views.decimal_text(0, 0.1 + 0.2) == ("0.30000000", False)
    assert views.decimal_text(0, float("nan")) == ("0.00000000", True)


def test_cents_rounds_half_up_on_the_exact_string() -> None:
    assert views.cents_text("106375.12500000") == "106,375.13"
    assert views.cents_text("106375.12499999") == "106,375.12"
    assert views.cents_text("0.00400000") == "0.00"
    assert views.cents_text(None) == "—"


def test_deviation_is_computed_exactly_from_the_strings() -> None:
    assert views.deviation_from("101000.00000000", "100000.00000000") == "0.01000000"
    assert views.deviation_from("99000", "100000") == "-0.01000000"
    assert views.deviation_from("1", None) is None
    assert views.percent_text("0.01000000") == "+1.0000 %"


def test_price_view_serves_prices_as_strings_never_floats() -> None:
    round_ = make_round(
        MINUTE,
        {"binance": Decimal("100001.23"), "coinbase": Decimal("99999.99")},
        excluded={"kraken": Excluded(Decimal("105000.5"), "deviation", "5 % off")},
    )
    document = views.price_view(price_from_round(round_, MINUTE + 75), MINUTE + 75)
    assert document["price"] == "100000.61000000"
    assert document["confidence"] == "0.62000000"
    assert document["status"] == "OK"
    assert document["method"] == "mean"
    assert document["age_seconds"] == 15
    assert document["simulated"] is True
    assert [item["exchange"] for item in document["inputs"]] == ["binance", "coinbase"]
    assert document["inputs"][0]["deviation"] == "0.00000620"
    assert document["excluded"][0]["excluded_reason"] == "deviation"
    values = _price_values(document)
    assert values
    assert all(value is None or isinstance(value, str) for value in values)
    assert "e+" not in json.dumps(document)


def test_an_aggregator_without_status_gets_ok_only_with_a_price() -> None:
    with_price = oracle_pb2.GetPriceResponse(success=True, aggregated_price=100.5)
    without = oracle_pb2.GetPriceResponse(success=False, message="no aggregate")
    assert views.price_view(with_price, 0)["status"] == "OK"
    assert views.price_view(with_price, 0)["exact"] is False
    assert views.price_view(with_price, 0)["confidence"] is None  # not computed: not "± 0"
    assert views.price_view(without, 0)["status"] == "UNKNOWN"
    assert views.price_view(without, 0)["price"] is None


def test_round_view_keeps_reasons_and_drops_observations_without_detail() -> None:
    round_ = make_round(
        MINUTE,
        {"coinbase": Decimal(100)},
        excluded={"kraken": Excluded(Decimal(90), "stale", "minute behind")},
    )
    full = views.round_view(round_)
    short = views.round_view(round_, detail=False)
    assert full["status"] == "DEGRADED"
    assert full["inputs"][0]["observations"][0]["node_id"] == "oracle-node-2"
    assert full["inputs"][0]["observations"][0]["signed"] is True
    assert "observations" not in short["inputs"][0]
    assert short["excluded"][0]["excluded_reason"] == "stale"
    assert short["excluded"][0]["excluded_detail"] == "minute behind"
    assert short["close_reason"] == "deadline"


def test_unknown_round_has_no_price() -> None:
    round_ = make_round(MINUTE, {})
    document = views.round_view(round_)
    assert document["status"] == "UNKNOWN"
    assert document["price"] is None


def test_nodes_from_rounds_takes_each_nodes_latest_observation() -> None:
    older = make_round(MINUTE - 60, {"binance": Decimal(1), "kraken": Decimal(1)})
    newer = make_round(MINUTE, {"binance": Decimal(1)})
    now = MINUTE + 62 + 100  # received at MINUTE+62: binance 100 s ago, kraken 160 s ago
    nodes = views.nodes_from_rounds([newer, older], now, node_timeout=120)
    assert [node["node_id"] for node in nodes] == ["oracle-node-1", "oracle-node-3"]
    binance, kraken = nodes
    assert binance["submissions"] == 2
    assert binance["last_minute"] == MINUTE
    assert binance["active"] is True
    assert kraken["active"] is False
    assert binance["signature_status"] == "verified"


def test_the_explorer_checks_each_node_signature_itself() -> None:
    round_ = make_round(MINUTE, {"coinbase": Decimal("100000.5"), "kraken": Decimal(100001)})
    coinbase = round_.inputs[0].observations[0]
    assert views.signature_check(coinbase, "coinbase", MINUTE, simulated=True) == "verified"
    # The same signature over anything else the record says is refused: price, minute, exchange,
    # simulated flag, node id.
    assert views.signature_check(coinbase, "coinbase", MINUTE, simulated=False) == "invalid"
    assert views.signature_check(coinbase, "coinbase", MINUTE + 60, simulated=True) == "invalid"
    assert views.signature_check(coinbase, "kraken", MINUTE, simulated=True) == "invalid"
    tampered = oracle_pb2.NodeObservation()
    tampered.CopyFrom(coinbase)
    tampered.price_e8 += 1
    assert views.signature_check(tampered, "coinbase", MINUTE, simulated=True) == "invalid"
    tampered.CopyFrom(coinbase)
    tampered.public_key = round_.inputs[1].observations[0].public_key
    assert views.signature_check(tampered, "coinbase", MINUTE, simulated=True) == "invalid"
    tampered.CopyFrom(coinbase)
    tampered.price_e8 = 0  # an aggregator older than price_e8: nothing exact to check
    assert views.signature_check(tampered, "coinbase", MINUTE, simulated=True) == "unverifiable"
    assert (
        views.signature_check(oracle_pb2.NodeObservation(), "coinbase", MINUTE, simulated=True)
        == "unsigned"
    )
    shown = views.round_view(round_)
    assert [obs["signature_check"] for item in shown["inputs"] for obs in item["observations"]] == [
        "verified",
        "verified",
    ]


def test_usdt_handling_is_said() -> None:
    converted = oracle_pb2.GetPriceResponse(
        success=True, aggregated_price_e8=10**13, usdt_converted=True, usdt_usd_rate=0.9998
    )
    at_par = oracle_pb2.GetPriceResponse(success=True, aggregated_price_e8=10**13, usdt_at_par=True)
    assert views.price_view(converted, 0)["usdt"] == {
        "converted": True,
        "rate": "0.9998",
        "at_par": False,
    }
    assert views.price_view(at_par, 0)["usdt"] == {"converted": False, "rate": None, "at_par": True}
