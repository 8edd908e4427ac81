"""Re-checking a round from the node keys alone: every node signature, and the arithmetic.

This is what a third party runs on a report (`committer verify`), and what the committer itself runs
before it signs one, so it never vouches for a round whose inputs do not carry the nodes' own
signatures. Node signatures are over `common.observation.encode_observation` (docs/signing.md); the
payload is rebuilt from the report's own fields, so a report whose price differs by one unit from
what a node signed fails here. The arithmetic checks are bounds, not a re-implementation of the
aggregator's rules: each input lies within its nodes' prices, and the round's price is the mean or
median of the kept inputs to within one unit of the last decimal (the aggregator rounds half to
even; a reader need not know how).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from committer.report import ReportInput, RoundFacts, SignedInput
from common.errors import InvalidObservationError
from common.observation import ObservationPayload, verify_observation
from common.proto import oracle_pb2

# The asset every round input prices (USDT/USD rate observations are not round inputs).
ROUND_BASE = "BTC"


@dataclass(frozen=True, slots=True)
class Audit:
    """The outcome of re-checking one round: `ok` only when `problems` is empty."""

    problems: tuple[str, ...]
    signatures_checked: int
    unsigned: int
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def observation_payload(
    node: SignedInput, item: ReportInput, *, simulated: bool
) -> ObservationPayload:
    """The payload the node signed, rebuilt from the report (InvalidObservationError if unfit)."""
    return ObservationPayload(
        node_id=node.node_id,
        exchange=item.source,
        base=ROUND_BASE,
        quote=node.quote,
        symbol=node.symbol,
        minute=item.minute,
        price_e8=node.price_e8,
        simulated=simulated,
    )


def _check_node(
    node: SignedInput,
    item: ReportInput,
    facts: RoundFacts,
    allowlist: Mapping[str, bytes] | None,
) -> str | None:
    where = f"{item.source}/{node.node_id}"
    if not node.signature:
        return None
    if allowlist is not None:
        expected = allowlist.get(node.node_id)
        if expected is None:
            return f"{where}: node not in the given key list"
        if expected != node.public_key:
            return f"{where}: signed with {node.public_key.hex()}, not the listed key"
    try:
        payload = observation_payload(node, item, simulated=facts.simulated)
    except InvalidObservationError as error:
        return f"{where}: observation cannot be rebuilt: {error}"
    if not verify_observation(node.public_key, payload, node.signature):
        return f"{where}: node signature does not verify over its observation"
    return None


def _check_input(item: ReportInput, facts: RoundFacts, *, kept: bool) -> list[str]:
    problems = []
    prices = [node.price_e8 for node in item.observations]
    if kept:
        if item.minute != facts.minute:
            problems.append(f"{item.source}: kept input for minute {item.minute}, not the round's")
        if not prices:
            problems.append(f"{item.source}: kept input without any node observation")
    if prices and not min(prices) <= item.price_e8 <= max(prices):
        problems.append(f"{item.source}: price {item.price_e8} outside its nodes' {prices}")
    return problems


def _check_result(facts: RoundFacts) -> list[str]:
    kept = sorted(item.usd_price_e8 for item in facts.inputs)
    if facts.status == oracle_pb2.PRICE_STATUS_UNKNOWN:
        return [] if facts.price_e8 == 0 else ["UNKNOWN round carries a price"]
    if not kept:
        return ["a round with a price but no kept input"]
    count = len(kept)
    if facts.method == oracle_pb2.AGGREGATION_METHOD_MEDIAN:
        middle = count // 2
        twice_median = 2 * kept[middle] if count % 2 else kept[middle - 1] + kept[middle]
        # Twice the price against twice the median: within one unit of the 8th decimal.
        if abs(2 * facts.price_e8 - twice_median) > 2:
            return [f"price {facts.price_e8} is not the median of the kept inputs {kept}"]
        return []
    # The mean: count x price against the sum, within one unit of the 8th decimal.
    if abs(count * facts.price_e8 - sum(kept)) > count:
        return [f"price {facts.price_e8} is not the mean of the kept inputs {kept}"]
    return []


def audit_round(facts: RoundFacts, *, allowlist: Mapping[str, bytes] | None = None) -> Audit:
    """Check every node signature of `facts` and its arithmetic; `allowlist`: node id -> key."""
    problems: list[str] = []
    checked = unsigned = 0
    for kept, items in ((True, facts.inputs), (False, facts.excluded)):
        for item in items:
            problems += _check_input(item, facts, kept=kept)
            for node in item.observations:
                if not node.signature:
                    unsigned += 1
                    continue
                checked += 1
                problem = _check_node(node, item, facts, allowlist)
                if problem:
                    problems.append(problem)
    problems += _check_result(facts)
    notes = []
    if unsigned:
        notes.append(f"{unsigned} observation(s) unsigned: the aggregator accepted unsigned data")
    if allowlist is None and checked:
        notes.append("node keys taken from the report itself (no --node-keys list given)")
    return Audit(tuple(problems), checked, unsigned, tuple(notes))
