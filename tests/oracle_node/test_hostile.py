"""A hostile venue attacks the node: every attack fails cleanly, with one clear line, in bounds.

The attacks in a venue's own format come from the exchange simulator's `tamper`, `html`,
`clock_skew`, `drip` and `bomb` faults, so each is the venue's real answer with exactly one thing
wrong: prices that are NaN, infinite, negative, huge or written with an exponent, as strings and
as numbers; fields of the wrong type or missing; rows twice, out of order or for the wrong
minutes; a Date far off; an HTML page; a body dripped one byte at a time; a gzip bomb. What no
venue format can carry (a body of 50 MB, a connection cut mid-body) is made by hand here.
"""

from __future__ import annotations

import random
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from exchange_sim.faults import parse_fault_request
from exchange_sim.server import SimServer
from oracle_node.cli import main as node_main
from oracle_node.config import ExchangeSettings, Overrides, RetryPolicy, load_config
from oracle_node.errors import (
    CandleNotYetAvailableError,
    FetchError,
    InvalidCandleError,
    MalformedResponseError,
    ResponseTooLargeError,
    TransientFetchError,
)
from oracle_node.fetcher import CandleFetcher, make_client
from oracle_node.node import OracleNode
from oracle_node.scheduler import MinuteScheduler, Tick
from oracle_node.submitter import Submitter
from oracle_node.validation import PriceBounds, validate_candle
from oracle_node.venue import MAX_BODY_BYTES
from tests.oracle_node.aggregators import FakeAggregator
from tests.oracle_node.fakes import NEWEST_CLOSED, SIM_URL, FakeClock, Simulator
from tests.tcp import tcp_server

BOUNDARY = NEWEST_CLOSED + 60
DEADLINE = BOUNDARY + 45
VENUES = ("binance", "coinbase", "kraken")
SYMBOLS = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "XBTUSD"}


def settings_for(venue: str, **changes: Any) -> ExchangeSettings:
    quote = "USDT" if venue == "binance" else "USD"
    return ExchangeSettings(venue, SIM_URL, SYMBOLS[venue], quote, **changes)


def fetcher(venue: str, http: httpx.AsyncClient, clock: FakeClock, **changes: Any) -> CandleFetcher:
    return CandleFetcher(
        http,
        settings_for(venue, **changes),
        simulate=True,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(3),  # noqa: S311 - deterministic jitter
    )


async def fetch_tampered(venue: str, tamper: dict[str, object]) -> tuple[Simulator, Any]:
    """Fetch NEWEST_CLOSED from `venue` with `tamper` on every answer: the result or the error."""
    clock = FakeClock(BOUNDARY + 0.2)
    sim = Simulator(clock)
    sim.faults(venue=venue, tamper=tamper)
    async with sim.client() as http:
        try:
            return sim, await fetcher(venue, http, clock).fetch(NEWEST_CLOSED, DEADLINE)
        except FetchError as error:
            return sim, error


# (tamper, what the fetch ends with, words the error must contain)
MALFORMED = [
    ({"op": "set", "literal": "NaN"}, "non-standard JSON constant NaN"),
    ({"op": "set", "literal": "Infinity"}, "non-standard JSON constant Infinity"),
    ({"op": "set", "literal": "-Infinity"}, "non-standard JSON constant -Infinity"),
    ({"op": "set", "value": "NaN"}, "close is not a finite number"),
    ({"op": "set", "value": "Infinity"}, "close is not a finite number"),
    ({"op": "set", "value": "sNaN"}, "close is not a finite number"),
    ({"op": "set", "value": "abc"}, "close is not a number"),
    ({"op": "set", "value": True}, "close is not a number"),
    ({"op": "set", "value": None}, "close is not a number"),
    ({"op": "set", "value": [102000]}, "close is not a number"),
    ({"op": "set", "value": {"price": 1}}, "close is not a number"),
    ({"op": "set", "value": "1" * 60}, "close is too long"),
    ({"op": "set", "literal": "1" + "0" * 40}, "more digits than any price"),
    ({"op": "set", "field": "time", "value": "soon"}, "is not an integer"),
    ({"op": "set", "field": "time", "value": 1.5}, "is not an integer"),
    ({"op": "drop"}, "has the wrong shape"),
    ({"op": "duplicate"}, "the same minute twice"),
    ({"op": "reverse"}, "rows out of order"),
    ({"op": "shift", "minutes": 60}, "has not begun yet"),
]


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize(("tamper", "words"), MALFORMED)
async def test_a_malformed_answer_is_refused_with_what_was_wrong(
    venue: str, tamper: dict[str, object], words: str
) -> None:
    _, outcome = await fetch_tampered(venue, tamper)
    assert isinstance(outcome, MalformedResponseError), outcome
    assert words in str(outcome)
    assert len(str(outcome)) < 600  # a hostile body cannot flood the log


# Prices that parse but are no price: refused by validation, never submitted.
NOT_A_PRICE = [
    ({"op": "set", "value": "-5"}, "is not positive"),
    ({"op": "set", "value": "0"}, "is not positive"),
    ({"op": "set", "value": "1e400"}, "is outside the configured bounds"),
    ({"op": "set", "value": 1e308}, "is outside the configured bounds"),
    ({"op": "set", "literal": "1e999"}, "is outside the configured bounds"),
    ({"op": "set", "value": "1e-400"}, "is outside the configured bounds"),
    ({"op": "set", "value": "9000000"}, "is outside the candle's range"),
]


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize(("tamper", "words"), NOT_A_PRICE)
async def test_a_price_that_is_no_price_is_never_submitted(
    venue: str, tamper: dict[str, object], words: str
) -> None:
    _, outcome = await fetch_tampered(venue, tamper)
    assert not isinstance(outcome, FetchError), outcome
    with pytest.raises(InvalidCandleError, match=words):
        validate_candle(outcome.candle, PriceBounds())


@pytest.mark.parametrize("venue", VENUES)
async def test_a_price_with_an_exponent_is_read_exactly(venue: str) -> None:
    clock = FakeClock(BOUNDARY + 0.2)
    close = Simulator(clock).close(venue, NEWEST_CLOSED)
    written = f"{close:E}"  # e.g. 1.0229930E+5
    # Binance and Kraken send strings, Coinbase numbers: the exponent in each venue's own way.
    tamper = {"op": "set", "minute": NEWEST_CLOSED}
    tamper |= {"literal": written} if venue == "coinbase" else {"value": written}
    _, outcome = await fetch_tampered(venue, tamper)
    assert not isinstance(outcome, FetchError), outcome
    assert outcome.candle.close == close
    validate_candle(outcome.candle, PriceBounds())


@pytest.mark.parametrize("venue", VENUES)
async def test_rows_for_the_wrong_minutes_cost_that_minute_only(venue: str) -> None:
    _, outcome = await fetch_tampered(venue, {"op": "shift", "minutes": -3})
    assert isinstance(outcome, CandleNotYetAvailableError)


@pytest.mark.parametrize("skew", [-7200.0, 7200.0, 10**9])
@pytest.mark.parametrize("venue", VENUES)
async def test_a_date_far_off_is_distrusted_and_said(venue: str, skew: float) -> None:
    clock = FakeClock(BOUNDARY + 0.2)
    sim = Simulator(clock)
    sim.faults(venue=venue, clock_skew={"seconds": skew})
    async with sim.client() as http:
        with capture_logs() as logs:
            result = await fetcher(venue, http, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert result.candle.close == sim.close(venue, NEWEST_CLOSED)
    [warning] = [entry for entry in logs if entry["event"] == "exchange_clock_implausible"]
    assert warning["log_level"] == "warning"
    assert warning["skew_seconds"] == pytest.approx(skew, abs=1)


@pytest.mark.parametrize("status", [200, 503])
@pytest.mark.parametrize("venue", VENUES)
async def test_an_html_page_instead_of_the_api_is_named(venue: str, status: int) -> None:
    clock = FakeClock(BOUNDARY + 0.2)
    sim = Simulator(clock)
    sim.faults(venue=venue, html={"status": status})
    async with sim.client() as http:
        with pytest.raises(TransientFetchError) as caught:
            await fetcher(venue, http, clock).fetch(NEWEST_CLOSED, DEADLINE)
    assert "maintenance" in str(caught.value).lower()


# --- one hostile answer in the node's minute: one clear line, no traceback, next minute fine ----


@pytest.mark.parametrize(
    ("tamper", "line", "late"),
    [
        # Unreadable: the minute is skipped, and taken late from the next (honest) answer.
        ({"op": "set", "literal": "NaN"}, "fetch_failed", True),
        ({"op": "duplicate"}, "fetch_failed", True),
        # Readable but no price: refused for good, never submitted.
        ({"op": "set", "value": "-5"}, "candle_rejected", False),
    ],
)
async def test_the_node_logs_one_clear_line_and_collects_the_next_minute(
    tamper: dict[str, object], line: str, late: bool
) -> None:
    clock = FakeClock(BOUNDARY + 0.3)
    sim = Simulator(clock)
    aggregator = FakeAggregator(simulated=True)
    await aggregator.start()
    config = load_config(
        None,
        Overrides(
            exchange="binance",
            aggregator_url=f"127.0.0.1:{aggregator.port}",
            api_url=SIM_URL,
            simulate=True,
        ),
    )
    async with sim.client() as http:
        node_fetcher = CandleFetcher(
            http, config.exchange, simulate=True, clock=clock, sleep=clock.sleep
        )
        submitter = Submitter(config.aggregator_target, config.node_id, simulated=True)
        node = OracleNode(
            config, node_fetcher, submitter, MinuteScheduler(clock=clock), clock=clock
        )
        sim.faults(venue="binance", tamper=tamper)
        try:
            with capture_logs() as logs:
                hostile = await node.collect(Tick(BOUNDARY, NEWEST_CLOSED, BOUNDARY))
                sim.clear()
                clock.now = BOUNDARY + 60.3
                honest = await node.collect(Tick(BOUNDARY + 60, NEWEST_CLOSED + 60, BOUNDARY))
        finally:
            await submitter.close()
            await aggregator.stop()
    assert hostile is None
    assert honest is not None
    assert honest.close == sim.close("binance", NEWEST_CLOSED + 60)
    submitted = [request.timestamp for request in aggregator.servicer.received]
    assert submitted == ([NEWEST_CLOSED] if late else []) + [NEWEST_CLOSED + 60]
    events = [entry["event"] for entry in logs if entry.get("service") != "exchange-sim"]
    assert events.count(line) == 1
    assert "cycle_failed" not in events
    assert not any("exc_info" in entry or "exception" in entry for entry in logs)


# --- over the wire: the drip, the bomb, the huge body, the cut connection ----------------------


def _apply(server: SimServer, fault: dict[str, object]) -> None:
    server.app.faults.apply(parse_fault_request(fault, time.time()))


async def test_a_dripping_venue_costs_its_total_deadline_per_try(sim_server: SimServer) -> None:
    _apply(sim_server, {"venue": "kraken", "drip": {"interval_seconds": 0.05}})
    settings = ExchangeSettings(
        "kraken",
        f"http://127.0.0.1:{sim_server.port}",
        "XBTUSD",
        "USD",
        timeout=0.4,
        retry=RetryPolicy(max_retries=1, backoff_initial=0.1, backoff_max=0.1),
    )
    minute = int(time.time() // 60 * 60) - 60
    async with make_client(settings) as http:
        drip = CandleFetcher(http, settings, simulate=True)
        started = time.monotonic()
        with pytest.raises(TransientFetchError, match=r"did not finish answering within 0\.4 s"):
            await drip.fetch(minute, time.time() + 30)
        elapsed = time.monotonic() - started
    # Two tries of 0.4 s and a 0.1-0.2 s pause, where the drip alone would take over a minute.
    assert elapsed < 3.0


async def test_a_gzip_bomb_is_refused_without_inflating(sim_server: SimServer) -> None:
    inflated = 64 * 1024 * 1024
    _apply(sim_server, {"venue": "binance", "bomb": {"inflated_bytes": inflated}})
    settings = ExchangeSettings(
        "binance",
        f"http://127.0.0.1:{sim_server.port}",
        "BTCUSDT",
        "USDT",
        retry=RetryPolicy(max_retries=0),
    )
    minute = int(time.time() // 60 * 60) - 60
    tracemalloc.start()
    try:
        async with make_client(settings) as http:
            with pytest.raises(ResponseTooLargeError, match="inflates to over 1,048,576 bytes"):
                await CandleFetcher(http, settings, simulate=True).fetch(minute, time.time() + 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # a 64 MiB bomb never exists in memory


class _Huge(httpx.AsyncByteStream):
    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"[" + b" " * 65534 + b"]"
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


@pytest.mark.parametrize("announced", [True, False])
async def test_a_50_mb_answer_is_cut_at_the_cap(announced: bool) -> None:
    huge = _Huge(50 * 1024 * 1024)
    headers = {"X-Oracle-Simulated": "1", "Content-Type": "application/json"}
    if announced:
        headers["Content-Length"] = str(huge.total)

    async def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, stream=huge)

    clock = FakeClock(BOUNDARY + 0.2)
    tracemalloc.start()
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            fetch = fetcher("kraken", http, clock, retry=RetryPolicy(max_retries=0))
            with pytest.raises(ResponseTooLargeError, match="1,048,576"):
                await fetch.fetch(NEWEST_CLOSED, DEADLINE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert huge.sent <= (0 if announced else MAX_BODY_BYTES + 65536)
    assert peak < 8 * 1024 * 1024


def _cut_off(conn: socket.socket) -> None:
    """A 200 that announces 5000 bytes, sends 40 and hangs up."""
    conn.recv(65536)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"X-Oracle-Simulated: 1\r\nContent-Length: 5000\r\n\r\n"
        b'{"error":[],"result":{"XXBTZUSD":[[17373'
    )


@pytest.fixture
def cut_off_server() -> Iterator[int]:
    with tcp_server(_cut_off) as port:
        yield port


async def test_a_body_cut_short_is_a_transient_error(cut_off_server: int) -> None:
    settings = ExchangeSettings(
        "kraken",
        f"http://127.0.0.1:{cut_off_server}",
        "XBTUSD",
        "USD",
        retry=RetryPolicy(max_retries=1, backoff_initial=0.01, backoff_max=0.01),
    )
    async with make_client(settings) as http:
        with pytest.raises(TransientFetchError, match=r"incomplete|closed|peer"):
            await CandleFetcher(http, settings, simulate=True).fetch(NEWEST_CLOSED, time.time() + 5)


def test_once_refuses_deeply_nested_json_without_a_traceback(
    sim_server: SimServer, tmp_path: Path
) -> None:
    # Before: `oracle-node --once` died with a RecursionError traceback on such an answer.
    config = tmp_path / "node.toml"
    config.write_text("[kraken]\nmax_retries = 0\n", encoding="utf-8")
    deep = "[" * 2000 + "]" * 2000
    _apply(sim_server, {"venue": "kraken", "tamper": {"op": "set", "literal": deep}})
    result = CliRunner().invoke(
        node_main,
        [
            "--exchange",
            "kraken",
            "--simulate",
            "--api-url",
            f"http://127.0.0.1:{sim_server.port}",
            "--config",
            str(config),
            "--once",
        ],
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "nested too deeply" in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
