"""The fetcher over HTTP (respx): what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from decimal import Decimal
from email.utils import formatdate

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from oracle_node.config import ExchangeSettings, RetryPolicy
from oracle_node.errors import (
    CandleNotYetAvailableError,
    MalformedResponseError,
    PermanentFetchError,
    RateLimitedError,
    TransientFetchError,
)
from oracle_node.fetcher import (
    MAX_RETRY_AFTER,
    CandleFetcher,
    make_client,
    parse_http_date,
    parse_retry_after,
)
from tests.oracle_node.fakes import FORMING, NEWEST_CLOSED, FakeClock, fixture

BOUNDARY = NEWEST_CLOSED + 60
DEADLINE = BOUNDARY + 45

SETTINGS = {
    "binance": ExchangeSettings("binance", "https://api.binance.com", "BTCUSDT", "USDT"),
    "coinbase": ExchangeSettings("coinbase", "https://api.exchange.coinbase.com", "BTC-USD", "USD"),
    "kraken": ExchangeSettings("kraken", "https://api.kraken.com", "XBTUSD", "USD"),
}
URLS = {
    "binance": "https://api.binance.com/api/v3/klines",
    "coinbase": "https://api.exchange.coinbase.com/products/BTC-USD/candles",
    "kraken": "https://api.kraken.com/0/public/OHLC",
}
OK = {
    "binance": "binance_klines_ok.json",
    "coinbase": "coinbase_candles_ok.json",
    "kraken": "kraken_ohlc_ok.json",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(BOUNDARY + 0.2)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(SETTINGS["binance"]) as http:
        yield http


def fetcher_for(
    venue: str, http: httpx.AsyncClient, clock: FakeClock, *, simulate: bool = False
) -> CandleFetcher:
    return CandleFetcher(
        http,
        SETTINGS[venue],
        simulate=simulate,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),  # noqa: S311 - deterministic jitter for the test
    )


def ok(venue: str, **headers: str) -> httpx.Response:
    return httpx.Response(200, content=fixture(OK[venue]), headers=headers)


@pytest.mark.parametrize(
    ("venue", "close"),
    [
        ("binance", Decimal("102299.30000000")),
        ("coinbase", Decimal("102288.6")),
        ("kraken", Decimal("102290.7")),
    ],
)
@respx.mock
async def test_closed_candle_of_the_minute(
    venue: str, close: Decimal, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    route = respx.get(URLS[venue]).mock(return_value=ok(venue))
    result = await fetcher_for(venue, client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == close
    assert result.candle.minute == NEWEST_CLOSED
    assert result.attempts == 1
    assert clock.sleeps == []
    assert route.calls.last.request.headers["User-Agent"].startswith("btcfi-oracle-node/")


@respx.mock
async def test_forming_candle_is_polled_until_it_closes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # Binance's clock is a hair behind: our minute is still its last (forming) row at first.
    forming_last = fixture("binance_klines_ok.json").decode()
    trimmed = forming_last[: forming_last.rindex(",\n  [")] + "\n]"
    respx.get(URLS["binance"]).mock(
        side_effect=[httpx.Response(200, content=trimmed.encode()), ok("binance")]
    )
    result = await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == Decimal("102299.30000000")
    assert result.attempts == 2


@respx.mock
async def test_coinbase_lag_then_success(client: httpx.AsyncClient, clock: FakeClock) -> None:
    lagging = httpx.Response(200, content=fixture("coinbase_candles_lagging.json"))
    route = respx.get(URLS["coinbase"]).mock(side_effect=[lagging, lagging, ok("coinbase")])
    with capture_logs() as logs:
        result = await fetcher_for("coinbase", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == Decimal("102288.6")
    assert route.call_count == 3
    assert clock.sleeps == [2.0, 2.0]
    assert [entry["event"] for entry in logs].count("candle_not_yet_published") == 2


@respx.mock
async def test_coinbase_lag_past_the_deadline_gives_up_in_time(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    respx.get(URLS["coinbase"]).mock(
        return_value=httpx.Response(200, content=fixture("coinbase_candles_lagging.json"))
    )
    with pytest.raises(CandleNotYetAvailableError):
        await fetcher_for("coinbase", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert clock.now <= DEADLINE
    # Lag polls are bounded by the deadline, not by max_retries.
    assert len(clock.sleeps) > SETTINGS["coinbase"].retry.max_retries


@respx.mock
async def test_kraken_rate_limit_in_http_200_is_retried(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    limited = httpx.Response(200, content=fixture("kraken_error_rate_limit_eapi.json"))
    route = respx.get(URLS["kraken"]).mock(side_effect=[limited, ok("kraken")])
    with capture_logs() as logs:
        result = await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == Decimal("102290.7")
    assert route.call_count == 2
    warning = next(entry for entry in logs if entry["log_level"] == "warning")
    assert warning["event"] == "Rate limit exceeded - Too many requests"
    assert "exponential backoff" in warning["hint"]


@respx.mock
async def test_429_honours_retry_after(client: httpx.AsyncClient, clock: FakeClock) -> None:
    limited = httpx.Response(
        429, content=fixture("binance_429.json"), headers={"Retry-After": "33"}
    )
    respx.get(URLS["binance"]).mock(side_effect=[limited, ok("binance")])
    result = await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert clock.sleeps == [33.0]
    assert result.candle.close == Decimal("102299.30000000")


@respx.mock
async def test_418_ban_longer_than_the_minute_gives_up_at_once(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    banned = httpx.Response(
        418, content=fixture("binance_418_banned.json"), headers={"Retry-After": "333"}
    )
    route = respx.get(URLS["binance"]).mock(return_value=banned)
    with pytest.raises(RateLimitedError, match="IP banned") as caught:
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert caught.value.retry_after == 333
    assert route.call_count == 1
    assert clock.sleeps == []


@respx.mock
async def test_no_calls_during_a_ban(client: httpx.AsyncClient, clock: FakeClock) -> None:
    banned = httpx.Response(
        418, content=fixture("binance_418_banned.json"), headers={"Retry-After": "100"}
    )
    route = respx.get(URLS["binance"]).mock(side_effect=[banned, ok("binance")])
    fetcher = fetcher_for("binance", client, clock)
    with pytest.raises(RateLimitedError):
        await fetcher.fetch(NEWEST_CLOSED, DEADLINE)
    clock.now += 60  # the next minute: still banned, so Binance is not asked (that would extend it)
    with pytest.raises(RateLimitedError, match="not calling it"):
        await fetcher.fetch(NEWEST_CLOSED + 60, DEADLINE + 60)
    assert route.call_count == 1
    clock.now += 60  # the ban is over
    result = await fetcher.fetch(NEWEST_CLOSED, clock.now + 45)
    assert result.candle.close == Decimal("102299.30000000")


@respx.mock
async def test_418_short_ban_is_waited_out(client: httpx.AsyncClient, clock: FakeClock) -> None:
    banned = httpx.Response(
        418, content=fixture("binance_418_banned.json"), headers={"Retry-After": "5"}
    )
    respx.get(URLS["binance"]).mock(side_effect=[banned, ok("binance")])
    result = await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert clock.sleeps == [5.0]
    assert result.attempts == 2


@respx.mock
async def test_451_is_not_retried_and_suggests_binance_us(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    route = respx.get(URLS["binance"]).mock(
        return_value=httpx.Response(451, content=fixture("binance_451_restricted_location.json"))
    )
    with pytest.raises(PermanentFetchError, match=r"https://api\.binance\.us"):
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == 1


@respx.mock
async def test_5xx_then_success(client: httpx.AsyncClient, clock: FakeClock) -> None:
    route = respx.get(URLS["kraken"]).mock(
        side_effect=[httpx.Response(502, text="<html>Bad Gateway</html>"), ok("kraken")]
    )
    result = await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == 2
    assert result.candle.close == Decimal("102290.7")
    # Exponential backoff with jitter: initial 1 s plus up to 1 s of jitter.
    assert 1.0 <= clock.sleeps[0] <= 2.0


@respx.mock
async def test_5xx_forever_stops_after_max_retries_with_growing_waits(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    route = respx.get(URLS["binance"]).mock(return_value=httpx.Response(503, text="busy"))
    with pytest.raises(TransientFetchError, match="503"):
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == SETTINGS["binance"].retry.max_retries + 1
    assert clock.sleeps == sorted(clock.sleeps)
    assert clock.sleeps[-1] >= 4.0


@respx.mock
async def test_network_errors_are_retried(client: httpx.AsyncClient, clock: FakeClock) -> None:
    route = respx.get(URLS["coinbase"]).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), ok("coinbase")]
    )
    result = await fetcher_for("coinbase", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == 3
    assert result.attempts == 3


@respx.mock
async def test_invalid_json_logs_the_readme_message_and_gives_up(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    route = respx.get(URLS["kraken"]).mock(
        return_value=httpx.Response(200, content=b'{"error":[],"result":{"XXBTZ')
    )
    with capture_logs() as logs, pytest.raises(MalformedResponseError):
        await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == SETTINGS["kraken"].retry.max_retries + 1
    events = {entry["event"] for entry in logs}
    assert "Failed to parse Kraken JSON response" in events
    assert any("Check network connection" in entry.get("hint", "") for entry in logs)


@respx.mock
async def test_invalid_symbol_is_not_retried(client: httpx.AsyncClient, clock: FakeClock) -> None:
    route = respx.get(URLS["binance"]).mock(
        return_value=httpx.Response(400, content=fixture("binance_error_invalid_symbol.json"))
    )
    with pytest.raises(PermanentFetchError, match="Invalid symbol"):
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == 1
    assert clock.sleeps == []


@respx.mock
async def test_kraken_unknown_pair_is_not_retried(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    route = respx.get(URLS["kraken"]).mock(
        return_value=httpx.Response(200, content=fixture("kraken_error_unknown_pair.json"))
    )
    with pytest.raises(PermanentFetchError, match="Unknown asset pair"):
        await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == 1


@respx.mock
async def test_real_node_refuses_simulator_answers(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    respx.get(URLS["binance"]).mock(return_value=ok("binance", **{"X-Oracle-Simulated": "1"}))
    with pytest.raises(PermanentFetchError, match="simulator"):
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)


@respx.mock
async def test_simulate_node_refuses_unmarked_answers(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    respx.get(URLS["binance"]).mock(return_value=ok("binance"))
    with pytest.raises(PermanentFetchError, match="labelled simulated"):
        await fetcher_for("binance", client, clock, simulate=True).fetch(NEWEST_CLOSED, DEADLINE)


@respx.mock
async def test_simulate_node_accepts_simulator_answers(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    respx.get(URLS["binance"]).mock(return_value=ok("binance", **{"X-Oracle-Simulated": "1"}))
    fetcher = fetcher_for("binance", client, clock, simulate=True)
    result = await fetcher.fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == Decimal("102299.30000000")


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("33", 0) == 33
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after("Mon, 20 Jan 2025 14:36:00 GMT", 1737383727) == pytest.approx(33)


@respx.mock
async def test_timeouts_and_retry_policy_come_from_settings(clock: FakeClock) -> None:
    settings = ExchangeSettings(
        "kraken",
        "https://api.kraken.com",
        "XBTUSD",
        "USD",
        timeout=2.5,
        retry=RetryPolicy(max_retries=1, backoff_initial=0.5, backoff_max=0.5),
    )
    route = respx.get(URLS["kraken"]).mock(return_value=httpx.Response(500))
    async with make_client(settings) as http:
        assert http.timeout.read == 2.5
        fetcher = CandleFetcher(http, settings, clock=clock, sleep=clock.sleep)
        with pytest.raises(TransientFetchError):
            await fetcher.fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == 2
    assert 0.5 <= clock.sleeps[0] <= 1.0


@respx.mock
async def test_an_undecodable_body_is_a_transient_fetch_error(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # httpx.DecodingError is a RequestError but not a TransportError.
    route = respx.get(URLS["kraken"]).mock(
        side_effect=[httpx.DecodingError("bad gzip"), ok("kraken")]
    )
    result = await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert route.call_count == 2
    assert result.candle.close == Decimal("102290.7")


@respx.mock
async def test_every_httpx_error_ends_as_a_fetch_error(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    respx.get(URLS["kraken"]).mock(side_effect=httpx.TooManyRedirects("loop"))
    with pytest.raises(TransientFetchError, match="could not be read"):
        await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)


def http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


@respx.mock
async def test_coinbase_forming_row_waits_for_the_exchange_clock(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # Our clock says FORMING has closed; Coinbase's Date says it has not, and its first row is
    # FORMING, still moving. Only once Coinbase's clock passes the minute's end is it taken.
    clock.now = FORMING + 61
    early = ok("coinbase", Date=http_date(FORMING + 59))
    route = respx.get(URLS["coinbase"]).mock(
        side_effect=[early, ok("coinbase", Date=http_date(FORMING + 60))]
    )
    with capture_logs() as logs:
        result = await fetcher_for("coinbase", client, clock).fetch(FORMING, FORMING + 105)
    assert route.call_count == 2
    assert result.candle.minute == FORMING
    assert [entry["event"] for entry in logs] == ["candle_not_yet_published"]


@pytest.mark.parametrize("date", [None, "not a date", ""])
@respx.mock
async def test_without_a_readable_date_the_node_clock_decides(
    date: str | None, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    headers = {} if date is None else {"Date": date}
    respx.get(URLS["coinbase"]).mock(return_value=ok("coinbase", **headers))
    clock.now = FORMING + 30
    with pytest.raises(CandleNotYetAvailableError):
        await fetcher_for("coinbase", client, clock).fetch(FORMING, FORMING + 40)
    clock.now = FORMING + 60
    result = await fetcher_for("coinbase", client, clock).fetch(FORMING, FORMING + 105)
    assert result.candle.minute == FORMING


def test_http_dates_parse_to_epoch_seconds() -> None:
    assert parse_http_date("Mon, 20 Jan 2025 14:36:00 GMT") == 1737383760
    assert parse_http_date("soon") is None
    assert parse_http_date(None) is None


@respx.mock
async def test_skipped_minutes_are_taken_from_the_same_answers(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # Lagging: only 14:31 and 14:32 are out. Then complete: 14:33 and 14:34 too.
    lagging = httpx.Response(200, content=fixture("coinbase_candles_lagging.json"))
    route = respx.get(URLS["coinbase"]).mock(side_effect=[lagging, ok("coinbase")])
    fetcher = fetcher_for("coinbase", client, clock)
    skipped = (NEWEST_CLOSED - 180, NEWEST_CLOSED - 120, NEWEST_CLOSED - 60)
    result = await fetcher.fetch(NEWEST_CLOSED, DEADLINE, backfill=skipped)
    assert route.call_count == 2
    assert result.candle.minute == NEWEST_CLOSED
    found = fetcher.take_backfilled()
    assert [candle.minute for candle in found] == list(skipped)
    assert found[-1].close == Decimal("102269.0")
    assert fetcher.take_backfilled() == []


@respx.mock
async def test_backfill_survives_a_minute_that_is_still_missing(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    respx.get(URLS["coinbase"]).mock(
        return_value=httpx.Response(200, content=fixture("coinbase_candles_lagging.json"))
    )
    fetcher = fetcher_for("coinbase", client, clock)
    with pytest.raises(CandleNotYetAvailableError):
        await fetcher.fetch(NEWEST_CLOSED, DEADLINE, backfill=(NEWEST_CLOSED - 180,))
    assert [candle.minute for candle in fetcher.take_backfilled()] == [NEWEST_CLOSED - 180]


def test_retry_after_refuses_non_finite_values() -> None:
    for value in ("inf", "Infinity", "-inf", "nan"):
        assert parse_retry_after(value, 0) is None, value


@pytest.mark.parametrize("header", ["1e12", "Fri, 31 Dec 9999 23:59:59 GMT", "86400"])
@respx.mock
async def test_an_enormous_retry_after_is_clamped_loudly(
    header: str, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    banned = httpx.Response(
        418, content=fixture("binance_418_banned.json"), headers={"Retry-After": header}
    )
    route = respx.get(URLS["binance"]).mock(side_effect=[banned, ok("binance")])
    fetcher = fetcher_for("binance", client, clock)
    with capture_logs() as logs, pytest.raises(RateLimitedError) as caught:
        await fetcher.fetch(NEWEST_CLOSED, DEADLINE)
    assert caught.value.retry_after == MAX_RETRY_AFTER
    clamped = [entry for entry in logs if entry["event"] == "retry_after_clamped"]
    assert clamped[0]["log_level"] == "error"
    assert clamped[0]["retry_after_header"] == header
    clock.now += MAX_RETRY_AFTER  # after the cap the venue is asked again
    result = await fetcher.fetch(NEWEST_CLOSED, clock.now + 45)
    assert result.candle.minute == NEWEST_CLOSED
    assert route.call_count == 2
