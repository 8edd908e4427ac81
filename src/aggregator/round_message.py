"""Domain rounds to and from the wire: `RoundResult` -> `oracle_pb2.Round` and back.

One rendering for GetRound, the history's RoundRecord, the round listeners and the live answer's
inputs, so a closed round reads the same wherever it is served. The way back
(`result_of_round`) exists for recovery: a round restored from history must serve the live value
exactly as it was closed, without re-judging it.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from aggregator.aggregation import ExchangePrice, Report
from aggregator.rounds import Judged, Method, RoundResult, Rules, Status, to_e8
from common.proto import oracle_pb2
from common.timeutil import format_minute

STATUS_TO_WIRE = {
    Status.OK: oracle_pb2.PRICE_STATUS_OK,
    Status.DEGRADED: oracle_pb2.PRICE_STATUS_DEGRADED,
    Status.UNKNOWN: oracle_pb2.PRICE_STATUS_UNKNOWN,
}
_STATUS_FROM_WIRE = {wire: status for status, wire in STATUS_TO_WIRE.items()}
METHOD_TO_WIRE = {
    "mean": oracle_pb2.AGGREGATION_METHOD_MEAN,
    "median": oracle_pb2.AGGREGATION_METHOD_MEDIAN,
}
_E8 = Decimal(10) ** -8


def fill_input(target: oracle_pb2.RoundInput, item: Judged) -> None:
    """One judged input as a RoundInput, with its node reports."""
    price = item.price
    target.source = price.exchange
    target.price = float(price.price)
    target.price_e8 = to_e8(price.price)
    target.quote = price.quote
    target.usd_price = float(item.usd_price)
    target.usd_price_e8 = to_e8(item.usd_price)
    target.minute = price.minute
    target.deviation = float(item.deviation)
    target.excluded_reason = item.reason
    target.excluded_detail = item.detail
    for node_id, report in price.reports:
        target.observations.add(
            node_id=node_id,
            price=float(report.price),
            price_e8=to_e8(report.price),
            quote=report.quote,
            symbol=report.symbol,
            received_at_ms=int(report.received_at * 1000),
            signature=report.signature,
            public_key=report.public_key,
        )


def summary_text(result: RoundResult, *, simulated: bool) -> str:
    """`SIMULATED BTC/USD 106160.42 ± 9.68 (OK, mean of 3) for 10:41Z`, or why there is none."""
    label = "SIMULATED " if simulated else ""
    when = format_minute(result.minute)
    if result.price is None or result.confidence is None:
        return f"{label}no price for {when} (UNKNOWN): {result.summary}"
    text = (
        f"{label}BTC/USD {result.price:.2f} ± {result.confidence:.2f} ({result.status.value}, "
        f"{result.method} of {len(result.kept)}) for {when}"
    )
    if result.usdt_at_par:
        text += "; USDT taken at par (no USDT/USD rate)"
    if result.status is Status.DEGRADED:
        text += f"; {result.summary}"
    elif result.excluded:
        text += "; excluded " + ", ".join(
            f"{item.exchange} ({item.reason})" for item in result.excluded
        )
    return text


def round_message(
    result: RoundResult,
    *,
    closed: bool,
    closed_at: float,
    close_reason: int,
    simulated: bool,
    expected: Sequence[str],
    late_reports: int = 0,
) -> oracle_pb2.Round:
    """The round as served (GetRound, history, listeners)."""
    message = oracle_pb2.Round(
        minute=result.minute,
        status=STATUS_TO_WIRE[result.status],
        method=METHOD_TO_WIRE[result.method],
        closed=closed,
        simulated=simulated,
        usdt_converted=result.usdt_converted,
        usdt_at_par=result.usdt_at_par,
        late_reports=late_reports,
        expected_sources=list(expected),
        message=summary_text(result, simulated=simulated),
    )
    if closed:
        message.closed_at_ms = int(closed_at * 1000)
        message.close_reason = close_reason  # type: ignore[assignment]
    if result.price is not None and result.confidence is not None:
        message.price = float(result.price)
        message.price_e8 = to_e8(result.price)
        message.confidence = float(result.confidence)
        message.confidence_e8 = to_e8(result.confidence)
    if result.usdt_rate is not None:
        message.usdt_usd_rate = float(result.usdt_rate)
    for item in result.kept:
        fill_input(message.inputs.add(), item)
    for item in result.excluded:
        fill_input(message.excluded.add(), item)
    return message


def _exact(e8: int, value: float) -> Decimal:
    return Decimal(e8) * _E8 if e8 else Decimal(repr(value))


def _judged(item: oracle_pb2.RoundInput) -> Judged:
    reports = tuple(
        (
            observation.node_id,
            Report(
                _exact(observation.price_e8, observation.price),
                observation.quote,
                observation.received_at_ms / 1000,
                observation.symbol,
                bytes(observation.signature),
                bytes(observation.public_key),
            ),
        )
        for observation in item.observations
    )
    price = ExchangePrice(
        exchange=item.source,
        minute=int(item.minute),
        price=_exact(item.price_e8, item.price),
        quote=item.quote,
        node_ids=tuple(node_id for node_id, _ in reports),
        received_at=max((report.received_at for _, report in reports), default=0.0),
        reports=reports,
    )
    return Judged(
        price,
        _exact(item.usd_price_e8, item.usd_price),
        Decimal(repr(item.deviation)),
        item.excluded_reason,
        item.excluded_detail,
    )


def result_of_round(message: oracle_pb2.Round, rules: Rules) -> RoundResult:
    """The verdict a stored round records (recovery), exactly as it was closed."""
    status = _STATUS_FROM_WIRE.get(message.status, Status.UNKNOWN)
    method: Method = "median" if message.method == oracle_pb2.AGGREGATION_METHOD_MEDIAN else "mean"
    priced = status is not Status.UNKNOWN
    summary = message.message.partition("; ")[2] if status is Status.DEGRADED else ""
    if status is Status.UNKNOWN:
        summary = message.message.partition(": ")[2]
    return RoundResult(
        minute=int(message.minute),
        status=status,
        price=_exact(message.price_e8, message.price) if priced else None,
        confidence=_exact(message.confidence_e8, message.confidence) if priced else None,
        method=method if message.method else rules.method,
        kept=tuple(_judged(item) for item in message.inputs),
        excluded=tuple(_judged(item) for item in message.excluded),
        usdt_rate=Decimal(repr(message.usdt_usd_rate)) if message.usdt_converted else None,
        usdt_at_par=message.usdt_at_par,
        summary=summary,
    )
