"""Injected faults per venue: what goes wrong, for how many answers, and how prices are bent.

Faults are set at startup by CLI flags or at run time by `POST /_sim/faults`, both through
`parse_fault_request`, so the two paths accept exactly the same things. The JSON schema:

    {
      "venue": "binance" | "coinbase" | "kraken" | "all",   # or "venues": [...]; required
      "rate_limit": {"count": 3, "retry_after": 5},         # 429 + Retry-After (Kraken: HTTP
                                                            #   200 + EAPI:Rate limit exceeded);
                                                            #   retry_after: seconds, or a string
                                                            #   sent verbatim (an HTTP date)
      "ban":        {"count": 1, "retry_after": 120},       # Binance: 418 IP ban + Retry-After
                                                            #   (the others: their rate limit)
      "geo_block":  {"count": null},                        # Binance: 451 restricted location
                                                            #   (the others: a 403 CDN page)
      "http_5xx":   {"count": 2, "status": 503},            # a burst of 5xx answers
      "html":       {"count": 1, "status": 200},            # an HTML page instead of the API
      "slow":       {"delay_seconds": 2.5, "count": null},  # answer only after a delay
      "malformed":  {"count": 1},                           # HTTP 200 with a truncated JSON body
      "bomb":       {"count": 1, "inflated_bytes": 1073741824},  # gzip body that inflates to N
      "drip":       {"count": 1, "interval_seconds": 1.0},  # the body one byte per interval
      "tamper":     {"op": "set", "field": "close", "literal": "NaN", "count": 1},
                                                            # the venue's rows, damaged (tamper.py)
      "lag":        {"seconds": 180},                       # a closed minute is published only
                                                            #   this long after its close
      "clock_skew": {"seconds": -7200},                     # the Date header is this far off
      "freeze":     true,                                   # price stops moving from this minute
      "jump":       {"percent": 5.0, "from_minute": null}   # price x (1 + percent/100) from now on
    }

Every fault key is optional; `count` is how many answers the fault affects (absent or null:
every answer until cleared). A key set to null clears that fault; `"freeze": false` unfreezes.
`jump` applies from `from_minute` (unix seconds, multiple of 60; default: the minute forming now)
and jumps compound. `lag` overrides the venue's publication delay (Coinbase's `--coinbase-lag-
seconds`; 0 for the others); `clock_skew` moves the `Date` header, not the candles. Price faults
(freeze, jump) bend the venue's BTC pair only, never its USDT/USD rate, and also change what
`GET /_sim/close` reports. `DELETE /_sim/faults[?venue=V]` clears everything.

One request suffers at most one failure, in this order: first the delay (if slow), then
rate_limit, ban, geo_block, http_5xx, html, malformed, bomb; an answer that did not fail may be
tampered with; any answer may drip. Only the faults that fired are counted down.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from common.timeutil import MINUTE, minute_floor

from .market import PriceOverrides
from .prices import VENUES
from .tamper import FIELDS, TAMPER_OPS, Tamper

# The failures, in the order they win when several are set.
FAILURES: Final = ("rate_limit", "ban", "geo_block", "http_5xx", "html", "malformed", "bomb")
# Counted faults that change a good answer instead of replacing it.
MODIFIERS: Final = ("slow", "tamper", "drip")
COUNTED: Final = (*FAILURES, *MODIFIERS)
PERSISTENT: Final = ("lag", "clock_skew", "freeze", "jump")
FAULT_KEYS: Final = (*COUNTED, *PERSISTENT)
MAX_BOMB_BYTES: Final = 4 * 1024**3


class FaultSpecError(ValueError):
    """A fault request that cannot be applied; the message names the field."""


@dataclass(frozen=True)
class CountedFault:
    """A fault that affects the next `remaining` answers (None: every answer until cleared)."""

    remaining: int | None = None
    params: tuple[tuple[str, Any], ...] = ()
    tamper: Tamper | None = None

    def param(self, name: str) -> Any:  # noqa: ANN401 - each kind's parameters have their own type
        """The value of parameter `name` (validated and defaulted by the parser)."""
        return dict(self.params)[name]

    def spent(self) -> CountedFault | None:
        """This fault after one more answer suffered it; None when it is used up."""
        if self.remaining is None:
            return self
        if self.remaining <= 1:
            return None
        return replace(self, remaining=self.remaining - 1)

    def to_json(self) -> dict[str, Any]:
        """The fault as `GET /_sim/faults` shows it."""
        shown: dict[str, Any] = {"count": self.remaining, **dict(self.params)}
        if self.tamper is not None:
            shown.update(self.tamper.to_json())
        return shown


@dataclass(frozen=True)
class VenueFaults:
    """Everything injected into one venue."""

    counted: Mapping[str, CountedFault] = field(default_factory=dict)
    freeze_minute: int | None = None
    jumps: tuple[tuple[int, Decimal], ...] = ()
    lag_seconds: float | None = None
    clock_skew: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The venue's faults as JSON (only the ones that are set)."""
        shown: dict[str, Any] = {
            kind: self.counted[kind].to_json() for kind in COUNTED if kind in self.counted
        }
        if self.freeze_minute is not None:
            shown["freeze"] = {"from_minute": self.freeze_minute}
        if self.jumps:
            shown["jump"] = [{"from_minute": m, "percent": str(p)} for m, p in self.jumps]
        if self.lag_seconds is not None:
            shown["lag"] = {"seconds": self.lag_seconds}
        if self.clock_skew:
            shown["clock_skew"] = {"seconds": self.clock_skew}
        return shown


@dataclass(frozen=True)
class Decision:
    """What to do with one venue request: wait, then fail with `failure` or answer (damaged?)."""

    delay_seconds: float = 0.0
    failure: str | None = None
    fault: CountedFault | None = None
    tamper: Tamper | None = None
    drip_seconds: float = 0.0
    lag_seconds: float | None = None
    clock_skew: float = 0.0

    def param(self, name: str) -> Any:  # noqa: ANN401 - see CountedFault.param
        """A parameter of the failure that fired."""
        if self.fault is None:
            raise KeyError(name)
        return self.fault.param(name)

    @property
    def fired(self) -> list[str]:
        """The counted faults this request suffers, for the log line."""
        names = [self.failure] if self.failure else []
        names += [name for name, on in (("tamper", self.tamper), ("drip", self.drip_seconds)) if on]
        if self.delay_seconds:
            names.insert(0, "slow")
        return names


@dataclass(frozen=True)
class FaultUpdate:
    """A parsed fault request: the venues it targets and the changes to their faults."""

    venues: tuple[str, ...]
    counted: dict[str, CountedFault | None] = field(default_factory=dict)
    persistent: dict[str, Any] = field(default_factory=dict)


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
                counted = dict(current.counted)
                for kind, fault in update.counted.items():
                    if fault is None:
                        counted.pop(kind, None)
                    else:
                        counted[kind] = fault
                changes: dict[str, Any] = {"counted": counted}
                for key, value in update.persistent.items():
                    if key == "jump":
                        changes["jumps"] = () if value is None else (*current.jumps, value)
                    elif key == "freeze_minute":
                        # Freezing a frozen venue again must not move the price it is frozen at.
                        keep = value is not None and current.freeze_minute is not None
                        changes[key] = current.freeze_minute if keep else value
                    else:
                        changes[key] = value
                self._venues[venue] = replace(current, **changes)

    def clear(self, venue: str | None = None) -> None:
        """Remove every fault of `venue` (all venues when None)."""
        with self._lock:
            for name in (venue,) if venue else VENUES:
                self._venues[name] = VenueFaults()

    def take(self, venue: str) -> Decision:
        """Decide the fate of one request to `venue`, counting down the faults that fire."""
        with self._lock:
            faults = self._venues.get(venue, VenueFaults())
            counted = dict(faults.counted)

            def fire(kind: str) -> CountedFault | None:
                fault = counted.get(kind)
                if fault is not None:
                    spent = fault.spent()
                    if spent is None:
                        del counted[kind]
                    else:
                        counted[kind] = spent
                return fault

            decision = Decision(lag_seconds=faults.lag_seconds, clock_skew=faults.clock_skew)
            if (slow := fire("slow")) is not None:
                decision = replace(decision, delay_seconds=float(slow.param("delay_seconds")))
            failure = next((kind for kind in FAILURES if kind in counted), None)
            if failure is not None:
                decision = replace(decision, failure=failure, fault=fire(failure))
            elif (tamper := fire("tamper")) is not None:
                decision = replace(decision, tamper=tamper.tamper)
            if (drip := fire("drip")) is not None:
                decision = replace(decision, drip_seconds=float(drip.param("interval_seconds")))
            if venue in self._venues:
                self._venues[venue] = replace(faults, counted=counted)
            return decision

    def overrides(self, venue: str) -> PriceOverrides:
        """The price faults of `venue` (freeze, jumps) for the market to apply."""
        with self._lock:
            faults = self._venues.get(venue, VenueFaults())
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
    update = FaultUpdate(venues=venues)
    for kind in COUNTED:
        if kind in payload:
            update.counted[kind] = _parse_counted(kind, payload[kind])
    if "freeze" in payload:
        freeze = payload["freeze"]
        if freeze is not None and not isinstance(freeze, bool):
            raise FaultSpecError("freeze: must be true, false or null")
        update.persistent["freeze_minute"] = minute_floor(now) if freeze else None
    if "jump" in payload:
        update.persistent["jump"] = _parse_jump(payload["jump"], now)
    if "lag" in payload:
        update.persistent["lag_seconds"] = _parse_seconds("lag", payload["lag"], 0, 3600)
    if "clock_skew" in payload:
        skew = _parse_seconds("clock_skew", payload["clock_skew"], -10 * 365 * 86400, 10**10)
        update.persistent["clock_skew"] = skew or 0.0
    if not update.counted and not update.persistent:
        raise FaultSpecError(f"no fault given; set one of {', '.join(FAULT_KEYS)}")
    return update


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


# Each counted fault's parameters besides `count`: name -> (check, default or _REQUIRED, rule).
_REQUIRED: Final = object()
_Check = Callable[[object], bool]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(low: int, high: int) -> _Check:
    return lambda value: _is_int(value) and low <= value <= high  # type: ignore[operator]


def _retry_after(value: object) -> bool:
    """Seconds (a whole number), or a header value written verbatim (an HTTP date, "1e12")."""
    if isinstance(value, str):
        return 0 < len(value) <= 64 and value.isprintable()
    return _is_int(value) and 0 <= value <= 10**12  # type: ignore[operator]


def _seconds_in(low: float, high: float) -> _Check:
    return lambda value: _is_number(value) and low < value <= high  # type: ignore[operator]


_RETRY_AFTER_RULE: Final = "a non-negative integer (seconds) or a header value (string)"
_PARAMS: Final[dict[str, dict[str, tuple[_Check, object, str]]]] = {
    "rate_limit": {"retry_after": (_retry_after, 1, _RETRY_AFTER_RULE)},
    "ban": {"retry_after": (_retry_after, 120, _RETRY_AFTER_RULE)},
    "geo_block": {},
    "http_5xx": {"status": (_int_in(500, 599), 503, "an integer from 500 to 599")},
    "html": {"status": (_int_in(200, 599), 200, "an integer from 200 to 599")},
    "malformed": {},
    "bomb": {
        "inflated_bytes": (
            _int_in(1, MAX_BOMB_BYTES),
            1024**3,
            f"an integer number of bytes from 1 to {MAX_BOMB_BYTES}",
        )
    },
    "slow": {"delay_seconds": (_seconds_in(0, 600), _REQUIRED, "a number of seconds in (0, 600]")},
    "drip": {
        "interval_seconds": (_seconds_in(0, 60), 1.0, "a number of seconds in (0, 60]"),
    },
    "tamper": {},
}
_TAMPER_KEYS: Final = frozenset({"op", "field", "value", "literal", "minute", "minutes"})


def _parse_counted(kind: str, raw: object) -> CountedFault | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise FaultSpecError(f"{kind}: must be an object, true or null")
    params = _PARAMS[kind]
    allowed = {"count", *params, *(_TAMPER_KEYS if kind == "tamper" else ())}
    unknown = set(raw) - allowed
    if unknown:
        raise FaultSpecError(f"{kind}: unknown key(s) {', '.join(sorted(unknown))}")
    count = raw.get("count")
    if count is not None and (not _is_int(count) or count < 1):
        raise FaultSpecError(f"{kind}.count: must be a positive integer or null")
    values: list[tuple[str, Any]] = []
    for name, (check, default, rule) in params.items():
        if name not in raw and default is _REQUIRED:
            raise FaultSpecError(f"{kind}.{name}: required, {rule}")
        value = raw.get(name, default)
        if not check(value):
            raise FaultSpecError(f"{kind}.{name}: must be {rule}, got {value!r}")
        values.append((name, value))
    tamper = _parse_tamper(raw) if kind == "tamper" else None
    return CountedFault(remaining=count, params=tuple(values), tamper=tamper)


def _parse_tamper(raw: dict[str, Any]) -> Tamper:
    op = raw.get("op")
    if op not in TAMPER_OPS:
        raise FaultSpecError(f"tamper.op: required, one of {', '.join(TAMPER_OPS)}")
    field_name = raw.get("field", "close")
    if field_name not in FIELDS:
        raise FaultSpecError(f"tamper.field: one of {', '.join(FIELDS)}")
    literal = raw.get("literal")
    if literal is not None and (not isinstance(literal, str) or not 0 < len(literal) <= 4096):
        raise FaultSpecError("tamper.literal: a non-empty string of at most 4096 characters")
    if op == "set" and "value" not in raw and literal is None:
        raise FaultSpecError("tamper: op set needs a value or a literal")
    minute = raw.get("minute")
    if minute is not None and (not _is_int(minute) or minute % MINUTE):
        raise FaultSpecError("tamper.minute: unix seconds, a multiple of 60")
    minutes = raw.get("minutes", 0)
    if not _is_int(minutes) or (op == "shift" and minutes == 0):
        raise FaultSpecError("tamper.minutes: a non-zero whole number of minutes (op shift)")
    return Tamper(
        op=op,
        field=field_name,
        value=raw.get("value"),
        literal=literal,
        minute=minute,
        minutes=minutes,
    )


def _parse_seconds(kind: str, raw: object, low: float, high: float) -> float | None:
    if raw is None:
        return None
    if _is_number(raw):
        raw = {"seconds": raw}
    if not isinstance(raw, dict) or set(raw) != {"seconds"}:
        raise FaultSpecError(f'{kind}: must be {{"seconds": S}} or null')
    seconds = raw["seconds"]
    if not _is_number(seconds) or not low <= seconds <= high:
        raise FaultSpecError(f"{kind}.seconds: a number from {low:g} to {high:g}")
    return float(seconds)


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
