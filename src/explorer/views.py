"""Pure conversions from the aggregator's wire messages to the explorer's JSON documents.

Everything the page and the JSON API show passes through here, so both say the same thing. Prices
leave as exact decimal strings built from the `*_e8` integer fields (never long floats); an older
aggregator that sends only the double gets it rounded to 8 decimals and `"exact": false`. Time is
passed in (`now`), never read here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from common.errors import InvalidObservationError
from common.exchanges import DEFAULT_QUOTE
from common.observation import ObservationPayload, verify_observation
from common.proto import oracle_pb2
from common.timeutil import MINUTE, format_minute

E8 = 10**8
_EIGHT_PLACES = Decimal("0.00000001")
# Deviations are ratios for display, not prices: six decimals (0.0001 %) is plenty.
_DEVIATION_PLACES = 6

STATUS_NAMES: dict[int, str] = {
    oracle_pb2.PRICE_STATUS_OK: "OK",
    oracle_pb2.PRICE_STATUS_DEGRADED: "DEGRADED",
    oracle_pb2.PRICE_STATUS_UNKNOWN: "UNKNOWN",
}
METHOD_NAMES: dict[int, str] = {
    oracle_pb2.AGGREGATION_METHOD_MEAN: "mean",
    oracle_pb2.AGGREGATION_METHOD_MEDIAN: "median",
}
CLOSE_REASONS: dict[int, str] = {
    oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED: "all_reported",
    oracle_pb2.ROUND_CLOSE_REASON_DEADLINE: "deadline",
}
SIGNATURE_STATUS: dict[int, str] = {
    oracle_pb2.SIGNATURE_STATUS_UNSIGNED: "unsigned",
    oracle_pb2.SIGNATURE_STATUS_VERIFIED: "verified",
}


def e8_text(value_e8: int) -> str:
    """`10637512345678` -> `"106375.12345678"`: exact, always eight decimals."""
    whole, fraction = divmod(value_e8, E8)
    return f"{whole}.{fraction:08d}"


def decimal_text(value_e8: int, value: float) -> tuple[str, bool]:
    """The exact text of a fixed-point field, or of its double when the e8 field is not sent.

    Returns (text, exact). A double is rounded half to even to 8 decimals, as the e8 fields are.
    """
    if value_e8:
        return e8_text(value_e8), True
    if not math.isfinite(value) or value == 0:
        return e8_text(0), True
    rounded = Decimal(repr(value)).quantize(_EIGHT_PLACES, rounding=ROUND_HALF_EVEN)
    return f"{rounded:f}", False


def to_e8(text: str) -> int:
    """Inverse of `e8_text` (for arithmetic on the exact strings)."""
    return int((Decimal(text) * E8).to_integral_value(rounding=ROUND_HALF_EVEN))


def minute_utc(minute: int) -> str | None:
    return format_minute(minute) if minute > 0 else None


def ms_utc(unix_ms: int) -> str | None:
    """`2026-11-25T10:41:07.250Z` for a unix-milliseconds field; None when unset."""
    if unix_ms <= 0:
        return None
    moment = datetime.fromtimestamp(unix_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{unix_ms % 1000:03d}Z"


def deviation_from(usd_text: str, aggregate_text: str | None) -> str | None:
    """(input - aggregate) / aggregate as a signed decimal ratio string, exactly computed."""
    if aggregate_text is None:
        return None
    aggregate = Decimal(aggregate_text)
    if aggregate == 0:
        return None
    ratio = (Decimal(usd_text) - aggregate) / aggregate
    return f"{ratio.quantize(Decimal(1).scaleb(-8), rounding=ROUND_HALF_EVEN):f}"


def _deviation(value: float) -> float:
    return round(value, _DEVIATION_PLACES) if math.isfinite(value) else 0.0


def status_name(status: int, *, has_price: bool) -> str:
    """The status; an aggregator older than the field gets OK exactly when it had a price."""
    name = STATUS_NAMES.get(status)
    if name is not None:
        return name
    return "OK" if has_price else "UNKNOWN"


def signature_check(
    observation: oracle_pb2.NodeObservation, exchange: str, minute: int, *, simulated: bool
) -> str:
    """The explorer's own BIP340 check of a node's signature over what the round says it saw.

    "verified": the signature is the key's over the canonical observation (docs/signing.md) of
    this node, exchange, pair, minute, exact price and simulated flag; "invalid": it is not (the
    stored record and its signature disagree); "unsigned"; "unverifiable": the record lacks what
    the encoding needs (no exact price, say, from an aggregator older than price_e8).
    """
    if not observation.signature:
        return "unsigned"
    try:
        payload = ObservationPayload(
            node_id=observation.node_id,
            exchange=exchange,
            base="BTC",  # rounds price BTC; USDT/USD rate observations are kept apart
            quote=observation.quote or DEFAULT_QUOTE.get(exchange, "USD"),
            symbol=observation.symbol,
            minute=minute,
            price_e8=observation.price_e8,
            simulated=simulated,
        )
    except (InvalidObservationError, ValueError):
        return "unverifiable"
    valid = verify_observation(observation.public_key, payload, observation.signature)
    return "verified" if valid else "invalid"


def observation_view(
    observation: oracle_pb2.NodeObservation, exchange: str, minute: int, *, simulated: bool
) -> dict[str, Any]:
    price, _ = decimal_text(observation.price_e8, observation.price)
    return {
        "node_id": observation.node_id,
        "price": price,
        "quote": observation.quote,
        "symbol": observation.symbol,
        "received_at_ms": observation.received_at_ms,
        "received_at_utc": ms_utc(observation.received_at_ms),
        "signed": bool(observation.signature),
        "signature_check": signature_check(observation, exchange, minute, simulated=simulated),
        "signature": observation.signature.hex(),
        "public_key": observation.public_key.hex(),
    }


def input_view(
    item: oracle_pb2.RoundInput, aggregate: str | None, *, simulated: bool
) -> dict[str, Any]:
    """One exchange's input to a round or to the live aggregate."""
    price, _ = decimal_text(item.price_e8, item.price)
    usd_price: str | None
    if item.usd_price_e8 or item.usd_price:
        usd_price, _ = decimal_text(item.usd_price_e8, item.usd_price)
    else:
        usd_price = price if item.quote in ("", "USD") else None
    return {
        "exchange": item.source,
        "price": price,
        "quote": item.quote or "USD",
        "usd_price": usd_price,
        "minute": item.minute,
        "minute_utc": minute_utc(item.minute),
        "deviation": deviation_from(usd_price, aggregate) if usd_price is not None else None,
        "deviation_from_median": _deviation(item.deviation),
        "excluded_reason": item.excluded_reason or None,
        "excluded_detail": item.excluded_detail or None,
        "observations": [
            observation_view(obs, item.source, item.minute, simulated=simulated)
            for obs in item.observations
        ],
        "node_ids": [obs.node_id for obs in item.observations],
    }


def live_input_view(point: oracle_pb2.PriceDataPoint, aggregate: str | None) -> dict[str, Any]:
    """One exchange's latest input to the live aggregate (GetPriceResponse.recent_prices)."""
    price, exact = decimal_text(point.price_e8, point.price)
    quote = point.quote or "USD"
    usd_price: str | None
    if quote == "USD":
        usd_price = price
    elif point.usd_price:
        usd_price, _ = decimal_text(0, point.usd_price)
    else:
        usd_price = None
    node_ids = [node for node in point.node_id.split(",") if node]
    return {
        "exchange": point.source,
        "price": price,
        "exact": exact,
        "quote": quote,
        "usd_price": usd_price,
        "minute": point.timestamp,
        "minute_utc": minute_utc(point.timestamp),
        "deviation": deviation_from(usd_price, aggregate) if usd_price is not None else None,
        "deviation_from_median": _deviation(point.deviation),
        "node_ids": node_ids,
        "node_count": point.node_count or len(node_ids),
        "received_at": point.received_at,
    }


def price_view(response: oracle_pb2.GetPriceResponse, now: float) -> dict[str, Any]:
    """The live aggregate as the API serves it (`now` gives its age)."""
    has_price = response.success and (response.aggregated_price_e8 or response.aggregated_price)
    price: str | None = None
    confidence: str | None = None
    exact = True
    if has_price:
        price, exact = decimal_text(response.aggregated_price_e8, response.aggregated_price)
        # An aggregator older than `status` does not compute a confidence: none, not "± 0".
        if response.status != oracle_pb2.PRICE_STATUS_UNSPECIFIED:
            confidence, _ = decimal_text(response.confidence_e8, response.confidence)
    minute = response.aggregate_minute
    return {
        "pair": "BTC/USD",
        "available": bool(has_price),
        "price": price,
        "confidence": confidence,
        "exact": exact,
        "status": status_name(response.status, has_price=bool(has_price)),
        "method": METHOD_NAMES.get(response.method),
        "minute": minute,
        "minute_utc": minute_utc(minute),
        "final": response.final,
        "age_seconds": max(0, int(now - (minute + MINUTE))) if minute else None,
        "simulated": response.simulated,
        "data_points": response.data_points,
        "active_nodes": response.active_nodes,
        "message": response.message,
        "inputs": [live_input_view(point, price) for point in response.recent_prices],
        "excluded": [
            input_view(item, price, simulated=response.simulated) for item in response.excluded
        ],
        "usdt": {
            "converted": response.usdt_converted,
            "rate": f"{Decimal(repr(response.usdt_usd_rate)):f}"
            if response.usdt_converted
            else None,
            "at_par": response.usdt_at_par,
        },
    }


def no_price_view() -> dict[str, Any]:
    """The live document's shape with nothing in it: the aggregator is not reachable."""
    return {
        "pair": "BTC/USD",
        "available": False,
        "price": None,
        "confidence": None,
        "exact": True,
        "status": None,
        "method": None,
        "minute": 0,
        "minute_utc": None,
        "final": False,
        "age_seconds": None,
        "simulated": False,
        "data_points": 0,
        "active_nodes": 0,
        "message": "",
        "inputs": [],
        "excluded": [],
        "usdt": {"converted": False, "rate": None, "at_par": False},
    }


def round_view(round_: oracle_pb2.Round, *, detail: bool = True) -> dict[str, Any]:
    """A round; without `detail`, its inputs' node observations are left out (lists, chart)."""
    has_price = bool(round_.price_e8 or round_.price)
    price: str | None = None
    confidence: str | None = None
    exact = True
    if has_price:
        price, exact = decimal_text(round_.price_e8, round_.price)
        if round_.status != oracle_pb2.PRICE_STATUS_UNSPECIFIED:
            confidence, _ = decimal_text(round_.confidence_e8, round_.confidence)
    inputs = [input_view(item, price, simulated=round_.simulated) for item in round_.inputs]
    excluded = [input_view(item, price, simulated=round_.simulated) for item in round_.excluded]
    if not detail:
        for item in (*inputs, *excluded):
            del item["observations"]
    return {
        "minute": round_.minute,
        "minute_utc": minute_utc(round_.minute),
        "status": status_name(round_.status, has_price=has_price),
        "price": price,
        "confidence": confidence,
        "exact": exact,
        "method": METHOD_NAMES.get(round_.method),
        "closed": round_.closed,
        "closed_at_ms": round_.closed_at_ms,
        "closed_at_utc": ms_utc(round_.closed_at_ms),
        "close_reason": CLOSE_REASONS.get(round_.close_reason),
        "simulated": round_.simulated,
        "inputs": inputs,
        "excluded": excluded,
        "expected_sources": list(round_.expected_sources),
        "late_reports": round_.late_reports,
        "usdt": {
            "converted": round_.usdt_converted,
            "rate": f"{Decimal(repr(round_.usdt_usd_rate)):f}" if round_.usdt_converted else None,
            "at_par": round_.usdt_at_par,
        },
        "message": round_.message,
    }


def node_view(node: oracle_pb2.NodeInfo, now: float) -> dict[str, Any]:
    last_seen = node.last_seen_ms / 1000
    return {
        "node_id": node.node_id,
        "exchange": node.exchange,
        "active": node.active,
        "last_seen_ms": node.last_seen_ms,
        "last_seen_utc": ms_utc(node.last_seen_ms),
        "last_seen_age_seconds": max(0, int(now - last_seen)) if node.last_seen_ms else None,
        "submissions": node.submissions,
        "last_minute": node.last_minute,
        "signature_status": SIGNATURE_STATUS.get(node.signature_status, "unknown"),
        "public_key": node.public_key.hex(),
    }


def nodes_from_rounds(
    rounds: list[oracle_pb2.Round], now: float, node_timeout: float
) -> list[dict[str, Any]]:
    """What can be said about nodes without ListNodes: from the observations in recent rounds.

    `active` uses the aggregator's default node timeout; the signature status is the explorer's
    own check of the node's latest stored observation (`signature_check`).
    """
    latest: dict[str, tuple[str, oracle_pb2.NodeObservation, int, bool]] = {}
    counts: dict[str, int] = {}
    for round_ in rounds:
        for item in (*round_.inputs, *round_.excluded):
            for obs in item.observations:
                counts[obs.node_id] = counts.get(obs.node_id, 0) + 1
                seen = latest.get(obs.node_id)
                if seen is None or obs.received_at_ms > seen[1].received_at_ms:
                    latest[obs.node_id] = (item.source, obs, item.minute, round_.simulated)
    views: list[dict[str, Any]] = []
    for node_id, (exchange, obs, minute, simulated) in latest.items():
        last_seen = obs.received_at_ms / 1000
        views.append(
            {
                "node_id": node_id,
                "exchange": exchange,
                "active": now - last_seen <= node_timeout,
                "last_seen_ms": obs.received_at_ms,
                "last_seen_utc": ms_utc(obs.received_at_ms),
                "last_seen_age_seconds": max(0, int(now - last_seen)),
                "submissions": counts[node_id],
                "last_minute": minute,
                "signature_status": signature_check(obs, exchange, minute, simulated=simulated),
                "public_key": obs.public_key.hex(),
            }
        )
    views.sort(key=lambda view: (-view["last_seen_ms"], view["node_id"]))
    return views


def nodes_from_live(
    response: oracle_pb2.GetPriceResponse, now: float, node_timeout: float
) -> list[dict[str, Any]]:
    """The last resort without ListNodes or history: the node ids behind the live inputs."""
    views: list[dict[str, Any]] = []
    for point in response.recent_prices:
        for node_id in (node for node in point.node_id.split(",") if node):
            if node_id.startswith("+"):
                continue  # "+N more": the aggregator cut the list
            views.append(
                {
                    "node_id": node_id,
                    "exchange": point.source,
                    "active": now - point.received_at <= node_timeout,
                    "last_seen_ms": point.received_at * 1000,
                    "last_seen_utc": ms_utc(point.received_at * 1000),
                    "last_seen_age_seconds": max(0, int(now - point.received_at)),
                    "submissions": None,
                    "last_minute": point.timestamp,
                    "signature_status": "unknown",
                    "public_key": "",
                }
            )
    views.sort(key=lambda view: (-view["last_seen_ms"], view["node_id"]))
    return views


def cents_text(exact: str | None) -> str:
    """`"106375.12545678"` -> `"106,375.13"` (half up to the cent), `"—"` for no price.

    Integer arithmetic on the exact string, the same as the page's script does, so the server
    rendering and the live updates show the same figure.
    """
    if exact is None:
        return "—"
    value_e8 = to_e8(exact)
    cents = (abs(value_e8) + 500_000) // 1_000_000
    sign = "-" if value_e8 < 0 else ""
    return f"{sign}{cents // 100:,}.{cents % 100:02d}"


def percent_text(ratio: str | None) -> str:
    """`"0.00123400"` -> `"+0.1234 %"`; `"—"` when there is no aggregate to compare with."""
    if ratio is None:
        return "—"
    value = Decimal(ratio) * 100
    return f"{value:+.4f} %"
