"""Injected faults per venue: what goes wrong, for how many answers, and how prices are bent.

Faults are set at startup by CLI flags or at run time by `POST /_sim/faults`, both through
`parse_fault_request`, so the two paths accept exactly the same things. The JSON schema:

    {
      "venue": "binance" | "coinbase" | "kraken" | "all",   # or "venues": [...]; required
      "rate_limit": {"count": 3, "retry_after": 5},         # 429 + Retry-After (Kraken: HTTP
                                                            #   200 + EAPI:Rate limit exceeded)
      "http_5xx":   {"count": 2, "status": 503},            # a burst of 5xx answers
      "slow":       {"delay_seconds": 2.5, "count": null},  # answer only after a delay
      "malformed":  {"count": 1},                           # HTTP 200 with a truncated JSON body
      "freeze":     true,                                   # price stops moving from this minute
      "jump":       {"percent": 5.0, "from_minute": null}   # price x (1 + percent/100) from now on
    }

Every fault key is optional; `count` is how many answers the fault affects (absent or null:
every answer until cleared); `retry_after` defaults to 1 s and `status` to 503. A key set to
null clears that fault; `"freeze": false` unfreezes. `jump` applies from `from_minute` (unix
seconds, multiple of 60; default: the minute forming now) and jumps compound. `DELETE
/_sim/faults[?venue=V]` clears everything. One request suffers at most one failure: first the
delay (if slow), then rate limit, else 5xx, else malformed; only the fault that fired is counted
down. Price faults (freeze, jump) also change what `GET /_sim/close` reports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from common.timeutil import MINUTE, minute_floor

from .market import PriceOverrides
from .prices import VENUES

FailureKind = Literal["rate_limit", "http_5xx", "malformed"]
FAULT_KEYS: Final = ("rate_limit", "http_5xx", "slow", "malformed", "freeze", "jump")


class FaultSpecError(ValueError):
    """A fault request that cannot be applied; the message names the field."""


@dataclass(frozen=True)
class CountedFault:
    """A fault that affects the next `remaining` answers (None: every answer until cleared)."""

    remaining: int | None = None
    retry_after: int = 1
    status: int = 503
    delay_seconds: float = 0.0

    def spent(self) -> CountedFault | None:
        """This fault after one more answer suffered it; None when it is used up."""
        if self.remaining is None:
            return self
        if self.remaining <= 1:
            return None
        return replace(self, remaining=self.remaining - 1)

    def to_json(self, kind: str) -> dict[str, Any]:
        """The fault as `GET /_sim/faults` shows it, with the fields that matter for `kind`."""
        shown: dict[str, Any] = {"count": self.remaining}
        if kind == "rate_limit":
            shown["retry_after"] = self.retry_after
        elif kind == "http_5xx":
            shown["status"] = self.status
        elif kind == "slow":
            shown["delay_seconds"] = self.delay_seconds
        return shown


@dataclass(frozen=True)
class VenueFaults:
    """Everything injected into one venue."""

    rate_limit: CountedFault | None = None
    http_5xx: CountedFault | None = None
    slow: CountedFault | None = None
    malformed: CountedFault | None = None
    freeze_minute: int | None = None
    jumps: tuple[tuple[int, Decimal], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The venue's faults as JSON (only the ones that are set)."""
        shown: dict[str, Any] = {}
        for kind in ("rate_limit", "http_5xx", "slow", "malformed"):
            fault: CountedFault | None = getattr(self, kind)
            if fault is not None:
                shown[kind] = fault.to_json(kind)
        if self.freeze_minute is not None:
            shown["freeze"] = {"from_minute": self.freeze_minute}
        if self.jumps:
            shown["jump"] = [{"from_minute": m, "percent": str(p)} for m, p in self.jumps]
        return shown


@dataclass(frozen=True)
class Decision:
    """What to do with one venue request: wait `delay_seconds`, then fail with `failure` or not."""

    delay_seconds: float = 0.0
    failure: FailureKind | None = None
    retry_after: int = 1
    status: int = 200


@dataclass(frozen=True)
class FaultUpdate:
    """A parsed fault request: the venues it targets and a function of their current faults."""

    venues: tuple[str, ...]
    changes: dict[str, Any] = field(default_factory=dict)


class FaultBook:
    """The live faults of all venues; thread-safe, since every HTTP request runs on its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._venues: dict[str, VenueFaults] = {venue: VenueFaults() for venue in VENUES}

    def apply(self, update: FaultUpdate) -> None:
        """Merge `update` into the venues it names."""
        with self._lock:
            for venue in update.venues:
                current = self._venues[venue]
                changes = dict(update.changes)
                jump = changes.pop("jump", None)
                if jump is not None:
                    changes["jumps"] = (*current.jumps, jump)
                elif "jump" in update.changes:
                    changes["jumps"] = ()
                if changes.get("freeze_minute") is not None and current.freeze_minute is not None:
                    # Freezing a frozen venue again must not move the price it is frozen at.
                    changes["freeze_minute"] = current.freeze_minute
                self._venues[venue] = replace(current, **changes)

    def clear(self, venue: str | None = None) -> None:
        """Remove every fault of `venue` (all venues when None)."""
        with self._lock:
            for name in (venue,) if venue else VENUES:
                self._venues[name] = VenueFaults()

    def take(self, venue: str) -> Decision:
        """Decide the fate of one request to `venue`, counting down the fault that fires."""
        with self._lock:
            faults = self._venues[venue]
            delay = 0.0
            if faults.slow is not None:
                delay = faults.slow.delay_seconds
                faults = replace(faults, slow=faults.slow.spent())
            decision = Decision(delay_seconds=delay)
            if faults.rate_limit is not None:
                decision = replace(
                    decision, failure="rate_limit", retry_after=faults.rate_limit.retry_after
                )
                faults = replace(faults, rate_limit=faults.rate_limit.spent())
            elif faults.http_5xx is not None:
                decision = replace(decision, failure="http_5xx", status=faults.http_5xx.status)
                faults = replace(faults, http_5xx=faults.http_5xx.spent())
            elif faults.malformed is not None:
                decision = replace(decision, failure="malformed")
                faults = replace(faults, malformed=faults.malformed.spent())
            self._venues[venue] = faults
            return decision

    def overrides(self, venue: str) -> PriceOverrides:
        """The price faults of `venue` (freeze, jumps) for the market to apply."""
        with self._lock:
            faults = self._venues[venue]
            return PriceOverrides(freeze_minute=faults.freeze_minute, jumps=faults.jumps)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """All venues' faults as JSON, for `GET /_sim/faults` and the logs."""
        with self._lock:
            return {venue: faults.to_json() for venue, faults in self._venues.items()}


def parse_fault_request(payload: object, now: float) -> FaultUpdate:
    """Validate a `POST /_sim/faults` body (schema in the module docstring) into an update."""
    if not isinstance(payload, dict):
        raise FaultSpecError("body must be a JSON object")
    unknown = set(payload) - {"venue", "venues", *FAULT_KEYS}
    if unknown:
        raise FaultSpecError(
            f"unknown key(s) {', '.join(sorted(unknown))}; use venue, {', '.join(FAULT_KEYS)}"
        )
    venues = _parse_venues(payload)
    changes: dict[str, Any] = {}
    for kind in ("rate_limit", "http_5xx", "slow", "malformed"):
        if kind in payload:
            changes[kind] = _parse_counted(kind, payload[kind])
    if "freeze" in payload:
        freeze = payload["freeze"]
        if freeze is not None and not isinstance(freeze, bool):
            raise FaultSpecError("freeze: must be true, false or null")
        changes["freeze_minute"] = minute_floor(now) if freeze else None
    if "jump" in payload:
        changes["jump"] = _parse_jump(payload["jump"], now)
    if not changes:
        raise FaultSpecError(f"no fault given; set one of {', '.join(FAULT_KEYS)}")
    return FaultUpdate(venues=venues, changes=changes)


def _parse_venues(payload: dict[str, Any]) -> tuple[str, ...]:
    raw = payload.get("venues", payload.get("venue"))
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise FaultSpecError(f"venue: required, one of {', '.join(VENUES)} or all")
    if "all" in names:
        return VENUES
    for name in names:
        if name not in VENUES:
            raise FaultSpecError(f"venue: unknown {name!r}; use one of {', '.join(VENUES)} or all")
    return tuple(dict.fromkeys(names))


def _parse_counted(kind: str, raw: object) -> CountedFault | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise FaultSpecError(f"{kind}: must be an object, true or null")
    allowed = {
        "count",
        *{"rate_limit": ["retry_after"], "http_5xx": ["status"], "slow": ["delay_seconds"]}.get(
            kind, []
        ),
    }
    unknown = set(raw) - allowed
    if unknown:
        raise FaultSpecError(f"{kind}: unknown key(s) {', '.join(sorted(unknown))}")
    count = raw.get("count")
    if count is not None and (not _is_int(count) or count < 1):
        raise FaultSpecError(f"{kind}.count: must be a positive integer or null")
    fault = CountedFault(remaining=count)
    if kind == "rate_limit":
        retry_after = raw.get("retry_after", 1)
        if not _is_int(retry_after) or retry_after < 0:
            raise FaultSpecError("rate_limit.retry_after: must be a non-negative integer (seconds)")
        fault = replace(fault, retry_after=retry_after)
    elif kind == "http_5xx":
        status = raw.get("status", 503)
        if not _is_int(status) or not 500 <= status <= 599:
            raise FaultSpecError("http_5xx.status: must be an integer from 500 to 599")
        fault = replace(fault, status=status)
    elif kind == "slow":
        delay = raw.get("delay_seconds")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay <= 600:
            raise FaultSpecError("slow.delay_seconds: required, a number of seconds in (0, 600]")
        fault = replace(fault, delay_seconds=float(delay))
    return fault


def _parse_jump(raw: object, now: float) -> tuple[int, Decimal] | None:
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = {"percent": raw}
    if not isinstance(raw, dict) or set(raw) - {"percent", "from_minute"}:
        raise FaultSpecError('jump: must be {"percent": X, "from_minute": M (optional)}')
    try:
        percent = Decimal(str(raw.get("percent")))
    except InvalidOperation:
        percent = Decimal("NaN")
    if not percent.is_finite() or not -90 <= percent <= 1000:
        raise FaultSpecError("jump.percent: required, a number from -90 to 1000")
    from_minute = raw.get("from_minute")
    if from_minute is None:
        from_minute = minute_floor(now)
    elif not _is_int(from_minute) or from_minute % MINUTE:
        raise FaultSpecError("jump.from_minute: must be unix seconds, a multiple of 60")
    return (from_minute, percent)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
