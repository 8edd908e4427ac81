"""The fetcher against the exchange simulator: what is retried, how long it waits, when it gives up.

Every venue answer comes from the simulator (its httpx transport, on a fake clock), with the
simulator's own faults for rate limits, bans, geo-blocks, 5xx, malformed bodies and lag, so the
formats are exactly what the simulate mode serves. Hand-made answers (respx) remain only for what
the simulator never sends by design: an answer without the simulated marker (a real venue's) and a
`Date` header that is missing or unreadable; transport-level errors come from `FlakyTransport`.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

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
from tests.oracle_node.fakes import (
    FORMING,
    NEWEST_CLOSED,
    FakeClock,
    FlakyTransport,
    Simulator,
    fixture,
)

BOUNDARY = NEWEST_CLOSED + 60
DEADLINE = BOUNDARY + 45

SETTINGS = {
    "binance": ExchangeSettings("binance", "https://api.binance.com", "BTCUSDT", "USDT"),
    "coinbase": ExchangeSettings("coinbase", "https://api.exchange.coinbase.com", "BTC-USD", "USD"),
    "kraken": ExchangeSettings("kraken", "https://api.kraken.com", "XBTUSD", "USD"),
}
PATHS = {"binance": "/api/v3/klines", "coinbase": "/candles", "kraken": "/0/public/OHLC"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(BOUNDARY + 0.2)


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(clock)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=sim.transport, headers={"User-Agent": "tests"}) as http:
        yield http


def fetcher_for(
    venue: str,
    http: httpx.AsyncClient,
    clock: FakeClock,
    *,
    simulate: bool = True,
    settings: ExchangeSettings | None = None,
) -> CandleFetcher:
    return CandleFetcher(
        http,
        settings or SETTINGS[venue],
        simulate=simulate,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),  # noqa: S311 - deterministic jitter for the test
    )


def asked(sim: Simulator, venue: str) -> int:
    return len(sim.venue_requests(PATHS[venue]))


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
async def test_closed_candle_of_the_minute(venue: str, clock: FakeClock, sim: Simulator) -> None:
    # The node's own client (its headers), with the simulator as the network.
    async with make_client(SETTINGS[venue], transport=sim.transport) as node_client:
        result = await fetcher_for(venue, node_client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == sim.close(venue, NEWEST_CLOSED)
    assert result.candle.minute == NEWEST_CLOSED
    assert (result.candle.base, result.candle.quote) == ("BTC", SETTINGS[venue].quote)
    assert result.attempts == 1
    assert clock.sleeps == []
    request = sim.transport.requests[-1]
    assert request.headers["User-Agent"].startswith("btcfi-oracle-node/")
    assert request.headers["Accept-Encoding"] == "gzip, deflate"


async def test_forming_candle_is_polled_until_it_closes(clock: FakeClock) -> None:
    # Binance's clock is two seconds behind: our minute is still its last (forming) row at first.
    sim = Simulator(clock, skew=-2.0)
    async with sim.client() as http:
        result = await fetcher_for("binance", http, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == sim.close("binance", NEWEST_CLOSED)
    assert result.attempts == 2
    assert clock.sleeps == [2.0]


async def test_coinbase_lag_then_success(clock: FakeClock) -> None:
    sim = Simulator(clock, coinbase_lag_seconds=5.0)  # Coinbase publishes a minute 5 s late
    async with sim.client() as http:
        with capture_logs() as logs:
            result = await fetcher_for("coinbase", http, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == sim.close("coinbase", NEWEST_CLOSED)
    assert asked(sim, "coinbase") == 4
    assert clock.sleeps == [2.0, 2.0, 2.0]
    assert [entry["event"] for entry in logs].count("candle_not_yet_published") == 3


async def test_coinbase_lag_past_the_deadline_gives_up_in_time(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="coinbase", lag={"seconds": 600})
    with pytest.raises(CandleNotYetAvailableError):
        await fetcher_for("coinbase", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert clock.now <= DEADLINE
    # Lag polls are bounded by the deadline, not by max_retries.
    assert len(clock.sleeps) > SETTINGS["coinbase"].retry.max_retries


async def test_kraken_rate_limit_in_http_200_is_retried(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="kraken", rate_limit={"count": 1})
    with capture_logs() as logs:
        result = await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == sim.close("kraken", NEWEST_CLOSED)
    assert asked(sim, "kraken") == 2
    warning = next(entry for entry in logs if entry["log_level"] == "warning")
    assert warning["event"] == "Rate limit exceeded - Too many requests"
    assert "EAPI:Rate limit exceeded" in warning["reason"]
    assert "exponential backoff" in warning["hint"]


async def test_429_honours_retry_after(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="binance", rate_limit={"count": 1, "retry_after": 33})
    result = await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert clock.sleeps == [33.0]
    assert result.candle.close == sim.close("binance", NEWEST_CLOSED)


async def test_418_ban_longer_than_the_minute_gives_up_at_once(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="binance", ban={"retry_after": 333})
    with pytest.raises(RateLimitedError, match="IP banned") as caught:
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert caught.value.retry_after == 333
    assert asked(sim, "binance") == 1
    assert clock.sleeps == []


async def test_no_calls_during_a_ban(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="binance", ban={"count": 1, "retry_after": 100})
    fetcher = fetcher_for("binance", client, clock)
    with pytest.raises(RateLimitedError):
        await fetcher.fetch(NEWEST_CLOSED, DEADLINE)
    clock.now += 60  # the next minute: still banned, so Binance is not asked (that would extend it)
    with pytest.raises(RateLimitedError, match="not calling it"):
        await fetcher.fetch(NEWEST_CLOSED + 60, DEADLINE + 60)
    assert asked(sim, "binance") == 1
    clock.now += 60  # the ban is over
    result = await fetcher.fetch(NEWEST_CLOSED + 60, clock.now + 45)
    assert result.candle.close == sim.close("binance", NEWEST_CLOSED + 60)


async def test_a_ban_on_one_pair_silences_the_venues_other_pairs(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    # Binance.US lists USDTUSD beside BTCUSD: a ban is on the IP, whichever pair was asked.
    settings = ExchangeSettings("binance", "https://api.binance.us", "BTCUSD", "USD")
    btc = fetcher_for("binance", client, clock, settings=settings)
    rate = btc.sibling("USDTUSD")
    sim.faults(venue="binance", ban={"count": 1, "retry_after": 100})
    with pytest.raises(RateLimitedError):
        await btc.fetch(NEWEST_CLOSED, DEADLINE)
    with pytest.raises(RateLimitedError, match="not calling it"):
        await rate.fetch(NEWEST_CLOSED, DEADLINE)
    assert asked(sim, "binance") == 1
    clock.now += 100
    result = await rate.fetch(NEWEST_CLOSED + 60, clock.now + 45)
    assert (result.candle.base, result.candle.quote) == ("USDT", "USD")
    assert result.candle.close == sim.close("binance", NEWEST_CLOSED + 60, asset="USDT")


async def test_418_short_ban_is_waited_out(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="binance", ban={"count": 1, "retry_after": 5})
    result = await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert clock.sleeps == [5.0]
    assert result.attempts == 2


async def test_451_is_not_retried_and_suggests_binance_us(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="binance", geo_block={})
    with pytest.raises(PermanentFetchError, match=r"https://api\.binance\.us"):
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert asked(sim, "binance") == 1


async def test_5xx_then_success(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="kraken", http_5xx={"count": 1, "status": 502})
    result = await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert asked(sim, "kraken") == 2
    assert result.candle.close == sim.close("kraken", NEWEST_CLOSED)
    # Exponential backoff with jitter: initial 1 s plus up to 1 s of jitter.
    assert 1.0 <= clock.sleeps[0] <= 2.0


async def test_5xx_forever_stops_after_max_retries_with_growing_waits(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="binance", http_5xx={})
    with pytest.raises(TransientFetchError, match="503"):
        await fetcher_for("binance", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert asked(sim, "binance") == SETTINGS["binance"].retry.max_retries + 1
    assert clock.sleeps == sorted(clock.sleeps)
    assert clock.sleeps[-1] >= 4.0


async def test_network_errors_are_retried(clock: FakeClock, sim: Simulator) -> None:
    flaky = FlakyTransport(
        sim.transport, [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]
    )
    async with httpx.AsyncClient(transport=flaky, headers={"User-Agent": "tests"}) as http:
        result = await fetcher_for("coinbase", http, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert flaky.calls == 3
    assert result.attempts == 3


async def test_invalid_json_logs_the_readme_message_and_gives_up(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="kraken", malformed={})
    with capture_logs() as logs, pytest.raises(MalformedResponseError):
        await fetcher_for("kraken", client, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert asked(sim, "kraken") == SETTINGS["kraken"].retry.max_retries + 1
    events = {entry["event"] for entry in logs}
    assert "Failed to parse Kraken JSON response" in events
    assert any("Check network connection" in entry.get("hint", "") for entry in logs)


async def test_invalid_symbol_is_not_retried(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    settings = ExchangeSettings("binance", "https://api.binance.com", "BTCUSDX", "USDT")
    with pytest.raises(PermanentFetchError, match="Invalid symbol"):
        await fetcher_for("binance", client, clock, settings=settings).fetch(
            NEWEST_CLOSED, DEADLINE
        )
    assert asked(sim, "binance") == 1
    assert clock.sleeps == []


async def test_kraken_unknown_pair_is_not_retried(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    settings = ExchangeSettings("kraken", "https://api.kraken.com", "XBTUSDX", "USD")
    with pytest.raises(PermanentFetchError, match="Unknown asset pair"):
        await fetcher_for("kraken", client, clock, settings=settings).fetch(NEWEST_CLOSED, DEADLINE)
    assert asked(sim, "kraken") == 1


async def test_real_node_refuses_simulator_answers(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    with pytest.raises(PermanentFetchError, match="simulator"):
        await fetcher_for("binance", client, clock, simulate=False).fetch(NEWEST_CLOSED, DEADLINE)


@respx.mock
async def test_simulate_node_refuses_unmarked_answers(clock: FakeClock) -> None:
    # A real venue's answer (no simulated marker): the simulator never sends one.
    respx.get("https://api.binance.com/api/v3/klines").mock(
        return_value=httpx.Response(200, content=fixture("binance_klines_ok.json"))
    )
    async with make_client(SETTINGS["binance"]) as http:
        with pytest.raises(PermanentFetchError, match="labelled simulated"):
            await fetcher_for("binance", http, clock).fetch(NEWEST_CLOSED, DEADLINE)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("33", 0) == 33
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after("Mon, 20 Jan 2025 14:36:00 GMT", 1737383727) == pytest.approx(33)


async def test_timeouts_and_retry_policy_come_from_settings(
    clock: FakeClock, sim: Simulator
) -> None:
    settings = ExchangeSettings(
        "kraken",
        "https://api.kraken.com",
        "XBTUSD",
        "USD",
        timeout=2.5,
        retry=RetryPolicy(max_retries=1, backoff_initial=0.5, backoff_max=0.5),
    )
    sim.faults(venue="kraken", http_5xx={"status": 500})
    async with make_client(settings, transport=sim.transport) as http:
        assert http.timeout.read == 2.5
        fetcher = CandleFetcher(http, settings, simulate=True, clock=clock, sleep=clock.sleep)
        with pytest.raises(TransientFetchError):
            await fetcher.fetch(NEWEST_CLOSED, DEADLINE)
    assert asked(sim, "kraken") == 2
    assert 0.5 <= clock.sleeps[0] <= 1.0


async def test_every_httpx_error_ends_as_a_fetch_error(clock: FakeClock, sim: Simulator) -> None:
    loops = FlakyTransport(sim.transport, [httpx.TooManyRedirects("loop")] * 10)
    async with httpx.AsyncClient(transport=loops) as http:
        with pytest.raises(TransientFetchError, match="could not be read"):
            await fetcher_for("kraken", http, clock).fetch(NEWEST_CLOSED, DEADLINE)


async def test_coinbase_forming_row_waits_for_the_exchange_clock(clock: FakeClock) -> None:
    # Our clock says FORMING has closed; Coinbase's clock (its Date, its candles) is two seconds
    # behind, and its first row is FORMING, still moving. Only once Coinbase's clock passes the
    # minute's end is it taken.
    clock.now = FORMING + 61
    sim = Simulator(clock, skew=-2.0)
    async with sim.client() as http:
        with capture_logs() as logs:
            result = await fetcher_for("coinbase", http, clock).fetch(FORMING, FORMING + 105)
    assert asked(sim, "coinbase") == 2
    assert result.candle.minute == FORMING
    assert result.candle.close == sim.close("coinbase", FORMING)
    node_events = [entry["event"] for entry in logs if entry.get("service") != "exchange-sim"]
    assert node_events == ["candle_not_yet_published"]


@pytest.mark.parametrize("date", [None, "not a date", ""])
@respx.mock
async def test_without_a_readable_date_the_node_clock_decides(
    date: str | None, clock: FakeClock
) -> None:
    # The simulator always sends a Date; this answer is made by hand to leave it out or garble it.
    headers = {"X-Oracle-Simulated": "1"} | ({} if date is None else {"Date": date})
    respx.get(f"{SETTINGS['coinbase'].api_url}/products/BTC-USD/candles").mock(
        return_value=httpx.Response(
            200, content=fixture("coinbase_candles_ok.json"), headers=headers
        )
    )
    async with make_client(SETTINGS["coinbase"]) as http:
        clock.now = FORMING + 30
        with pytest.raises(CandleNotYetAvailableError):
            await fetcher_for("coinbase", http, clock).fetch(FORMING, FORMING + 40)
        clock.now = FORMING + 60
        result = await fetcher_for("coinbase", http, clock).fetch(FORMING, FORMING + 105)
    assert result.candle.minute == FORMING


def test_http_dates_parse_to_epoch_seconds() -> None:
    assert parse_http_date("Mon, 20 Jan 2025 14:36:00 GMT") == 1737383760
    assert parse_http_date("soon") is None
    assert parse_http_date(None) is None
    assert parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT") is not None
    assert parse_http_date("Mon, 20 Jan 99999999 14:36:00 GMT") is None


async def test_skipped_minutes_are_taken_from_the_same_answers(clock: FakeClock) -> None:
    # Coinbase publishes 4 s late: the first answer lacks the wanted minute but holds the three
    # skipped ones; the wanted minute is in the answer two polls later.
    sim = Simulator(clock, coinbase_lag_seconds=4.0)
    skipped = (NEWEST_CLOSED - 180, NEWEST_CLOSED - 120, NEWEST_CLOSED - 60)
    async with sim.client() as http:
        fetcher = fetcher_for("coinbase", http, clock)
        result = await fetcher.fetch(NEWEST_CLOSED, DEADLINE, backfill=skipped)
    assert asked(sim, "coinbase") == 3
    assert result.candle.minute == NEWEST_CLOSED
    found = fetcher.take_backfilled()
    assert [candle.minute for candle in found] == list(skipped)
    assert [candle.close for candle in found] == [sim.close("coinbase", m) for m in skipped]
    assert fetcher.take_backfilled() == []


async def test_backfill_survives_a_minute_that_is_still_missing(
    client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="coinbase", lag={"seconds": 600})
    fetcher = fetcher_for("coinbase", client, clock)
    old = NEWEST_CLOSED - 600  # closed 11 minutes ago: published despite the 10-minute lag
    with pytest.raises(CandleNotYetAvailableError):
        await fetcher.fetch(NEWEST_CLOSED, DEADLINE, backfill=(old,))
    assert [candle.minute for candle in fetcher.take_backfilled()] == [old]


def test_retry_after_refuses_non_finite_values() -> None:
    for value in ("inf", "Infinity", "-inf", "nan"):
        assert parse_retry_after(value, 0) is None, value


@pytest.mark.parametrize("header", ["1e12", "Fri, 31 Dec 9999 23:59:59 GMT", "86400"])
async def test_an_enormous_retry_after_is_clamped_loudly(
    header: str, client: httpx.AsyncClient, clock: FakeClock, sim: Simulator
) -> None:
    sim.faults(venue="binance", ban={"count": 1, "retry_after": header})
    fetcher = fetcher_for("binance", client, clock)
    with capture_logs() as logs, pytest.raises(RateLimitedError) as caught:
        await fetcher.fetch(NEWEST_CLOSED, DEADLINE)
    assert caught.value.retry_after == MAX_RETRY_AFTER
    clamped = [entry for entry in logs if entry["event"] == "retry_after_clamped"]
    assert clamped[0]["log_level"] == "error"
    assert clamped[0]["retry_after_header"] == header
    clock.now += MAX_RETRY_AFTER  # after the cap the venue is asked again
    minute = NEWEST_CLOSED + int(MAX_RETRY_AFTER)
    result = await fetcher.fetch(minute, clock.now + 45)
    assert result.candle.minute == minute
    assert asked(sim, "binance") == 2
