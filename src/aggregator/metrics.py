"""The aggregator's Prometheus metrics: names, labels, and one function per event to record.

Every name the dashboard (`deploy/grafana/oracle-dashboard.json`) and the alerts
(`deploy/prometheus/alerts.yml`) use is declared here, and a test checks they match. The service
calls one method per event (`record_submission`, `set_aggregate`, `record_round_closed`,
`observe_rpc`, ...), so wiring is a line per event; `AggregatorMetrics` is also the subscription
hub's observer (`subscribers_changed`, `subscriber_dropped`).

Label values are bounded, whatever clients send: an exchange label is one of the configured
exchanges or "other" (a refused submission may name anything), free-form reasons and outcomes
are normalised and capped at a few dozen distinct values (then "other"), RPC methods are the
service's own names. Prices are `Decimal` until here; a gauge is a float by nature. The price
gauges carry `simulated="true"` in simulate mode, so a dashboard can never show a simulated price
as a real one.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Final

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from common.metrics import MetricsSettings, new_registry
from common.proto import oracle_pb2
from common.timeutil import MINUTE, Clock, system_clock

# The aggregator's default metrics port; the nodes default to 9160 (oracle_node.metrics).
AGGREGATOR_METRICS_PORT: Final = 9150
DEFAULT_SETTINGS: Final = MetricsSettings(port=AGGREGATOR_METRICS_PORT)

PREFIX: Final = "oracle_aggregator"
OTHER: Final = "other"

STATUS_LABELS: Final[Mapping[int, str]] = {
    oracle_pb2.PRICE_STATUS_OK: "ok",
    oracle_pb2.PRICE_STATUS_DEGRADED: "degraded",
    oracle_pb2.PRICE_STATUS_UNKNOWN: "unknown",
}
CLOSE_REASONS: Final[Mapping[int, str]] = {
    oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED: "all_reported",
    oracle_pb2.ROUND_CLOSE_REASON_DEADLINE: "deadline",
}
RPC_METHODS: Final = frozenset(
    method.name for method in oracle_pb2.DESCRIPTOR.services_by_name["OracleService"].methods
)

# Seconds after the candle closed (minute + 60): a round closes at once when all report,
# at `round_deadline` (45 s by default) otherwise.
ROUND_CLOSE_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 50, 60, 120)
RPC_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
DB_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

_LABEL_TEXT: Final = re.compile(r"[^a-z0-9_]+")
_MAX_LABEL_LENGTH: Final = 40


class BoundedLabels:
    """Normalises free-form label values and admits at most `limit` distinct ones."""

    def __init__(self, limit: int, known: Collection[str] = ()) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        for value in known:
            self.admit(value)

    def admit(self, value: str) -> str:
        text = _LABEL_TEXT.sub("_", value.lower()).strip("_")[:_MAX_LABEL_LENGTH] or OTHER
        if text in self._seen:
            return text
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(text)
        return text


class AggregatorMetrics:
    """The aggregator's metric objects in a registry of their own."""

    def __init__(
        self,
        *,
        exchanges: Collection[str],
        simulated: bool,
        version: str,
        clock: Clock = system_clock,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else new_registry()
        self._exchanges = frozenset(exchanges)
        self._clock = clock
        self._outcomes = BoundedLabels(16, ("counted", "stored", "pending", "duplicate", "late"))
        self._reasons = BoundedLabels(48)
        self._drop_reasons = BoundedLabels(8, ("behind", "round_queue_full"))
        self._operations = BoundedLabels(8, ("observation", "round", "node"))
        self._aggregate_minute: int | None = None
        simulated_label = "true" if simulated else "false"
        registry_ = self.registry

        Info(f"{PREFIX}", "The aggregator's version and mode", registry=registry_).info(
            {"version": version, "simulated": simulated_label}
        )
        self.submissions = Counter(
            f"{PREFIX}_submissions",
            "Accepted submissions by exchange, outcome and transport (unary SubmitPrice, stream)",
            ("exchange", "outcome", "transport"),
            registry=registry_,
        )
        self.refusals = Counter(
            f"{PREFIX}_refusals",
            "Refused submissions by reason (the rule that refused them)",
            ("reason",),
            registry=registry_,
        )
        self._price = Gauge(
            f"{PREFIX}_price_usd",
            "The live aggregate BTC price in USD (NaN while there is none)",
            ("simulated",),
            registry=registry_,
        ).labels(simulated_label)
        self._confidence = Gauge(
            f"{PREFIX}_confidence_usd",
            "Confidence of the live aggregate in USD: price +- confidence",
            ("simulated",),
            registry=registry_,
        ).labels(simulated_label)
        self._input_price = Gauge(
            f"{PREFIX}_input_price_usd",
            "Each exchange's input to the live aggregate, in USD (NaN when it has none)",
            ("exchange", "simulated"),
            registry=registry_,
        )
        self._simulated_label = simulated_label
        self._status = Gauge(
            f"{PREFIX}_status",
            "1 for the live price status (ok, degraded, unknown), 0 for the others",
            ("status",),
            registry=registry_,
        )
        self._minute = Gauge(
            f"{PREFIX}_aggregate_minute_timestamp_seconds",
            "The candle minute (open time, unix seconds) of the live aggregate",
            registry=registry_,
        )
        Gauge(
            f"{PREFIX}_result_age_seconds",
            "Seconds since the candle of the live aggregate closed (NaN before the first)",
            registry=registry_,
        ).set_function(self._result_age)
        self._active_nodes = Gauge(
            f"{PREFIX}_active_nodes",
            "Nodes that submitted within the node timeout",
            registry=registry_,
        )
        self._draining = Gauge(
            f"{PREFIX}_draining", "1 once shutdown has started", registry=registry_
        )
        self.round_close_delay = Histogram(
            f"{PREFIX}_round_close_delay_seconds",
            "Seconds between the candle's close (minute + 60) and its round's close",
            ("close_reason",),
            buckets=ROUND_CLOSE_BUCKETS,
            registry=registry_,
        )
        self.rounds_closed = Counter(
            f"{PREFIX}_rounds_closed",
            "Closed rounds by status and why they closed",
            ("status", "close_reason"),
            registry=registry_,
        )
        self.rpc_duration = Histogram(
            f"{PREFIX}_rpc_duration_seconds",
            "Server-side handling time of unary RPCs by method and status code",
            ("method", "code"),
            buckets=RPC_BUCKETS,
            registry=registry_,
        )
        self._subscribers = Gauge(
            f"{PREFIX}_subscribers",
            "SubscribePrices subscribers receiving updates",
            registry=registry_,
        )
        self.subscribers_dropped = Counter(
            f"{PREFIX}_subscribers_dropped",
            "Subscribers dropped for falling behind, by reason",
            ("reason",),
            registry=registry_,
        )
        self.db_write_duration = Histogram(
            f"{PREFIX}_db_write_duration_seconds",
            "Durable history writes (commit included) by operation",
            ("operation",),
            buckets=DB_BUCKETS,
            registry=registry_,
        )
        for status in STATUS_LABELS.values():
            self._status.labels(status).set(0)
        self._status.labels("unknown").set(1)
        self._price.set(math.nan)
        self._confidence.set(math.nan)
        self._minute.set(math.nan)

    # -- submissions --------------------------------------------------------------------------

    def exchange_label(self, exchange: str) -> str:
        return exchange if exchange in self._exchanges else OTHER

    def record_submission(self, exchange: str, outcome: str, *, transport: str = "unary") -> None:
        """An accepted submission; `outcome` as the book names it (counted, duplicate, ...)."""
        self.submissions.labels(
            self.exchange_label(exchange),
            self._outcomes.admit(outcome),
            "stream" if transport == "stream" else "unary",
        ).inc()

    def record_refusal(self, reason: str) -> None:
        """A refused submission; `reason` is the rule's stable name (e.g. "price", "timestamp")."""
        self.refusals.labels(self._reasons.admit(reason)).inc()

    # -- the live aggregate -----------------------------------------------------------------------

    def set_aggregate(
        self,
        *,
        price: Decimal | None,
        confidence: Decimal | None,
        status: oracle_pb2.PriceStatus,
        minute: int | None,
        inputs: Mapping[str, Decimal] | None = None,
    ) -> None:
        """The live aggregate changed (or its status did): price, confidence, status, inputs."""
        self._price.set(math.nan if price is None else float(price))
        self._confidence.set(math.nan if confidence is None else float(confidence))
        current = STATUS_LABELS.get(status, "unknown")
        for label in STATUS_LABELS.values():
            self._status.labels(label).set(1 if label == current else 0)
        if minute is not None:
            self._aggregate_minute = minute
            self._minute.set(minute)
        if inputs is not None:
            for exchange in self._exchanges:
                value = inputs.get(exchange)
                self._input_price.labels(exchange, self._simulated_label).set(
                    math.nan if value is None else float(value)
                )

    def set_active_nodes(self, count: int) -> None:
        self._active_nodes.set(count)

    def set_draining(self, draining: bool) -> None:
        self._draining.set(1 if draining else 0)

    def _result_age(self) -> float:
        # Read at scrape time: the age grows with time alone, between submissions.
        if self._aggregate_minute is None:
            return math.nan
        return max(0.0, self._clock() - (self._aggregate_minute + MINUTE))

    # -- rounds ------------------------------------------------------------------------------

    def record_round_closed(
        self,
        *,
        minute: int,
        closed_at: float,
        status: oracle_pb2.PriceStatus,
        close_reason: oracle_pb2.RoundCloseReason,
    ) -> None:
        """A round closed at `closed_at` (unix seconds): its delay after the candle's close."""
        reason = CLOSE_REASONS.get(close_reason, OTHER)
        self.round_close_delay.labels(reason).observe(max(0.0, closed_at - (minute + MINUTE)))
        self.rounds_closed.labels(STATUS_LABELS.get(status, "unknown"), reason).inc()

    # -- RPCs, subscribers, database --------------------------------------------------------

    def observe_rpc(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        name = method if method in RPC_METHODS else OTHER
        self.rpc_duration.labels(name, code.name).observe(seconds)

    @contextmanager
    def time_rpc(self, method: str) -> Iterator[RpcTimer]:
        """`with metrics.time_rpc("SubmitPrice") as timer: ...; timer.code = error.status`."""
        timer = RpcTimer()
        started = time.perf_counter()
        try:
            yield timer
        except asyncio.CancelledError:
            timer.code = grpc.StatusCode.CANCELLED  # the client went away
            raise
        except BaseException:
            if timer.code is grpc.StatusCode.OK:
                timer.code = grpc.StatusCode.INTERNAL
            raise
        finally:
            self.observe_rpc(method, timer.code, time.perf_counter() - started)

    def subscribers_changed(self, attached: int) -> None:
        self._subscribers.set(attached)

    def subscriber_dropped(self, reason: str) -> None:
        self.subscribers_dropped.labels(self._drop_reasons.admit(reason)).inc()

    def observe_db_write(self, operation: str, seconds: float) -> None:
        self.db_write_duration.labels(self._operations.admit(operation)).observe(seconds)


class RpcTimer:
    """The status code an RPC ended with; OK unless the handler sets another."""

    __slots__ = ("code",)

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK
