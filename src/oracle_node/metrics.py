"""The node's Prometheus metrics and its plain health answer (`/healthz`), one call per event.

Metrics (every one labelled with the node's `exchange`): fetch latency, the fetch's start and
finish skew after XX:00, fetches and retries by cause, the last successful fetch and accepted
submission as timestamps, the buffer depth, submit latency and submissions by outcome. The node
calls `record_fetch`, `record_retry`, `record_submission`, `set_buffer_depth` and
`record_error` where it already logs those events.

`/healthz` tells "running but failing" apart from "down" (down: nothing answers at all). Its JSON
says when the node last fetched, last had a submission accepted and last failed, and why. The
HTTP status follows one rule, `health_answer` (time passed in):

* 200 `ok`: a submission was accepted within `stale_after_seconds` (default 180: three minutes
  of candles; the node submits one a minute);
* 200 `starting`: none accepted yet, and the node started less than `stale_after_seconds` ago
  (a probe must not kill a node that has not had its first minute yet);
* 503 `failing`: otherwise, with `reason` saying what fails (fetching from the exchange, or
  delivering to the aggregator: the buffer then holds the minutes it could not deliver).

A simulated node says `"simulated": true` in its answer and in `oracle_node_info`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from pydantic import Field

from common.metrics import MetricsSettings, new_registry
from common.settings import Seconds
from common.timeutil import Clock, system_clock

# The aggregator serves its metrics on 9150; a node on 9160 (several nodes on one host each need
# their own `[metrics] port`, e.g. 9161, 9162, 9163 for the shipped oracle-node-{1,2,3}.toml).
NODE_METRICS_PORT: Final = 9160

PREFIX: Final = "oracle_node"

FETCH_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60)
SKEW_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 45, 60)
SUBMIT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# What a retry can be for (oracle_node.fetcher's retryable failures); anything else is "other".
RETRY_CAUSES: Final = frozenset(
    {"rate_limit", "http_5xx", "network", "timeout", "malformed", "not_yet_available"}
)
# How a delivery attempt ended (oracle_node.submitter): stored or duplicate, refused for good,
# or the aggregator could not be reached (the observation stays buffered).
SUBMIT_OUTCOMES: Final = frozenset({"accepted", "duplicate", "rejected", "unreachable"})
FETCH_OUTCOMES: Final = frozenset({"ok", "failed", "skipped"})
_MAX_ERROR_TEXT: Final = 300

HealthStatus = Literal["ok", "starting", "failing"]


class NodeMetricsSettings(MetricsSettings):
    """`[metrics]` of a node: the endpoint, and after how long without acceptance it is failing."""

    port: int = Field(NODE_METRICS_PORT, ge=0, le=65535)
    """Metrics and /healthz HTTP port (0: any free port)"""
    stale_after_seconds: Seconds = Field(180.0, ge=60, le=86400)
    """/healthz answers 503 when no submission was accepted for this long"""


@dataclass(frozen=True, slots=True)
class Event:
    """When something happened (unix seconds), for which candle minute, and how."""

    at: float
    minute: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NodeHealthState:
    """What /healthz reports; replaced whole on each event, so readers see one consistent state."""

    started_at: float
    last_fetch: Event | None = None
    last_fetch_ok: bool = False
    last_good_fetch: Event | None = None
    last_accepted: Event | None = None
    last_error: Event | None = None
    buffer_depth: int = 0


def _event(event: Event | None, now: float) -> dict[str, object] | None:
    if event is None:
        return None
    answer: dict[str, object] = {"at": event.at, "age_seconds": round(max(0.0, now - event.at), 3)}
    if event.minute is not None:
        answer["minute"] = event.minute
    if event.detail:
        answer["detail"] = event.detail
    return answer


def health_answer(
    state: NodeHealthState,
    now: float,
    *,
    stale_after: float,
    exchange: str,
    node_id: str,
    simulated: bool,
) -> tuple[int, dict[str, object]]:
    """The documented rule (module docstring): the HTTP status and the JSON body."""
    status: HealthStatus
    accepted = state.last_accepted
    if accepted is not None and now - accepted.at <= stale_after:
        status, reason = "ok", "submissions are being accepted"
    elif accepted is None and now - state.started_at < stale_after:
        status, reason = "starting", "no submission accepted yet since the start"
    else:
        status = "failing"
        since = "since the start" if accepted is None else f"for {now - accepted.at:.0f} s"
        if state.last_fetch is not None and not state.last_fetch_ok:
            what = "fetching candles from the exchange fails"
        elif state.buffer_depth:
            what = f"delivery to the aggregator fails ({state.buffer_depth} minute(s) buffered)"
        else:
            what = "nothing was delivered"
        reason = f"no submission accepted {since}: {what}"
    body: dict[str, object] = {
        "status": status,
        "reason": reason,
        "exchange": exchange,
        "node_id": node_id,
        "simulated": simulated,
        "now": now,
        "started_at": state.started_at,
        "stale_after_seconds": stale_after,
        "last_fetch": _event(state.last_fetch, now),
        "last_fetch_ok": state.last_fetch_ok,
        "last_successful_fetch": _event(state.last_good_fetch, now),
        "last_accepted_submission": _event(accepted, now),
        "last_error": _event(state.last_error, now),
        "buffer_depth": state.buffer_depth,
    }
    return (503 if status == "failing" else 200), body


class NodeMetrics:
    """One node's metric objects (own registry) and its health state."""

    def __init__(
        self,
        *,
        exchange: str,
        node_id: str,
        simulated: bool,
        settings: NodeMetricsSettings | None = None,
        clock: Clock = system_clock,
        registry: CollectorRegistry | None = None,
        transport: str = "unary",
    ) -> None:
        self.registry = registry if registry is not None else new_registry()
        self.settings = settings if settings is not None else NodeMetricsSettings()
        self._exchange = exchange
        self._node_id = node_id
        self._simulated = simulated
        self._clock = clock
        self._lock = threading.Lock()  # event updates come from the loop, reads from HTTP
        self._state = NodeHealthState(started_at=clock())
        registry_ = self.registry
        labels = ("exchange",)

        Info(PREFIX, "The node's identity and mode", registry=registry_).info(
            {
                "exchange": exchange,
                "node_id": node_id,
                "simulated": "true" if simulated else "false",
                "transport": transport,
            }
        )
        self._fetch_duration = Histogram(
            f"{PREFIX}_fetch_duration_seconds",
            "Time to fetch a closed candle from the exchange, retries included, by outcome",
            (*labels, "outcome"),
            buckets=FETCH_BUCKETS,
            registry=registry_,
        )
        self._fetch_skew = Histogram(
            f"{PREFIX}_fetch_skew_seconds",
            "Seconds after the minute boundary (XX:00) a fetch started and finished",
            (*labels, "phase"),
            buckets=SKEW_BUCKETS,
            registry=registry_,
        )
        self._fetches = Counter(
            f"{PREFIX}_fetches",
            "Fetch cycles by outcome (ok, failed, skipped at the deadline)",
            (*labels, "outcome"),
            registry=registry_,
        )
        self._retries = Counter(
            f"{PREFIX}_retries",
            "Exchange request retries by cause",
            (*labels, "cause"),
            registry=registry_,
        )
        self._last_fetch = Gauge(
            f"{PREFIX}_last_fetch_success_timestamp_seconds",
            "Unix time of the last successful fetch",
            labels,
            registry=registry_,
        ).labels(exchange)
        self._last_submit = Gauge(
            f"{PREFIX}_last_submit_success_timestamp_seconds",
            "Unix time of the last submission the aggregator accepted",
            labels,
            registry=registry_,
        ).labels(exchange)
        self._buffer_depth = Gauge(
            f"{PREFIX}_buffer_depth",
            "Observations waiting for delivery to the aggregator",
            labels,
            registry=registry_,
        ).labels(exchange)
        self._submit_duration = Histogram(
            f"{PREFIX}_submit_duration_seconds",
            "Time of one delivery attempt to the aggregator, by outcome",
            (*labels, "outcome"),
            buckets=SUBMIT_BUCKETS,
            registry=registry_,
        )
        self._submissions = Counter(
            f"{PREFIX}_submissions",
            "Delivery attempts by outcome (accepted, duplicate, rejected, unreachable)",
            (*labels, "outcome"),
            registry=registry_,
        )
        self._last_fetch.set(math.nan)
        self._last_submit.set(math.nan)
        self._buffer_depth.set(0)

    # -- events -------------------------------------------------------------------------------

    def record_fetch(
        self,
        *,
        outcome: str,
        seconds: float,
        start_skew: float,
        finish_skew: float,
        minute: int,
        now: float,
        error: str = "",
    ) -> None:
        """A fetch cycle ended: `outcome` ok, failed, or skipped (not published by the deadline)."""
        label = outcome if outcome in FETCH_OUTCOMES else "failed"
        self._fetch_duration.labels(self._exchange, label).observe(max(0.0, seconds))
        self._fetch_skew.labels(self._exchange, "start").observe(max(0.0, start_skew))
        self._fetch_skew.labels(self._exchange, "finish").observe(max(0.0, finish_skew))
        self._fetches.labels(self._exchange, label).inc()
        ok = label == "ok"
        event = Event(now, minute, "" if ok else _clip(error))
        with self._lock:
            state = replace(self._state, last_fetch=event, last_fetch_ok=ok)
            if ok:
                state = replace(state, last_good_fetch=event)
            elif error:
                state = replace(state, last_error=Event(now, minute, _clip(error)))
            self._state = state
        if ok:
            self._last_fetch.set(now)

    def record_retry(self, cause: str) -> None:
        self._retries.labels(self._exchange, cause if cause in RETRY_CAUSES else "other").inc()

    def record_submission(
        self, *, outcome: str, seconds: float, minute: int, now: float, error: str = ""
    ) -> None:
        """One delivery attempt ended (accepted, duplicate, rejected or unreachable)."""
        label = outcome if outcome in SUBMIT_OUTCOMES else "rejected"
        self._submit_duration.labels(self._exchange, label).observe(max(0.0, seconds))
        self._submissions.labels(self._exchange, label).inc()
        with self._lock:
            if label in {"accepted", "duplicate"}:
                self._state = replace(self._state, last_accepted=Event(now, minute))
            else:
                detail = _clip(error) or f"submission {label}"
                self._state = replace(self._state, last_error=Event(now, minute, detail))
        if label in {"accepted", "duplicate"}:
            self._last_submit.set(now)

    def set_buffer_depth(self, depth: int) -> None:
        self._buffer_depth.set(depth)
        with self._lock:
            self._state = replace(self._state, buffer_depth=depth)

    def record_error(self, message: str, now: float, minute: int | None = None) -> None:
        """Any other failure worth showing on /healthz (e.g. a cycle that failed unexpectedly)."""
        with self._lock:
            self._state = replace(self._state, last_error=Event(now, minute, _clip(message)))

    # -- /healthz -------------------------------------------------------------------------------

    @property
    def state(self) -> NodeHealthState:
        return self._state

    def health(self) -> tuple[int, dict[str, object]]:
        """The /healthz answer now (called by the metrics server's thread)."""
        return health_answer(
            self._state,
            self._clock(),
            stale_after=self.settings.stale_after_seconds,
            exchange=self._exchange,
            node_id=self._node_id,
            simulated=self._simulated,
        )


def _clip(text: str) -> str:
    # Exception texts can be long (a response body); the health answer stays small.
    single_line = " ".join(text.split())
    if len(single_line) <= _MAX_ERROR_TEXT:
        return single_line
    return single_line[: _MAX_ERROR_TEXT - 3] + "..."
