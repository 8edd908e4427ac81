"""Request routing: the venues' real paths, the injected faults, and the `/_sim/` controls.

`SimApp.handle` turns (method, target, headers, body) into a `SimResponse` with no socket in
sight, so the whole simulator can be tested with a fake clock and no sleeping; `SimApp.begin`
splits the same work around the one wait a `slow` fault asks for, so the threaded HTTP server
(`server.py`) and the in-process httpx transport (`transport.py`) each wait their own way. The
venues come from the registry (`venues/`); nothing here branches on a venue's name. Every answer
carries `X-Oracle-Simulated: 1` and a `Date` on the simulator's clock. The control endpoints
(never subject to faults):

- `GET /_sim/health` -> 200 `{"status":"ok","simulated":true,...}`
- `GET /_sim/close?venue=binance&minute=<unix s>[&asset=USDT]` -> `{"venue","minute","close",
  "closed"}` (close as a decimal string, exactly what the venue serves for that minute once it is
  closed; `asset=USDT`: the venue's USDT/USD rate); without `venue`: `{"minute","closes":{venue:
  close},"mean"}` of the BTC pairs
- `GET /_sim/faults`, `POST /_sim/faults` (JSON, schema in `exchange_sim.faults`),
  `DELETE /_sim/faults[?venue=V]`
"""

from __future__ import annotations

import functools
import json
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from email.utils import formatdate
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from structlog.typing import FilteringBoundLogger

from common.logsetup import get_logger
from common.simulated import SIMULATED_HEADER, SIMULATED_HEADER_VALUE, SIMULATED_LABEL
from common.timeutil import MINUTE, Clock, system_clock

from .config import SimConfig
from .faults import Decision, FaultBook, FaultSpecError, parse_fault_request
from .market import Market
from .prices import BTC, SERIES, USDT, VENUES, PriceModel
from .responses import Query, SimResponse, first, html_response, json_response
from .venues import CandleAsk, SimVenue, build_venues

SIMULATED: Final = SIMULATED_LABEL
# The USDT/USD walk: a rate near par that moves by a few hundredths of a cent a minute.
USDT_RATE_LEVEL: Final = Decimal(1)
USDT_RATE_VOLATILITY: Final = 0.00003

_MAINTENANCE_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>Scheduled maintenance</title></head><body>"
    "<h1>We'll be back soon</h1><p>The API is down for maintenance. (SIMULATED)</p>"
    "</body></html>"
)


def sim_logger() -> FilteringBoundLogger:
    """A logger whose every line says SIMULATED, so no log can pass for a real exchange's."""
    return get_logger(service="exchange-sim", mode=SIMULATED)


@dataclass(frozen=True)
class PendingAnswer:
    """An answer to send after `delay_seconds` (a `slow` fault); `finish` builds it then."""

    delay_seconds: float
    finish: Callable[[], SimResponse]


def _ready(response: SimResponse) -> PendingAnswer:
    return PendingAnswer(0.0, lambda: response)


@dataclass(frozen=True)
class VenueRequest:
    """A request to a venue path: what its answer may depend on."""

    path: str
    query: Query
    headers: Mapping[str, str]


class SimApp:
    """The simulator behind any HTTP server: routes requests, applies faults, answers."""

    def __init__(
        self,
        config: SimConfig,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.faults = FaultBook()
        models = {
            BTC: PriceModel(config.seed, config.price, config.volatility),
            USDT: PriceModel(config.seed, USDT_RATE_LEVEL, USDT_RATE_VOLATILITY, walk="walk:USDT"),
        }
        self.market = Market(models, self.faults.overrides)
        self.venues: dict[str, SimVenue] = build_venues(config)
        self._log = sim_logger()
        now = clock()
        for spec in config.startup_faults:
            self.faults.apply(parse_fault_request(spec, now))

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> SimResponse:
        """Answer one request; `headers` keys must be lower case. Sleeps through a `slow` fault."""
        pending = self.begin(method, target, headers, body)
        if pending.delay_seconds > 0:
            self.sleep(pending.delay_seconds)
        return pending.finish()

    def begin(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> PendingAnswer:
        """Decide one request's fate now; the caller waits `delay_seconds`, then calls `finish`."""
        parts = urlsplit(target)
        path = parts.path
        query: Query = parse_qs(parts.query, keep_blank_values=True)
        if path.startswith("/_sim/"):
            return _ready(self.label(self._control(method, path, query, body)))
        if method != "GET":
            refused = json_response(
                405, {"error": f"{method} not allowed; the venues are GET only"}
            )
            return _ready(self.label(refused))
        venue = next((v for v in self.venues.values() if v.serves(path)), None)
        if venue is not None:
            return self._candles(venue, VenueRequest(path, query, headers))
        now = self.clock()
        for other in self.venues.values():
            answer = other.info(path, now)
            if answer is not None:
                return _ready(self.label(answer))
        missing = json_response(404, {"error": f"no such path {path} (SIMULATED exchange)"})
        return _ready(self.label(missing))

    def label(self, response: SimResponse, clock_skew: float = 0.0) -> SimResponse:
        """Every answer says it is simulated and carries the venue's clock (`Date`)."""
        date = formatdate(self.clock() + clock_skew, usegmt=True)
        return response.with_headers(
            (SIMULATED_HEADER, SIMULATED_HEADER_VALUE),
            ("Date", date),
        )

    # --- venues -------------------------------------------------------------------------------

    def _candles(self, venue: SimVenue, request: VenueRequest) -> PendingAnswer:
        decision = self.faults.take(venue.name)

        def finish() -> SimResponse:
            now = self.clock()
            if decision.failure is not None:
                response = self._failure(venue, decision, request, now)
            else:
                response = venue.candles(self._ask(venue, decision, request, now))
            response = venue.finish(response, now)
            if decision.drip_seconds:
                response = replace(response, drip_seconds=decision.drip_seconds)
            self._log.info(
                "venue_request",
                venue=venue.name,
                path=request.path,
                query=parts_for_log(request.query),
                status=response.status,
                fault=",".join(decision.fired) or None,
                delay_seconds=decision.delay_seconds or None,
            )
            return self.label(response, decision.clock_skew)

        return PendingAnswer(decision.delay_seconds, finish)

    def _ask(
        self, venue: SimVenue, decision: Decision, request: VenueRequest, now: float
    ) -> CandleAsk:
        lag = venue.default_lag_seconds if decision.lag_seconds is None else decision.lag_seconds
        return CandleAsk(
            path=request.path,
            query=request.query,
            headers=request.headers,
            now=now,
            market=self.market,
            lag_seconds=lag,
            tamper=decision.tamper,
        )

    def _failure(
        self, venue: SimVenue, decision: Decision, request: VenueRequest, now: float
    ) -> SimResponse:
        answer = _FAILURE_ANSWERS.get(decision.failure or "")
        if answer is not None:
            return answer(venue, decision, now)
        # malformed: cut the real answer mid-way: still HTTP 200 and JSON, but not parseable.
        whole = venue.candles(self._ask(venue, decision, request, now))
        return replace(whole, status=200, body=whole.body[: max(len(whole.body) // 2, 1)])

    # --- control ------------------------------------------------------------------------------

    def _control(self, method: str, path: str, query: Query, body: bytes) -> SimResponse:
        if path == "/_sim/health" and method == "GET":
            return json_response(200, self._health())
        if path == "/_sim/close" and method == "GET":
            return self._close(query)
        if path == "/_sim/faults":
            if method == "GET":
                return json_response(200, {"faults": self.faults.snapshot()})
            if method == "POST":
                return self._post_faults(body)
            if method == "DELETE":
                return self._delete_faults(query)
        return json_response(404, {"error": f"no control endpoint {method} {path}"})

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "simulated": True,
            "mode": SIMULATED,
            "seed": self.config.seed,
            "price": str(self.config.price),
            "coinbase_lag_seconds": self.config.coinbase_lag_seconds,
            "venues": list(self.venues),
            "now": self.clock(),
            "faults": self.faults.snapshot(),
        }

    def _close(self, query: Query) -> SimResponse:
        raw_minute = first(query, "minute")
        if raw_minute is None or not raw_minute.lstrip("-").isdigit():
            return json_response(400, {"error": "minute: required, unix seconds"})
        minute = int(raw_minute)
        if minute % MINUTE:
            return json_response(400, {"error": "minute: must be a multiple of 60 (open time)"})
        closed = minute + MINUTE <= self.clock()
        venue = first(query, "venue")
        asset = (first(query, "asset") or BTC).upper()
        if venue is None:
            closes = {name: self.market.close(name, minute) for name in VENUES}
            mean = sum(closes.values(), Decimal(0)) / len(closes)
            return json_response(
                200,
                {
                    "minute": minute,
                    "closes": {name: str(close) for name, close in closes.items()},
                    "mean": str(mean),
                    "closed": closed,
                },
            )
        if venue not in VENUES:
            return json_response(400, {"error": f"venue: use one of {', '.join(VENUES)}"})
        series = series_of(venue, asset)
        if series is None:
            return json_response(400, {"error": f"asset: {venue} has no {asset}/USD pair here"})
        close = self.market.close(series, minute)
        return json_response(
            200,
            {
                "venue": venue,
                "asset": asset,
                "minute": minute,
                "close": str(close),
                "closed": closed,
            },
        )

    def _post_faults(self, body: bytes) -> SimResponse:
        try:
            payload = json.loads(body or b"null")
            update = parse_fault_request(payload, self.clock())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return json_response(400, {"error": "body must be JSON"})
        except FaultSpecError as exc:
            return json_response(400, {"error": str(exc)})
        self.faults.apply(update)
        snapshot = self.faults.snapshot()
        self._log.warning("faults_injected", venues=list(update.venues), faults=snapshot)
        return json_response(200, {"faults": snapshot})

    def _delete_faults(self, query: Query) -> SimResponse:
        venue = first(query, "venue")
        if venue is not None and venue not in VENUES:
            return json_response(400, {"error": f"venue: use one of {', '.join(VENUES)}"})
        self.faults.clear(venue)
        self._log.info("faults_cleared", venue=venue or "all")
        return json_response(200, {"faults": self.faults.snapshot()})


def series_of(venue: str, asset: str) -> str | None:
    """The `prices.SERIES` key of `venue`'s pair for `asset` (BTC or USDT), if it lists one."""
    return next(
        (key for key, spec in SERIES.items() if spec.venue == venue and spec.asset == asset), None
    )


@functools.lru_cache(maxsize=4)
def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip body of `inflated_bytes` zero bytes: about a thousandth of that on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(min(inflated_bytes, 1 << 20))
    parts: list[bytes] = []
    remaining = inflated_bytes
    while remaining > 0:
        parts.append(compressor.compress(chunk[: min(remaining, len(chunk))]))
        remaining -= len(chunk)
    parts.append(compressor.flush())
    return b"".join(parts)


def _bomb(inflated_bytes: int) -> SimResponse:
    return SimResponse(200, gzip_bomb(inflated_bytes), headers=(("Content-Encoding", "gzip"),))


# How each failure is answered; "malformed" needs the real answer and is handled in the app.
_FAILURE_ANSWERS: Final[dict[str, Callable[[SimVenue, Decision, float], SimResponse]]] = {
    "rate_limit": lambda venue, decision, _now: venue.rate_limited(decision.param("retry_after")),
    "ban": lambda venue, decision, now: venue.banned(decision.param("retry_after"), now),
    "geo_block": lambda venue, _decision, _now: venue.geo_blocked(),
    "http_5xx": lambda venue, decision, _now: venue.server_error(decision.param("status")),
    "html": lambda _venue, decision, _now: html_response(
        decision.param("status"), _MAINTENANCE_PAGE
    ),
    "bomb": lambda _venue, decision, _now: _bomb(decision.param("inflated_bytes")),
}


def parts_for_log(query: Query) -> dict[str, str]:
    """The query as flat key=value pairs for a log line."""
    return {name: ",".join(values) for name, values in query.items()}
