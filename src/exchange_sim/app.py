"""Request routing: the three venues' real paths, the injected faults, and the `/_sim/` controls.

`SimApp.handle` turns (method, target, headers, body) into a `SimResponse` with no socket in
sight, so the whole simulator can be tested with a fake clock and no sleeping. The control
endpoints (never subject to faults):

- `GET /_sim/health` -> 200 `{"status":"ok","simulated":true,...}`
- `GET /_sim/close?venue=binance&minute=<unix s>` -> `{"venue","minute","close","closed"}`
  (close as a decimal string, exactly what the venue serves for that minute once it is closed);
  without `venue`: `{"minute","closes":{venue: close},"mean"}`
- `GET /_sim/faults`, `POST /_sim/faults` (JSON, schema in `exchange_sim.faults`),
  `DELETE /_sim/faults[?venue=V]`
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from email.utils import formatdate
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from structlog.typing import FilteringBoundLogger

from common.logsetup import get_logger
from common.timeutil import MINUTE, Clock, minute_floor, system_clock

from .config import SimConfig
from .faults import Decision, FaultBook, FaultSpecError, parse_fault_request
from .market import Market
from .prices import VENUES, PriceModel
from .responses import Query, SimResponse, first, json_response
from .venues import binance, coinbase, kraken

SIMULATED: Final = "SIMULATED"

_KRAKEN_5XX_PAGE: Final = (
    "<html><head><title>{status} Service Unavailable</title></head>"
    "<body><center><h1>{status} Service Unavailable</h1></center><hr>"
    "<center>cloudflare</center></body></html>"
)


def sim_logger() -> FilteringBoundLogger:
    """A logger whose every line says SIMULATED, so no log can pass for a real exchange's."""
    return get_logger(service="exchange-sim", mode=SIMULATED)


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
        self.market = Market(PriceModel(config.seed, config.price, config.volatility))
        self.faults = FaultBook()
        self._log = sim_logger()
        self._weight_lock = threading.Lock()
        self._weight_minute = 0
        self._weight_used = 0
        now = clock()
        for spec in config.startup_faults:
            self.faults.apply(parse_fault_request(spec, now))

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> SimResponse:
        """Answer one request; `headers` keys must be lower case."""
        parts = urlsplit(target)
        path = parts.path
        query: Query = parse_qs(parts.query, keep_blank_values=True)
        if path.startswith("/_sim/"):
            return self._control(method, path, query, body)
        if method != "GET":
            return json_response(405, {"error": f"{method} not allowed; the venues are GET only"})
        venue = _venue_of(path)
        if venue is not None:
            return self._venue(venue, path, query, headers)
        return self._clock_endpoint(path)

    def _clock_endpoint(self, path: str) -> SimResponse:
        """Binance's and Kraken's server-time endpoints, which clients use to judge "closed"."""
        now = self.clock()
        if path == "/api/v3/time":
            return json_response(200, {"serverTime": int(now * 1000)})
        if path == "/api/v3/ping":
            return json_response(200, {})
        if path == "/0/public/Time":
            time_result = {"unixtime": int(now), "rfc1123": formatdate(now, usegmt=True)}
            return json_response(200, {"error": [], "result": time_result})
        return json_response(404, {"error": f"no such path {path} (SIMULATED exchange)"})

    # --- venues -------------------------------------------------------------------------------

    def _venue(
        self, venue: str, path: str, query: Query, headers: Mapping[str, str]
    ) -> SimResponse:
        decision = self.faults.take(venue)
        if decision.delay_seconds > 0:
            self.sleep(decision.delay_seconds)
        now = self.clock()
        if decision.failure in ("rate_limit", "http_5xx"):
            response = _failure(venue, decision)
        else:
            overrides = self.faults.overrides(venue)
            if venue == "binance":
                response = binance.klines(query, now, self.market, overrides)
            elif venue == "coinbase":
                product = coinbase.product_of(path) or ""
                response = coinbase.candles(
                    product,
                    query,
                    headers,
                    now=now,
                    market=self.market,
                    overrides=overrides,
                    lag_seconds=self.config.coinbase_lag_seconds,
                )
            else:
                response = kraken.ohlc(query, now, self.market, overrides)
            if decision.failure == "malformed":
                # Cut the body mid-way: still HTTP 200 and application/json, but not parseable.
                cut = response.body[: max(len(response.body) // 2, 1)]
                response = SimResponse(200, cut, response.content_type, response.headers)
        if venue == "binance":
            response = response.with_headers(("x-mbx-used-weight-1m", str(self._weigh(now))))
        self._log.info(
            "venue_request",
            venue=venue,
            path=path,
            query=parts_for_log(query),
            status=response.status,
            fault=decision.failure,
            delay_seconds=decision.delay_seconds or None,
        )
        return response

    def _weigh(self, now: float) -> int:
        """Binance's per-minute request weight counter, reported in x-mbx-used-weight-1m."""
        with self._weight_lock:
            minute = minute_floor(now)
            if minute != self._weight_minute:
                self._weight_minute, self._weight_used = minute, 0
            self._weight_used += binance.WEIGHT_PER_CALL
            return self._weight_used

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
            "venues": list(VENUES),
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
        if venue is None:
            closes = {name: self._final_close(name, minute) for name in VENUES}
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
        close = self._final_close(venue, minute)
        return json_response(
            200, {"venue": venue, "minute": minute, "close": str(close), "closed": closed}
        )

    def _final_close(self, venue: str, minute: int) -> Decimal:
        return self.market.close(venue, minute, self.faults.overrides(venue))

    def _post_faults(self, body: bytes) -> SimResponse:
        try:
            payload = json.loads(body or b"null")
            update = parse_fault_request(payload, self.clock())
        except (json.JSONDecodeError, UnicodeDecodeError):
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


def _venue_of(path: str) -> str | None:
    if path == binance.PATH:
        return "binance"
    if coinbase.product_of(path) is not None:
        return "coinbase"
    if path == kraken.PATH:
        return "kraken"
    return None


def _failure(venue: str, decision: Decision) -> SimResponse:
    if decision.failure == "rate_limit":
        if venue == "kraken":
            # Kraken reports throttling inside an HTTP 200 body, never with a 429.
            return json_response(200, kraken.RATE_LIMITED)
        payload = binance.RATE_LIMITED if venue == "binance" else coinbase.RATE_LIMITED
        return json_response(429, payload, (("Retry-After", str(decision.retry_after)),))
    if venue == "kraken":
        # A non-200 from Kraken means the request never reached it: the CDN answers in HTML.
        page = _KRAKEN_5XX_PAGE.format(status=decision.status)
        return SimResponse(decision.status, page.encode(), "text/html")
    payload = binance.SERVER_ERROR if venue == "binance" else coinbase.SERVER_ERROR
    return json_response(decision.status, payload)


def parts_for_log(query: Query) -> dict[str, str]:
    """The query as flat key=value pairs for a log line."""
    return {name: ",".join(values) for name, values in query.items()}
