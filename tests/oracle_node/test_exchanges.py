"""The three adapters against real-format bodies: the right minute, never the forming one."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from oracle_node.errors import (
    CandleNotYetAvailableError,
    MalformedResponseError,
    PermanentFetchError,
    RateLimitedError,
    TransientFetchError,
)
from oracle_node.exchanges import ADAPTERS, get_adapter, quote_of
from oracle_node.exchanges.base import pair_of
from tests.oracle_node.fakes import FORMING, NEWEST_CLOSED, SCENARIO_NOW, fixture

binance = get_adapter("binance")
coinbase = get_adapter("coinbase")
kraken = get_adapter("kraken")


def test_registry_knows_the_three_exchanges() -> None:
    assert sorted(ADAPTERS) == ["binance", "coinbase", "kraken"]
    with pytest.raises(KeyError, match="known: binance, coinbase, kraken"):
        get_adapter("bitstamp")


@pytest.mark.parametrize(
    ("symbol", "quote"),
    [("BTCUSDT", "USDT"), ("BTCUSD", "USD"), ("BTC-USD", "USD"), ("XBTUSD", "USD")],
)
def test_quote_follows_the_symbol(symbol: str, quote: str) -> None:
    assert quote_of(symbol) == quote


def test_quote_refuses_other_currencies() -> None:
    with pytest.raises(ValueError, match="BTCEUR"):
        quote_of("BTCEUR")


# --- Binance ---------------------------------------------------------------------------------


def test_binance_closed_minute_is_parsed_exactly() -> None:
    candle = binance.parse(
        fixture("binance_klines_ok.json"), "BTCUSDT", NEWEST_CLOSED, SCENARIO_NOW
    )
    assert candle.minute == NEWEST_CLOSED
    assert candle.close == Decimal("102299.30000000")
    assert (candle.open, candle.high, candle.low) == (
        Decimal("102279.70000000"),
        Decimal("102311.00000000"),
        Decimal("102214.50000000"),
    )
    assert (candle.exchange, candle.symbol, candle.quote) == ("binance", "BTCUSDT", "USDT")


def test_binance_forming_last_row_is_never_returned() -> None:
    with pytest.raises(CandleNotYetAvailableError, match="forming"):
        binance.parse(fixture("binance_klines_ok.json"), "BTCUSDT", FORMING, SCENARIO_NOW)


def test_binance_missing_minute_is_not_replaced_by_an_older_one() -> None:
    with pytest.raises(CandleNotYetAvailableError):
        binance.parse(fixture("binance_klines_ok.json"), "BTCUSDT", FORMING + 60, SCENARIO_NOW)


def test_binance_us_has_the_same_format_and_a_usd_pair() -> None:
    candle = binance.parse(
        fixture("binanceus_klines_ok.json"), "BTCUSD", NEWEST_CLOSED, SCENARIO_NOW
    )
    assert candle.close == Decimal("102289.90000000")
    assert candle.quote == "USD"


def test_binance_docs_example_parses() -> None:
    body = fixture("binance_klines_docs_example.json")
    # The docs' single row is also the last row: only a later row proves it closed.
    with pytest.raises(CandleNotYetAvailableError):
        binance.parse(body, "BTCUSDT", 1499040000, SCENARIO_NOW)


def test_binance_request_is_the_real_path() -> None:
    request = binance.request("BTCUSDT", NEWEST_CLOSED)
    assert request.path == "/api/v3/klines"
    assert request.params["symbol"] == "BTCUSDT"
    assert request.params["interval"] == "1m"


def test_binance_geo_block_suggests_binance_us() -> None:
    message = binance.error_message(451, fixture("binance_451_restricted_location.json"))
    assert "https://api.binance.us" in message
    assert "restricted location" in message


def test_binance_invalid_symbol_message_is_binances_own() -> None:
    assert "Invalid symbol." in binance.error_message(
        400, fixture("binance_error_invalid_symbol.json")
    )


# --- Coinbase --------------------------------------------------------------------------------


def test_coinbase_row_order_low_high_open_close() -> None:
    candle = coinbase.parse(
        fixture("coinbase_candles_ok.json"), "BTC-USD", NEWEST_CLOSED, SCENARIO_NOW
    )
    assert candle.low == Decimal("102203.8")
    assert candle.high == Decimal("102300.3")
    assert candle.open == Decimal("102269.0")
    assert candle.close == Decimal("102288.6")
    assert candle.quote == "USD"


def test_coinbase_numbers_are_decimals_not_floats() -> None:
    candle = coinbase.parse(
        fixture("coinbase_candles_ok.json"), "BTC-USD", NEWEST_CLOSED, SCENARIO_NOW
    )
    assert isinstance(candle.close, Decimal)
    assert str(candle.close) == "102288.6"


def test_coinbase_lagging_minute_is_not_yet_available() -> None:
    with pytest.raises(CandleNotYetAvailableError, match="not published"):
        coinbase.parse(
            fixture("coinbase_candles_lagging.json"), "BTC-USD", NEWEST_CLOSED, SCENARIO_NOW
        )


def test_coinbase_forming_first_row_is_not_yet_available() -> None:
    # Coinbase's first row is the minute still forming, with no flag: only time tells.
    with pytest.raises(CandleNotYetAvailableError, match="still forming"):
        coinbase.parse(fixture("coinbase_candles_ok.json"), "BTC-USD", FORMING, SCENARIO_NOW)
    closed = coinbase.parse(fixture("coinbase_candles_ok.json"), "BTC-USD", FORMING, FORMING + 60)
    assert closed.minute == FORMING


@pytest.mark.parametrize(
    ("venue", "body"),
    [
        ("binance", "binance_klines_ok.json"),
        ("coinbase", "coinbase_candles_ok.json"),
        ("kraken", "kraken_ohlc_ok.json"),
    ],
)
def test_a_minute_is_closed_only_once_exchange_time_reaches_its_end(venue: str, body: str) -> None:
    adapter = get_adapter(venue)
    symbol = adapter.default_symbol
    with pytest.raises(CandleNotYetAvailableError, match="still forming"):
        adapter.parse(fixture(body), symbol, NEWEST_CLOSED, NEWEST_CLOSED + 59.9)
    assert adapter.parse(fixture(body), symbol, NEWEST_CLOSED, NEWEST_CLOSED + 60).close > 0


def test_coinbase_request_has_granularity_60_and_the_product_path() -> None:
    request = coinbase.request("BTC-USD", NEWEST_CLOSED)
    assert request.path == "/products/BTC-USD/candles"
    assert request.params["granularity"] == "60"
    assert request.params["start"] < request.params["end"]


# --- Kraken ----------------------------------------------------------------------------------


def test_kraken_committed_minute_is_parsed() -> None:
    candle = kraken.parse(fixture("kraken_ohlc_ok.json"), "XBTUSD", NEWEST_CLOSED, SCENARIO_NOW)
    assert candle.close == Decimal("102290.7")
    assert candle.low == Decimal("102205.9")
    assert candle.quote == "USD"


def test_kraken_last_row_is_always_forming() -> None:
    # The original node submitted this row: a price that was still moving.
    with pytest.raises(CandleNotYetAvailableError, match="forming"):
        kraken.parse(fixture("kraken_ohlc_ok.json"), "XBTUSD", FORMING, SCENARIO_NOW)


def test_kraken_docs_example_takes_the_pair_key_not_last() -> None:
    candle = kraken.parse(
        fixture("kraken_ohlc_docs_example.json"), "XBTUSD", 1688671260, SCENARIO_NOW
    )
    assert candle.close == Decimal("30300.0")


@pytest.mark.parametrize("name", ["kraken_error_rate_limit_eapi.json", "kraken_rate_limit.json"])
def test_kraken_rate_limit_inside_http_200_is_a_rate_limit(name: str) -> None:
    with pytest.raises(RateLimitedError):
        kraken.parse(fixture(name), "XBTUSD", NEWEST_CLOSED, SCENARIO_NOW)


def test_kraken_unknown_pair_is_permanent() -> None:
    with pytest.raises(PermanentFetchError, match="Unknown asset pair"):
        kraken.parse(
            fixture("kraken_error_unknown_pair.json"), "XBTUSD", NEWEST_CLOSED, SCENARIO_NOW
        )


def test_kraken_service_unavailable_is_transient() -> None:
    with pytest.raises(TransientFetchError, match="EService:Unavailable"):
        kraken.parse(b'{"error":["EService:Unavailable"]}', "XBTUSD", NEWEST_CLOSED, SCENARIO_NOW)


def test_kraken_invalid_json_names_kraken() -> None:
    with pytest.raises(MalformedResponseError, match="Failed to parse Kraken JSON response"):
        kraken.parse(
            b'{"error":[],"result":{"XXBTZUSD":[[17373', "XBTUSD", NEWEST_CLOSED, SCENARIO_NOW
        )


def test_kraken_request_asks_since_before_the_minute() -> None:
    request = kraken.request("XBTUSD", NEWEST_CLOSED)
    assert request.path == "/0/public/OHLC"
    assert request.params["pair"] == "XBTUSD"
    assert request.params["interval"] == "1"
    assert int(request.params["since"]) < NEWEST_CLOSED


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html>", b"", b'{"unexpected": true}', b"[[1, 2]]"],
)
@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
def test_garbage_is_malformed_not_a_price(venue: str, body: bytes) -> None:
    adapter = get_adapter(venue)
    with pytest.raises((MalformedResponseError, CandleNotYetAvailableError)):
        adapter.parse(body, adapter.default_symbol, NEWEST_CLOSED, SCENARIO_NOW)


# --- pairs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "pair"),
    [
        ("BTCUSDT", ("BTC", "USDT")),
        ("XBTUSD", ("BTC", "USD")),
        ("XXBTZUSD", ("BTC", "USD")),
        ("BTC-USD", ("BTC", "USD")),
        ("USDTUSD", ("USDT", "USD")),
        ("USDT-USD", ("USDT", "USD")),
        ("USDTZUSD", ("USDT", "USD")),
    ],
)
def test_pairs_are_read_from_the_venue_symbol(symbol: str, pair: tuple[str, str]) -> None:
    assert pair_of(symbol) == pair


@pytest.mark.parametrize("symbol", ["ETHUSD", "USDTEUR", "BTCUSDC", "", "USD"])
def test_other_pairs_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError, match="symbol"):
        pair_of(symbol)


def test_a_btc_symbol_must_price_btc() -> None:
    with pytest.raises(ValueError, match="not a BTC pair"):
        quote_of("USDTUSD")


# --- hostile bodies that are not any venue's format (the simulator cannot send these) ---------


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
@pytest.mark.parametrize("depth", [40, 5_000, 200_000])
def test_deeply_nested_json_is_refused_cleanly(venue: str, depth: int) -> None:
    adapter = get_adapter(venue)
    body = b"[" * depth + b"]" * depth
    with pytest.raises(MalformedResponseError, match="nested too deeply"):
        adapter.parse(body, adapter.default_symbol, NEWEST_CLOSED, SCENARIO_NOW)


def test_deep_nesting_inside_a_real_looking_answer_is_refused() -> None:
    deep = "[" * 30 + "1" + "]" * 30
    body = f'{{"error":[],"result":{{"XXBTZUSD":[[1737383640,{deep}]],"last":1}}}}'.encode()
    with pytest.raises(MalformedResponseError, match="nested too deeply"):
        kraken.parse(body, "XBTUSD", NEWEST_CLOSED, SCENARIO_NOW)


def test_an_error_body_nested_deeply_still_gives_a_short_message() -> None:
    body = b'{"msg":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    message = binance.error_message(400, body)
    assert len(message) < 300
    assert message.startswith("Binance answered HTTP 400:")


def test_a_flood_of_kraken_errors_is_quoted_briefly() -> None:
    body = json.dumps({"error": ["EGeneral:Invalid arguments:" + "x" * 5000] * 1000}).encode()
    with pytest.raises(PermanentFetchError) as caught:
        kraken.parse(body, "XBTUSD", NEWEST_CLOSED, SCENARIO_NOW)
    assert len(str(caught.value)) < 2000


def test_kraken_error_that_is_not_a_list_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="'error' is not a list"):
        kraken.parse(b'{"error":"EAPI:Rate limit exceeded"}', "XBTUSD", NEWEST_CLOSED, 0)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_refused(constant: str) -> None:
    body = f"[[1737383640000,{constant}]]".encode()
    with pytest.raises(MalformedResponseError, match=f"non-standard JSON constant {constant}"):
        binance.parse(body, "BTCUSDT", NEWEST_CLOSED, SCENARIO_NOW)


def test_an_html_page_is_malformed_and_quoted() -> None:
    with pytest.raises(MalformedResponseError, match="body starts '<html>"):
        coinbase.parse(b"<html><body>maintenance</body></html>", "BTC-USD", NEWEST_CLOSED, 0)


def test_an_integer_of_ten_thousand_digits_is_refused() -> None:
    body = ("[[" + "9" * 10_000 + "]]").encode()
    with pytest.raises(MalformedResponseError):
        coinbase.parse(body, "BTC-USD", NEWEST_CLOSED, SCENARIO_NOW)


def test_more_rows_than_the_venue_ever_sends_are_refused() -> None:
    rows = [[1737383640 - 60 * i, 1, 2, 1, 1, 1] for i in range(301)]
    with pytest.raises(MalformedResponseError, match="never sends more than 300"):
        coinbase.parse(json.dumps(rows).encode(), "BTC-USD", NEWEST_CLOSED, SCENARIO_NOW)
